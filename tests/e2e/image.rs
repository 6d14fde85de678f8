//! The operator's image, run as a cluster runs it: built from the Dockerfile's layout
//! (scripts/build-image.sh), started by podman with exactly what the chart's Deployment says
//! (rendered by `helm template`: user, read-only root, capabilities, environment, arguments,
//! ports, limits), the ServiceAccount's token from a TokenRequest mounted where the kubelet
//! mounts it, two replicas, against the harness and the emulator.
//!
//! What the kubelet does and podman does not is done here, and nothing more: the downward API
//! (`POD_NAME`, `POD_NAMESPACE`), `KUBERNETES_SERVICE_HOST`/`_PORT`, the token volume. The
//! machine's own switches (tests/container/containers.conf, `--ulimit host`, slirp4netns to
//! reach the harness on the host's loopback) stay in this test, not in the chart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Container, PodSpec, ServiceAccount};
use serde::Deserialize;

use super::*;

/// The host's loopback, as a container on slirp4netns with `allow_host_loopback` reaches it:
/// the harness and the emulator listen on 127.0.0.1 only.
const HOST_LOOPBACK: &str = "10.0.2.2";

/// The name the apiserver's certificate carries and pods reach it by.
const APISERVER_NAME: &str = "kubernetes.default.svc";

/// A leader stopped cleanly releases the Lease, and the standby claims it when it sees the
/// release (README, "Leader election"): within this, not the Lease's 15 s.
const CLEAN_HANDOVER: Duration = Duration::from_secs(5);

/// The reasons that say the operator in the container could not do its job: its credentials,
/// its RAM policy, its endpoint, its RBAC or the examples are wrong for it.
const FAILED: [&str; 7] = [
    "CredentialsInvalid",
    "CloudRejected",
    "CloudUnavailable",
    "NotFound",
    "InvalidSpec",
    "Conflict",
    "ReconcilePanicked",
];

fn image() -> String {
    std::env::var("OPERATOR_IMAGE").unwrap_or_else(|_| "localhost/alicloud-ops-operator:dev".into())
}

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .env("CONTAINERS_CONF", repo("tests/container/containers.conf"))
        .output()
        .unwrap_or_else(|e| panic!("podman: {e}; run `make test` (scripts/install-container-runtime.sh installs it)"))
}

