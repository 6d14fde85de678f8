//! A real kube-apiserver for the end-to-end tests: the project's Go harness (embedded etcd
//! and kube-apiserver), one per test binary, with the CRDs and the operator's RBAC from
//! `deploy/` installed. Each test gets its own namespace, emulator and operator process.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Config};

pub const OPERATOR_NS: &str = "alicloud-ops-system";
pub const OPERATOR_SA: &str = "system:serviceaccount:alicloud-ops-system:alicloud-ops-operator";

pub struct ClusterInfo {
    /// Admin (system:masters).
    pub kubeconfig: PathBuf,
    /// The same server, impersonating the operator's ServiceAccount.
    pub operator_kubeconfig: PathBuf,
    pub dir: PathBuf,
}

static CLUSTER: OnceLock<ClusterInfo> = OnceLock::new();

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The harness, started on first use. There is no skipping: without the harness binary the
/// end-to-end tests fail and say how to build it.
pub fn cluster() -> &'static ClusterInfo {
    CLUSTER.get_or_init(|| {
        let bin =
            std::env::var("KUBE_HARNESS_BIN").unwrap_or_else(|_| repo("target/kube-harness").display().to_string());
        assert!(
            Path::new(&bin).exists(),
            "the kube-apiserver harness is not built ({bin}); run `make test`, or scripts/build-harness.sh"
        );
        let dir = tempfile::Builder::new()
            .prefix("kube-harness")
            .tempdir()
            .unwrap()
            .keep();
        let log = std::fs::File::create(dir.join("harness.log")).unwrap();
        let child: Child = Command::new(&bin)
            .args(["--dir", dir.to_str().unwrap(), "--exit-with-parent"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the harness");
        std::mem::forget(child); // ends by itself when this test process exits
        let kubeconfig = dir.join("kubeconfig");
        let started = Instant::now();
        while !kubeconfig.exists() {
            if started.elapsed() > Duration::from_secs(180) {
                let mut s = String::new();
                let _ = std::fs::File::open(dir.join("harness.log")).and_then(|mut f| f.read_to_string(&mut s));
                panic!("kube-apiserver not ready after 180 s:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let text = std::fs::read_to_string(&kubeconfig).unwrap();
        let operator_kubeconfig = dir.join("operator-kubeconfig");
        std::fs::write(
            &operator_kubeconfig,
            text.replace("    token: ", &format!("    as: {OPERATOR_SA}\n    token: ")),
        )
        .unwrap();
        let info = ClusterInfo {
            kubeconfig: kubeconfig.clone(),
            operator_kubeconfig,
            dir,
        };
        // Install with a runtime of its own: clients must not outlive their runtime.
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new().unwrap().block_on(async {
                let client = client_for(&kubeconfig).await;
                install(&client, &kubeconfig).await;
            })
        })
        .join()
        .expect("install CRDs and RBAC");
        info
    })
}

pub async fn client_for(path: &Path) -> Client {
    let kc = Kubeconfig::read_from(path).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// The admin's bearer token, from the harness's kubeconfig.
pub fn admin_token() -> String {
    let text = std::fs::read_to_string(&cluster().kubeconfig).unwrap();
    let kc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    kc["users"][0]["user"]["token"].as_str().unwrap().to_string()
}

/// A new admin client (one per test: each test has its own runtime).
pub async fn admin() -> Client {
    client_for(&cluster().kubeconfig).await
}

/// kubectl, as `make test` installs it (scripts/setup-python.sh), or `$KUBECTL`.
pub fn kubectl() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| repo("target/venv/bin/kubectl").display().to_string())
}

/// `kubectl <args>` against the harness as its admin; panics with kubectl's words on failure.
pub fn kubectl_run(args: &[&str]) -> String {
    let bin = kubectl();
    let out = Command::new(&bin)
        .args(args)
        .env("KUBECONFIG", &cluster().kubeconfig)
        .current_dir(repo("."))
        .output()
        .unwrap_or_else(|e| panic!("{bin}: {e}; run `make test` (scripts/setup-python.sh installs kubectl)"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// helm, as `make test` builds it (scripts/build-go-tools.sh), or `$HELM`.
pub fn helm() -> String {
    std::env::var("HELM").unwrap_or_else(|_| repo("target/tools/helm").display().to_string())
}

/// Installs the operator the way a platform team does, with `helm install` of the chart (the
/// CRDs, the operator's identity and exactly its RBAC, the Deployment, Service and
/// PodDisruptionBudget; a test holds the chart equal to `kubectl apply -k deploy/`), then
/// waits for the CRDs. The operator processes the tests start impersonate the ServiceAccount
/// this installed.
async fn install(client: &Client, kubeconfig: &Path) {
    let bin = helm();
    let out = Command::new(&bin)
        .args([
            "install",
            "alicloud-ops-operator",
            "deploy/helm/alicloud-ops-operator",
            "--namespace",
            OPERATOR_NS,
            "--create-namespace",
        ])
        .env("KUBECONFIG", kubeconfig)
        .current_dir(repo("."))
        .output()
        .unwrap_or_else(|e| panic!("{bin}: {e}; run `make test` (scripts/build-go-tools.sh builds helm)"));
    assert!(
        out.status.success(),
        "helm install: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for kind in alicloud_ops_operator::controller::registry::names() {
        let full = format!("{}.ops.alicloud.dev", kind.plural);
        tokio::time::timeout(
            Duration::from_secs(60),
            await_condition(crds.clone(), &full, conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("CRD {full} not established within 60 s"))
        .unwrap();
    }
}

/// A fresh namespace for one test.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    use k8s_openapi::api::core::v1::Namespace;
    let name = format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    name
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if started.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Like [`eventually`], for a check of several conditions: `check` says which did not hold
/// (and why), and a timeout names them, as they stood at the last look.
pub async fn eventually_all<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        let unmet = match check().await {
            Ok(v) => return v,
            Err(unmet) => unmet,
        };
        if started.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for: {what}; not met: {unmet}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The operator binary, running as a separate process with the ServiceAccount's RBAC.
pub struct Operator {
    child: Option<Child>,
    /// Run under OPERATOR_WRAPPER, in a process group of its own: signals go to the whole
    /// group, so the operator under a profiler stops with its wrapper.
    grouped: bool,
    /// `https://127.0.0.1:<port>/metrics` (a self-signed certificate: see [`https_client`]).
    pub metrics: String,
    /// `http://127.0.0.1:<port>`, where `/healthz` and `/readyz` answer.
    pub health: String,
    pub log: PathBuf,
}

/// A client for the operator's /metrics, whose certificate is self-signed (as Prometheus
/// scrapes it, with `insecureSkipVerify`: the bearer token is what is checked).
pub fn https_client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
}

impl Operator {
    /// Starts `alicloud-ops-operator run` watching `namespace`, against the emulator.
    pub fn start(namespace: &str, emulator_url: &str, lease: &str) -> Operator {
        Self::start_with(namespace, emulator_url, lease, &[])
    }

    /// As [`Operator::start`], with more command-line arguments.
    pub fn start_with(namespace: &str, emulator_url: &str, lease: &str, extra: &[&str]) -> Operator {
        Self::start_full(namespace, emulator_url, lease, extra, &[])
    }

    /// As [`Operator::start_with`], with environment variables set (or, with an empty
    /// value, removed) on top of the default access key.
    pub fn start_full(
        namespace: &str,
        emulator_url: &str,
        lease: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Operator {
        let (port, health_port) = (free_port(), free_port());
        let log = cluster().dir.join(format!("operator-{namespace}-{port}.log"));
        let file = std::fs::File::create(&log).unwrap();
        // OPERATOR_WRAPPER runs the operator under a profiler, e.g. `heaptrack -o /tmp/op`.
        let wrapper = std::env::var("OPERATOR_WRAPPER").unwrap_or_default();
        let mut wrapper = wrapper.split_whitespace();
        let mut cmd = match wrapper.next() {
            Some(program) => {
                let mut cmd = Command::new(program);
                cmd.args(wrapper).arg(env!("CARGO_BIN_EXE_alicloud-ops-operator"));
                std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
                cmd
            }
            None => Command::new(env!("CARGO_BIN_EXE_alicloud-ops-operator")),
        };
        let grouped = std::env::var("OPERATOR_WRAPPER").is_ok_and(|w| !w.trim().is_empty());
        cmd.args([
            "run",
            "--namespace",
            namespace,
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--health-addr",
            &format!("127.0.0.1:{health_port}"),
        ])
        .args(["--lease-name", lease, "--endpoint", emulator_url])
        .args(extra)
        .env("KUBECONFIG", &cluster().operator_kubeconfig)
        .env("RUST_LOG", "info,kube_client=error,alicloud_ops_operator=debug");
        super::with_emulator_key(&mut cmd);
        // Defaults for tests, unless the test gives its own.
        for (flag, value) in [
            ("--resync-interval", "3s"),
            ("--snapshot-max-age", "1s"),
            ("--concurrency", "2"),
            ("--lease-namespace", OPERATOR_NS),
        ] {
            if !extra.contains(&flag) {
                cmd.args([flag, value]);
            }
        }
        // Tests use the operator's own (emulator) credentials in their namespace unless
        // they say otherwise.
        if !extra.contains(&"--default-credentials-namespaces") {
            cmd.args(["--default-credentials-namespaces", namespace]);
        }
        for (k, v) in env {
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Operator {
            child: Some(child),
            grouped,
            metrics: format!("https://127.0.0.1:{port}/metrics"),
            health: format!("http://127.0.0.1:{health_port}"),
            log,
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `/metrics`, with the admin's token (allowed everything).
    pub async fn scrape(&self) -> String {
        let request = https_client().get(&self.metrics).bearer_auth(admin_token()).send();
        match request.await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// SIGTERM, then wait: in-flight reconciles finish and the Lease is released.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", "--", &self.target(&child)])
            .status();
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if started.elapsed() > Duration::from_secs(30) {
                if self.grouped {
                    let _ = Command::new("kill")
                        .args(["-KILL", "--", &self.target(&child)])
                        .status();
                }
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: a crash, with no cleanup.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.grouped {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &self.target(&child)])
                    .status();
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What `kill` signals: the process, or under a wrapper its whole group.
    fn target(&self, child: &Child) -> String {
        match self.grouped {
            true => format!("-{}", child.id()),
            false => child.id().to_string(),
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.crash();
    }
}

/// Sum of a counter family's samples whose line contains `filter`.
pub fn metric_sum(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
