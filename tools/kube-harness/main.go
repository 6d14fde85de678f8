// Command kube-harness runs an embedded etcd and a real kube-apiserver in one
// process, on loopback ports, for the operator's end-to-end tests.
//
// It writes <dir>/kubeconfig (admin token, system:masters) once the apiserver
// answers /readyz, and exits when it receives SIGTERM or SIGINT. Every request's
// metadata goes to the audit log <dir>/audit.log.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	dir := flag.String("dir", "", "working directory for etcd data, keys and the kubeconfig (required)")
	withParent := flag.Bool("exit-with-parent", false, "exit, and remove --dir, when the process that started the harness goes away (test runs)")
	flag.Parse()
	if *withParent {
		go exitWithParent(*dir)
	}
	if *dir == "" {
		fail("--dir is required")
	}
	if err := run(*dir); err != nil {
		fail(err.Error())
	}
}

// exitWithParent ends the harness once it is re-parented, so a test binary that dies
// without cleaning up never leaves an apiserver, or its etcd data, behind.
func exitWithParent(dir string) {
	parent := os.Getppid()
	for {
		time.Sleep(time.Second)
		if os.Getppid() != parent {
			os.RemoveAll(dir)
			os.Exit(0)
		}
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "kube-harness:", msg)
	os.Exit(1)
}

// freePort asks the kernel for a free loopback port. The small race between
// closing and re-binding is accepted: the Rust side retries a failed start.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func run(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	clientPort, err := freePort()
	if err != nil {
		return err
	}
	peerPort, err := freePort()
	if err != nil {
		return err
	}
	apiPort, err := freePort()
	if err != nil {
		return err
	}

	cfg := embed.NewConfig()
	cfg.Dir = filepath.Join(dir, "etcd")
	cfg.LogLevel = "error"
	cfg.UnsafeNoFsync = true
	clientURL, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", clientPort))
	peerURL, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", peerPort))
	cfg.ListenClientUrls = []url.URL{*clientURL}
	cfg.AdvertiseClientUrls = []url.URL{*clientURL}
	cfg.ListenPeerUrls = []url.URL{*peerURL}
	cfg.AdvertisePeerUrls = []url.URL{*peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	etcd, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start etcd: %w", err)
	}
	defer etcd.Close()
	select {
	case <-etcd.Server.ReadyNotify():
	case err := <-etcd.Err():
		return fmt.Errorf("etcd: %w", err)
	case <-time.After(60 * time.Second):
		return fmt.Errorf("etcd did not become ready in 60s")
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	saKey := filepath.Join(dir, "sa.key")
	if err := os.WriteFile(saKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	adminToken, err := randomToken()
	if err != nil {
		return err
	}
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(fmt.Sprintf("%s,admin,admin,\"system:masters\"\n", adminToken)), 0o600); err != nil {
		return err
	}

	// Every request's metadata goes to <dir>/audit.log, so tests can check which verbs and
	// selectors the operator really uses.
	auditPolicy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(auditPolicy, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n  - level: Metadata\n"), 0o600); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	cmd := app.NewAPIServerCommand()
	cmd.SetArgs([]string{
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", clientPort),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", apiPort),
		"--cert-dir=" + filepath.Join(dir, "pki"),
		"--token-auth-file=" + tokens,
		"--audit-policy-file=" + auditPolicy,
		"--audit-log-path=" + filepath.Join(dir, "audit.log"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + saKey,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--allow-privileged=true",
		"--disable-admission-plugins=ServiceAccount",
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
		"--v=0",
	})
	served := make(chan error, 1)
	go func() { served <- cmd.ExecuteContext(ctx) }()

	server := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	if err := waitReady(ctx, server, adminToken, served); err != nil {
		return err
	}
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: harness
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: harness
  context:
    cluster: harness
    user: admin
    namespace: default
current-context: harness
`, server, filepath.Join(dir, "pki", "apiserver.crt"), adminToken)
	// Write then rename, so a reader never sees a half-written file.
	tmp := filepath.Join(dir, "kubeconfig.tmp")
	if err := os.WriteFile(tmp, []byte(kubeconfig), 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "kubeconfig")); err != nil {
		return err
	}
	fmt.Printf("kube-harness ready: %s (kubeconfig %s)\n", server, filepath.Join(dir, "kubeconfig"))
	return <-served
}

func waitReady(ctx context.Context, server, token string, served <-chan error) error {
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}
	deadline := time.Now().Add(180 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-served:
			return fmt.Errorf("kube-apiserver exited before it was ready: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		req, _ := http.NewRequest(http.MethodGet, server+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("kube-apiserver not ready after 180s")
}