/// `podman <args>`, which must succeed; its standard output.
fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The image's config and paths, or a plain failure that says how to build it.
fn inspect_image() -> Value {
    let out = podman(&["image", "inspect", &image()]);
    assert!(
        out.status.success(),
        "no image {}: run `make test`, or scripts/build-image.sh ({})",
        image(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    serde_json::from_slice::<Value>(&out.stdout).unwrap()[0].clone()
}

/// Every path under `root`, relative and with a leading `/`, with `/` after directories.
fn paths_under(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = format!("/{}", path.strip_prefix(root).unwrap().display());
            if entry.file_type().unwrap().is_dir() {
                out.insert(format!("{rel}/"));
                walk(root, &path, out);
            } else {
                out.insert(rel);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// The Dockerfile's runtime stage: the instructions after its last `FROM`, continuation
/// lines joined.
fn dockerfile_stages() -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    let joined = text.replace("\\\n", " ");
    let mut stages: Vec<Vec<String>> = Vec::new();
    for line in joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if line.starts_with("FROM ") {
            stages.push(Vec::new());
        }
        if let Some(stage) = stages.last_mut() {
            stage.push(line.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    stages
}

/// The image podman runs and the Dockerfile's image are the same: the runtime stage copies the
/// directory that scripts/image-rootfs.sh stages (and only that) onto `scratch`, with the same
/// user, ports, entrypoint and command as the image has; and the image holds exactly the paths
/// the script stages from this machine's release binary.
#[tokio::test(flavor = "multi_thread")]
async fn the_image_has_the_dockerfiles_layout_and_config() {
    let config = inspect_image();
    let stages = dockerfile_stages();
    let build = stages.first().expect("a build stage");
    let runtime = stages.last().unwrap();
    let rootfs_run = build
        .iter()
        .find(|l| l.starts_with("RUN ") && l.contains("scripts/image-rootfs.sh"))
        .expect("the build stage stages the runtime files with scripts/image-rootfs.sh");
    let args: Vec<&str> = rootfs_run
        .split("scripts/image-rootfs.sh ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .take(2)
        .collect();
    assert_eq!(
        args,
        ["target/release/alicloud-ops-operator", "/rootfs"],
        "{rootfs_run}"
    );
    assert_eq!(runtime[0], "FROM scratch", "{runtime:?}");
    let copies: Vec<&String> = runtime
        .iter()
        .filter(|l| l.starts_with("COPY") || l.starts_with("ADD"))
        .collect();
    assert_eq!(
        copies,
        ["COPY --from=build /rootfs /"],
        "the runtime stage copies only the staged files"
    );
    let instruction = |name: &str| {
        runtime
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("the runtime stage has no {name}"))
            .to_string()
    };
    let c = &config["Config"];
    assert_eq!(c["User"], instruction("USER"));
    let exposed: BTreeSet<String> = instruction("EXPOSE").split_whitespace().map(String::from).collect();
    let image_ports: BTreeSet<String> = c["ExposedPorts"]
        .as_object()
        .unwrap()
        .keys()
        .map(|p| p.trim_end_matches("/tcp").to_string())
        .collect();
    assert_eq!(image_ports, exposed);
    let json_array = |s: String| serde_json::from_str::<Value>(&s).unwrap();
    assert_eq!(c["Entrypoint"], json_array(instruction("ENTRYPOINT")));
    assert_eq!(c["Cmd"], json_array(instruction("CMD")));

    // The paths: the image's, against what the Dockerfile's RUN stages.
    let staged = tempfile::tempdir().unwrap();
    let out = Command::new(repo("scripts/image-rootfs.sh"))
        .arg(repo("target/release/alicloud-ops-operator"))
        .arg(staged.path().join("rootfs"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = paths_under(&staged.path().join("rootfs"));
    let mount = podman_ok(&["image", "mount", &image()]);
    let in_image = paths_under(Path::new(mount.trim()));
    podman_ok(&["image", "unmount", &image()]);
    assert_eq!(in_image, expected, "the image's paths against the Dockerfile's");
    for must in [
        "/usr/local/bin/alicloud-ops-operator",
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/passwd",
        "/etc/group",
        "/lib64/ld-linux-x86-64.so.2",
    ] {
        assert!(in_image.contains(must), "{must} missing from the image: {in_image:?}");
    }
}

/// One replica of the chart's Deployment, as podman runs it; removed when dropped.
struct Pod {
    name: String,
    /// `containerPort` → the port on the host's loopback it is published on.
    ports: BTreeMap<String, u16>,
}

/// What the kubelet (and, with RRSA, ack-pod-identity-webhook) adds to every replica of the
/// pod template: environment variables and read-only volumes.
struct Kubelet {
    ns: String,
    env: Vec<(String, String)>,
    /// (directory on this machine, mount path in the container).
    volumes: Vec<(PathBuf, String)>,
}

impl Pod {
    /// Starts `container` of `spec` as `kubelet` would for pod `name`.
    fn start(kubelet: &Kubelet, name: &str, spec: &PodSpec, container: &Container) -> Pod {
        let ns = kubelet.ns.as_str();
        let _ = podman(&["rm", "--force", "--time", "0", name]);
        let mut args: Vec<String> = vec![
            "run".into(),
            "--detach".into(),
            "--name".into(),
            name.into(),
            "--hostname".into(),
            name.into(),
            // This machine's switches (see the module's doc).
            "--ulimit".into(),
            "host".into(),
            "--network".into(),
            "slirp4netns:allow_host_loopback=true".into(),
            "--add-host".into(),
            format!("{APISERVER_NAME}:{HOST_LOOPBACK}"),
        ];
        for (key, value) in &kubelet.env {
            args.extend(["--env".into(), format!("{key}={value}")]);
        }
        for (dir, path) in &kubelet.volumes {
            args.extend(["--volume".into(), format!("{}:{path}:ro", dir.display())]);
        }
        // The pod's and the container's security context.
        let pod_security = spec
            .security_context
            .clone()
            .expect("the chart sets a pod securityContext");
        let user = pod_security.run_as_user.expect("runAsUser");
        let group = pod_security.run_as_group.expect("runAsGroup");
        assert_eq!(pod_security.run_as_non_root, Some(true));
        assert_ne!(user, 0, "runAsNonRoot");
        args.extend(["--user".into(), format!("{user}:{group}")]);
        let seccomp = pod_security.seccomp_profile.expect("seccompProfile").type_;
        // RuntimeDefault is podman's default profile: nothing to add, and nothing else is expected.
        assert_eq!(seccomp, "RuntimeDefault");
        let security = container
            .security_context
            .clone()
            .expect("the chart sets a container securityContext");
        if security.read_only_root_filesystem == Some(true) {
            args.push("--read-only".into());
        }
        if security.allow_privilege_escalation == Some(false) {
            args.extend(["--security-opt".into(), "no-new-privileges".into()]);
        }
        for cap in security.capabilities.and_then(|c| c.drop).unwrap_or_default() {
            args.extend(["--cap-drop".into(), cap]);
        }
        assert!(
            container.volume_mounts.as_ref().is_none_or(Vec::is_empty) && container.env_from.is_none(),
            "the chart mounts or imports something this test does not give the container: {container:?}"
        );
        // The limits.
        if let Some(limits) = container.resources.as_ref().and_then(|r| r.limits.as_ref()) {
            if let Some(memory) = limits.get("memory") {
                args.extend(["--memory".into(), memory.0.replace("Mi", "m").replace("Gi", "g")]);
            }
            if let Some(cpu) = limits.get("cpu") {
                let milli: f64 = cpu
                    .0
                    .strip_suffix('m')
                    .map_or_else(|| cpu.0.parse::<f64>().unwrap() * 1000.0, |m| m.parse::<f64>().unwrap());
                args.extend(["--cpus".into(), format!("{}", milli / 1000.0)]);
            }
        }
        // The environment, the downward API resolved.
        for env in container.env.clone().unwrap_or_default() {
            let value = match (env.value, env.value_from) {
                (Some(v), None) => v,
                (None, Some(from)) => match from.field_ref.map(|f| f.field_path).as_deref() {
                    Some("metadata.name") => name.to_string(),
                    Some("metadata.namespace") => ns.to_string(),
                    other => panic!("the chart reads {other:?} from the downward API; teach this test"),
                },
                other => panic!("env {}: {other:?}", env.name),
            };
            args.extend(["--env".into(), format!("{}={value}", env.name)]);
        }
        // The ports, each on a free port of the host's loopback.
        let mut ports = BTreeMap::new();
        for port in container.ports.clone().unwrap_or_default() {
            let host = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            args.extend(["--publish".into(), format!("127.0.0.1:{host}:{}", port.container_port)]);
            ports.insert(port.name.clone().expect("named ports"), host);
        }
        let image = container.image.clone().expect("image");
        args.push(image);
        args.extend(container.args.clone().unwrap_or_default());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        podman_ok(&args);
        Pod {
            name: name.to_string(),
            ports,
        }
    }

    fn url(&self, port: &str, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.ports[port])
    }

    fn logs(&self) -> String {
        let out = podman(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// `podman stop` (SIGTERM, then 30 s, the chart's grace period): the exit code.
    fn stop(&self) -> i64 {
        podman_ok(&["stop", "--time", "30", &self.name]);
        let code = podman_ok(&["inspect", "--format", "{{.State.ExitCode}}", &self.name]);
        code.trim().parse().unwrap()
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "0", &self.name]);
    }
}

/// The helm chart, rendered for `ns` in its namespaced mode with this image, the emulator as
/// the endpoint (what a user sets in `extraEnv`) and the operator's own credentials allowed in
/// `ns`, and applied: the Deployment and the ServiceAccount.
fn render_and_apply(ns: &str, name: &str, endpoint: &str) -> (Deployment, ServiceAccount) {
    let image = image();
    let (repository, tag) = image.rsplit_once(':').unwrap();
    let extra_env = json!([
        {"name": "ALICLOUD_OPS_ENDPOINT", "value": endpoint},
        // The emulator speaks plain HTTP, and from inside the container it is not on loopback.
        {"name": "ALICLOUD_OPS_ALLOW_INSECURE_ENDPOINT", "value": "true"},
    ]);
    let out = Command::new(helm())
        .args(["template", name, "deploy/helm/alicloud-ops-operator", "--namespace", ns])
        .args([
            "--set",
            "installMode=namespaced",
            "--set",
            &format!("fullnameOverride={name}"),
        ])
        .args([
            "--set",
            &format!("image.repository={repository}"),
            "--set",
            &format!("image.tag={tag}"),
        ])
        .args(["--set", &format!("defaultCredentialsNamespaces={{{ns}}}")])
        .args(["--set-json", &format!("extraEnv={extra_env}")])
        .current_dir(repo("."))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8(out.stdout).unwrap();
    let file = cluster().dir.join(format!("image-{ns}.yaml"));
    std::fs::write(&file, &rendered).unwrap();
    kubectl_run(&["apply", "-f", file.to_str().unwrap()]);
    let documents: Vec<Value> = serde_yaml::Deserializer::from_str(&rendered)
        .filter_map(|doc| Option::<Value>::deserialize(doc).unwrap())
        .collect();
    let of_kind = |kind: &str| {
        let doc = documents.iter().find(|v| v["kind"] == kind);
        doc.unwrap_or_else(|| panic!("the chart renders no {kind}")).clone()
    };
    (
        serde_json::from_value(of_kind("Deployment")).unwrap(),
        serde_json::from_value(of_kind("ServiceAccount")).unwrap(),
    )
}

/// A directory of files readable by the container's user, as a projected volume is.
fn volume(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new().prefix("volume").tempdir().unwrap();
    for (name, content) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// The examples/ directory, in `ns`: one or more resources of every kind, and their Secret.
fn apply_examples(ns: &str) {
    let mut text = String::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        text.push_str(
            &std::fs::read_to_string(file)
                .unwrap()
                .replace("namespace: default", &format!("namespace: {ns}")),
        );
        text.push_str("\n---\n");
    }
    let file = cluster().dir.join(format!("examples-{ns}.yaml"));
    std::fs::write(&file, text).unwrap();
    kubectl_run(&["apply", "-f", file.to_str().unwrap()]);
}

/// `Kind/name reason` of each object of every kind in `ns` that is not yet reconciled, or whose
/// Ready reason says the operator failed; empty once each kind has objects and all are fine.
async fn unreconciled(client: &Client, ns: &str) -> Vec<String> {
    let mut waiting = Vec::new();
    for kind in registry::names() {
        let Ok(list) = ours(client, ns, kind.kind).list(&Default::default()).await else {
            waiting.push(format!("{}: cannot list", kind.kind));
            continue;
        };
        if list.items.is_empty() {
            waiting.push(format!("{}: no example of this kind in examples/", kind.kind));
        }
        for obj in list.items {
            let v = serde_json::to_value(&obj).unwrap();
            let seen = v["status"]["observedGeneration"] == v["metadata"]["generation"];
            let reason = v["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .map(|c| {
                    format!(
                        "{}: {}",
                        c["reason"].as_str().unwrap_or(""),
                        c["message"].as_str().unwrap_or("")
                    )
                });
            match reason {
                Some(r) if seen && !FAILED.iter().any(|f| r.starts_with(&format!("{f}:"))) => {}
                other => waiting.push(format!("{}/{} {other:?}", kind.kind, obj.name_any())),
            }
        }
    }
    waiting
}

async fn holder(client: &Client, ns: &str, lease: &str) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt(lease)
        .await
        .ok()??
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

async fn status_of(url: &str, token: Option<&str>) -> u16 {
    let mut req = https_client().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// Two replicas of the chart's Deployment in containers: both healthy and ready, one leads and
/// reconciles every kind of the examples against the emulator, /metrics answers a token the
/// chart's metrics-reader role allows and refuses another, and when the leader's container is
/// stopped it exits 0 and the other replica leads within seconds and reconciles.
#[tokio::test(flavor = "multi_thread")]
async fn the_image_runs_as_the_charts_deployment_says() {
    inspect_image();
    let Scene { client, ns, emu } = Scene::new("image").await;
    let name = format!("aoo-{ns}");
    let endpoint = emu.url().replace("127.0.0.1", HOST_LOOPBACK);
    let (deployment, service_account) = render_and_apply(&ns, &name, &endpoint);
    assert_eq!(deployment.spec.replicas, Some(2), "the chart's default: two replicas");
    let template = deployment.spec.template;
    let spec = template.spec.clone().unwrap();
    let container = spec.containers[0].clone();

    // The kubelet: the apiserver's address, and the ServiceAccount's token volume.
    let kubeconfig: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&cluster().kubeconfig).unwrap()).unwrap();
    let ca = std::fs::read(
        kubeconfig["clusters"][0]["cluster"]["certificate-authority"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let server = kubeconfig["clusters"][0]["cluster"]["server"].as_str().unwrap();
    let api_port = server.rsplit(':').next().unwrap().to_string();
    let token = service_account_token(&client, &ns, &name, None).await;
    let account_volume = volume(&[
        ("token", token.as_bytes()),
        ("ca.crt", &ca),
        ("namespace", ns.as_bytes()),
    ]);
    let mut kubelet = Kubelet {
        ns: ns.clone(),
        env: vec![
            ("KUBERNETES_SERVICE_HOST".into(), APISERVER_NAME.into()),
            ("KUBERNETES_SERVICE_PORT".into(), api_port),
        ],
        volumes: vec![(
            account_volume.path().to_path_buf(),
            "/var/run/secrets/kubernetes.io/serviceaccount".into(),
        )],
    };
    // ack-pod-identity-webhook, for a pod the chart marks for RRSA (its default): the role the
    // ServiceAccount names, in the emulator's account, and an OIDC token for STS.
    let injection = template.metadata.as_ref().and_then(|m| m.annotations.as_ref());
    assert_eq!(
        injection
            .and_then(|a| a.get("pod-identity.alibabacloud.com/injection"))
            .map(String::as_str),
        Some("on"),
        "the chart's default credentials are RRSA"
    );
    let role = service_account
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("pod-identity.alibabacloud.com/role-name"))
        .expect("the ServiceAccount names its RAM role")
        .clone();
    let account = alicloud_ops_operator::emulator::DEFAULT_ACCOUNT_ID;
    // The role has deploy/ram/operator.json attached, as deploy/rrsa/README.md says.
    emu.world()
        .attach_policy(&format!("role/{role}"), Some(support::project_policy("operator.json")));
    let oidc = service_account_token(&client, &ns, &name, Some("sts.aliyuncs.com")).await;
    let oidc_volume = volume(&[("token", oidc.as_bytes())]);
    let rrsa_tokens = "/var/run/secrets/ack.alibabacloud.com/rrsa-tokens";
    kubelet.env.extend([
        (
            "ALIBABA_CLOUD_ROLE_ARN".into(),
            format!("acs:ram::{account}:role/{role}"),
        ),
        (
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN".into(),
            format!("acs:ram::{account}:oidc-provider/ack-rrsa-harness"),
        ),
        ("ALIBABA_CLOUD_OIDC_TOKEN_FILE".into(), format!("{rrsa_tokens}/token")),
    ]);
    kubelet
        .volumes
        .push((oidc_volume.path().to_path_buf(), rrsa_tokens.into()));

    let pods: Vec<Pod> = (0..2)
        .map(|i| Pod::start(&kubelet, &format!("{name}-{i}"), &spec, &container))
        .collect();
    let user = format!("system:serviceaccount:{ns}:{name}");
    let logs = |pods: &[Pod]| {
        let mut text: String = pods.iter().map(|p| format!("--- {}\n{}", p.name, p.logs())).collect();
        text.push_str(&format!("--- the apiserver's refusals of {user}\n"));
        for line in std::fs::read_to_string(cluster().dir.join("audit.log"))
            .unwrap_or_default()
            .lines()
        {
            let Ok(event) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if event["user"]["username"] == user.as_str()
                && event["responseStatus"]["code"].as_i64().unwrap_or(0) >= 400
            {
                text.push_str(&format!(
                    "{} {} {}\n",
                    event["verb"], event["requestURI"], event["responseStatus"]["code"]
                ));
            }
        }
        text
    };

    // The kubelet's probes, on the chart's probe port: both replicas live and ready.
    let probe = container.readiness_probe.clone().unwrap().http_get.unwrap();
    let live = container.liveness_probe.clone().unwrap().http_get.unwrap();
    let port_name = |p: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString| match p {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
        other => panic!("the probes name their port: {other:?}"),
    };
    for pod in &pods {
        for (path, port) in [
            (live.path.clone().unwrap(), port_name(&live.port)),
            (probe.path.clone().unwrap(), port_name(&probe.port)),
        ] {
            let url = format!("{}{path}", pod.url(&port, "http"));
            let started = Instant::now();
            loop {
                let answer = match reqwest::get(&url).await {
                    Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                    Err(e) => (0, e.to_string()),
                };
                if answer.0 == 200 {
                    break;
                }
                assert!(
                    started.elapsed() < WAIT,
                    "{url} ({}) did not answer 200 within {WAIT:?}: the last answer was {answer:?}\n{}",
                    pod.name,
                    logs(&pods)
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }

    // One leads, under the Lease the chart names.
    let lease = container
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .find(|e| e.name == "ALICLOUD_OPS_LEASE_NAME")
        .and_then(|e| e.value)
        .expect("the chart names the Lease after the release");
    let leader = eventually("a replica holds the Lease", WAIT, || holder(&client, &ns, &lease)).await;
    let (leading, standby) = match pods.iter().position(|p| p.name == leader) {
        Some(0) => (&pods[0], &pods[1]),
        Some(_) => (&pods[1], &pods[0]),
        None => panic!("the Lease is held by {leader}, not a replica"),
    };

    // Every kind, from the examples.
    apply_examples(&ns);
    let started = Instant::now();
    loop {
        let waiting = unreconciled(&client, &ns).await;
        if waiting.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "not every example was reconciled by the container within {WAIT:?}: {waiting:#?}\n{}",
            logs(&pods)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let counters = emu.world().counters();
    let writes: u64 = [
        "UpdateFotaTask",
        "SetDesktopMaintenance",
        "ModifyImageShareStatus",
        "ApproveOtaTask",
    ]
    .iter()
    .map(|a| counters.count_code(a, "success"))
    .sum();
    assert!(
        writes > 0,
        "the examples made the container write nothing: {counters:?}"
    );

    // /metrics: a token the chart's metrics-reader ClusterRole is bound to, and another.
    let binding: k8s_openapi::api::rbac::v1::ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("{name}-scraper")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("{name}-metrics-reader")},
        "subjects": [{"kind": "ServiceAccount", "name": "scraper", "namespace": ns}]
    }))
    .unwrap();
    Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let scraper = service_account_token(&client, &ns, "scraper", None).await;
    let stranger = service_account_token(&client, &ns, "stranger", None).await;
    let metrics = format!("{}/metrics", leading.url("metrics", "https"));
    eventually("the metrics reader's token is allowed", WAIT, || async {
        (status_of(&metrics, Some(&scraper)).await == 200).then_some(())
    })
    .await;
    assert_eq!(
        status_of(&metrics, Some(&stranger)).await,
        403,
        "a token RBAC does not allow"
    );
    let page = https_client()
        .get(&metrics)
        .bearer_auth(&scraper)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.lines().any(|l| l == "alicloud_ops_leader 1"), "{page}");

    // The leader stops: it exits 0, and the standby leads within the Lease's duration.
    let stopping = Instant::now();
    let code = leading.stop();
    let stopped_in = stopping.elapsed();
    assert_eq!(code, 0, "podman stop of the leader:\n{}", leading.logs());
    let took = loop {
        if holder(&client, &ns, &lease).await.as_deref() == Some(standby.name.as_str()) {
            break stopping.elapsed();
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(45),
            "{} did not take the Lease over:\n{}",
            standby.name,
            logs(&pods)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(took < CLEAN_HANDOVER, "the Lease took {took:?} to hand over");

    // The new leader reconciles: a window opened now enters its computers.
    create::<DesktopMaintenanceWindow>(
        &client,
        &ns,
        dmw(
            "after-handover",
            &["ecd-hz10021"],
            chrono::Duration::hours(1),
            Some("alicloud-credentials"),
        ),
    )
    .await;
    wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "after-handover", "Active").await;
    assert!(in_maintenance(&emu, "ecd-hz10021"));
    assert_eq!(
        standby.stop(),
        0,
        "podman stop of the last replica:\n{}",
        standby.logs()
    );
    eprintln!("image test: the leader stopped in {stopped_in:?}; the Lease handed over in {took:?}");
}
