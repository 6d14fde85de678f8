//! `alicloud-ops-operator run`: the operator.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{ArgAction, Args};
use kube::Api;
use kube::runtime::events::{Recorder, Reporter};
use tokio::sync::watch;

use super::cloud_args::CloudArgs;
use crate::cloud::gate::WriteGate;
use crate::cloud::metrics::CloudMetrics;
use crate::cloud::retry::RetryPolicy;
use crate::cloud::snapshot::SnapshotCache;
use crate::controller::context::{Context, DefaultCredentials, RunConfig};
use crate::controller::http::{MetricsAuth, MetricsTls, Readiness, serve_health, serve_metrics};
use crate::controller::metrics::Metrics;
use crate::controller::wiring;
use crate::reconcile::duration;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "ALICLOUD_OPS_NAMESPACE")]
    pub namespace: Option<String>,
    /// Namespaces whose resources may act with the operator's own credentials (RRSA, the
    /// ECS role, the environment) when they name no `credentialsRef`: a comma-separated
    /// list, or `*` for every namespace. Empty (the default): none may; every resource
    /// must name a Secret of its own namespace.
    #[arg(long, env = "ALICLOUD_OPS_DEFAULT_CREDENTIALS_NAMESPACES", value_delimiter = ',', num_args = 0..)]
    pub default_credentials_namespaces: Vec<String>,
    /// Reconciles running at once, per kind.
    #[arg(long, env = "ALICLOUD_OPS_CONCURRENCY", default_value_t = crate::controller::context::DEFAULT_CONCURRENCY)]
    pub concurrency: u16,
    /// How often each resource is compared with the cloud when nothing else happens
    /// (a resource's spec.resyncInterval wins).
    #[arg(long, env = "ALICLOUD_OPS_RESYNC_INTERVAL", default_value = "10m")]
    pub resync_interval: String,
    /// The oldest a shared cloud list (one per kind, account and region) may be when a
    /// resource is reconciled. Default: each resource's resync interval, so a steady resync
    /// costs one list per interval. Lower it for fresher reads at the cost of more lists.
    #[arg(long, alias = "snapshot-ttl", env = "ALICLOUD_OPS_SNAPSHOT_MAX_AGE")]
    pub snapshot_max_age: Option<String>,
    /// Who may read /metrics: `kubernetes` (a bearer token that Kubernetes authenticates and
    /// authorises for `get /metrics`, by TokenReview and SubjectAccessReview) or `none`.
    /// /healthz and /readyz are always open, for the kubelet's probes.
    #[arg(long, env = "ALICLOUD_OPS_METRICS_AUTH", value_enum, default_value_t = MetricsAuthArg::Kubernetes)]
    pub metrics_auth: MetricsAuthArg,
    /// Address of /metrics, served over HTTPS.
    #[arg(long, env = "ALICLOUD_OPS_METRICS_ADDR", default_value = "0.0.0.0:8443")]
    pub metrics_addr: SocketAddr,
    /// A directory with `tls.crt` and `tls.key` (a `kubernetes.io/tls` Secret, mounted) for
    /// /metrics; without it, a self-signed certificate is made at start-up.
    #[arg(long, env = "ALICLOUD_OPS_METRICS_CERT_DIR")]
    pub metrics_cert_dir: Option<std::path::PathBuf>,
    /// Address of /healthz and /readyz (plain HTTP, for the kubelet's probes).
    #[arg(long, env = "ALICLOUD_OPS_HEALTH_ADDR", default_value = "0.0.0.0:8081")]
    pub health_addr: SocketAddr,
    /// Only the holder of the Lease reconciles; turn off only with a single replica.
    #[arg(long, env = "ALICLOUD_OPS_LEADER_ELECTION", default_value_t = true, action = ArgAction::Set)]
    pub leader_election: bool,
    /// Namespace of the Lease (default: POD_NAMESPACE, else `default`).
    #[arg(long, env = "ALICLOUD_OPS_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    #[arg(long, env = "ALICLOUD_OPS_LEASE_NAME", default_value = "alicloud-ops-operator")]
    pub lease_name: String,
    /// This replica's identity in the Lease (default: POD_NAME, else the host name and a random suffix).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    #[command(flatten)]
    pub cloud: CloudArgs,
}

/// Who may read /metrics (see [`MetricsAuth`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricsAuthArg {
    Kubernetes,
    None,
}

fn identity(args: &RunArgs) -> String {
    args.identity.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "operator".into());
        format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
    })
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

pub async fn run(args: &RunArgs) -> Result<(), String> {
    let resync = duration::parse("--resync-interval", &args.resync_interval)?;
    let snapshot_cap = match &args.snapshot_max_age {
        Some(d) => duration::parse("--snapshot-max-age", d)?,
        None => Duration::MAX,
    };
    if args.concurrency == 0 {
        return Err("--concurrency: must be at least 1".into());
    }
    let cloud_metrics = Arc::new(CloudMetrics::default());
    let metrics = Arc::new(Metrics::new(cloud_metrics.clone()));
    // Only the leader writes: the gate opens when this replica leads, and closes when it no
    // longer does (see controller::leadership).
    let gate = Arc::new(WriteGate::new(!args.leader_election));
    let cloud = args.cloud.client(cloud_metrics)?.with_gate(gate.clone());
    tracing::info!(credentials = %cloud.credentials().describe(), "default cloud credentials");
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("cannot reach Kubernetes: {e}"))?;
    let readiness = Arc::new(Readiness::default());
    let auth = match args.metrics_auth {
        MetricsAuthArg::None => MetricsAuth::None,
        MetricsAuthArg::Kubernetes => MetricsAuth::Kubernetes(client.clone()),
    };
    let tls = match &args.metrics_cert_dir {
        Some(dir) => MetricsTls::Dir(dir.clone()),
        None => MetricsTls::SelfSigned,
    };
    let bound = serve_metrics(args.metrics_addr, metrics.clone(), auth, &tls)
        .await
        .map_err(|e| format!("--metrics-addr {}: {e}", args.metrics_addr))?;
    tracing::info!(address = %bound, "serving /metrics over HTTPS");
    let health = serve_health(args.health_addr, readiness.clone())
        .await
        .map_err(|e| format!("--health-addr {}: {e}", args.health_addr))?;
    tracing::info!(address = %health, "serving /healthz and /readyz");

    // One signal fans out to every controller and the lease.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested: finishing in-flight reconciles");
        let _ = stop_tx.send(true);
    });

    let identity = identity(args);
    let mut lease_task = None;
    let mut lease_check: Option<tokio::task::JoinHandle<()>> = None;
    let mut leadership: Option<watch::Receiver<bool>> = None;
    if args.leader_election {
        let ns = args
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into());
        // A standby is healthy and ready; it only waits.
        readiness.ready.store(true, Ordering::Relaxed);
        tracing::info!(%identity, lease = %args.lease_name, namespace = %ns, "waiting for leadership");
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), &ns);
        let (rx, task) = loop {
            let manager =
                crate::controller::leadership::lease_manager(client.clone(), &ns, &args.lease_name, &identity)
                    .await
                    .map_err(|e| format!("leader election on Lease {ns}/{}: {e}", args.lease_name))?;
            let (mut rx, task) = manager.watch().await;
            let mut stop = stop_rx.clone();
            let released =
                crate::controller::leadership::released_by_another(leases.clone(), &args.lease_name, &identity);
            let next = tokio::select! {
                r = rx.wait_for(|l| *l) => { r.map_err(|e| format!("leader election stopped: {e}"))?; Standby::Leads }
                _ = stop.wait_for(|s| *s) => Standby::Stops,
                _ = released => Standby::LeaseReleased,
            };
            match next {
                Standby::Leads => break (rx, task),
                Standby::Stops => {
                    // Dropping the receiver makes the lease task release and end.
                    drop(rx);
                    let _ = task.await;
                    return Ok(());
                }
                Standby::LeaseReleased => {
                    // The manager sleeps until the old renewal expires; a new one claims the
                    // free Lease at its first step.
                    tracing::info!(%identity, lease = %args.lease_name, "the leader released the Lease: claiming it");
                    drop(rx);
                    task.abort();
                }
            }
        };
        readiness.ready.store(false, Ordering::Relaxed);
        tracing::info!(%identity, "leading: starting controllers");
        gate.open();
        leadership = Some(rx);
        lease_task = Some(task);
        lease_check = Some(tokio::spawn(crate::controller::leadership::watch(
            Api::namespaced(client.clone(), &ns),
            args.lease_name.clone(),
            identity.clone(),
            gate.clone(),
        )));
    }

    let reporter = Reporter {
        controller: "alicloud-ops-operator".into(),
        instance: Some(identity.clone()),
    };
    let snapshots = Arc::new(SnapshotCache::new(snapshot_cap));
    snapshots
        .metrics
        .register(&mut metrics.registry.lock().expect("registry lock"));
    metrics.leader.set(1);
    let leader_gauge = metrics.leader.clone();
    let ctx = Arc::new(Context::new(
        client.clone(),
        cloud,
        snapshots,
        metrics,
        Recorder::new(client, reporter),
        RunConfig {
            resync,
            concurrency: args.concurrency,
            namespace: args.namespace.clone(),
            default_credentials: DefaultCredentials::from_list(&args.default_credentials_namespaces),
            error_backoff: RetryPolicy {
                base_delay: Duration::from_secs(1),
                max_delay: Duration::from_secs(300),
                ..RetryPolicy::default()
            },
        },
    ));

    // Losing the Lease stops the controllers like a shutdown does.
    let (halt_tx, halt_rx) = watch::channel(false);
    let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let mut stop = stop_rx.clone();
        let halt_tx = halt_tx.clone();
        let lost = lost.clone();
        let mut leadership = leadership.clone();
        let gate = gate.clone();
        tokio::spawn(async move {
            let lease_lost = async {
                match leadership.as_mut() {
                    Some(rx) => {
                        let _ = rx.wait_for(|l| !*l).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = stop.wait_for(|s| *s) => {}
                _ = lease_lost => {
                    gate.close();
                    tracing::error!("lost the Lease: no more writes, stopping controllers");
                    lost.store(true, Ordering::Relaxed);
                }
            }
            leader_gauge.set(0);
            let _ = halt_tx.send(true);
        });
    }
    wiring::run_all(ctx.clone(), halt_rx, readiness.clone()).await;
    if let Some(check) = lease_check {
        check.abort();
    }
    // Dropping the receiver makes the lease task release the Lease.
    drop(leadership);
    if let Some(task) = lease_task {
        let _ = task.await;
    }
    tracing::info!("stopped");
    if lost.load(Ordering::Relaxed) {
        return Err("lost the leader Lease".into());
    }
    Ok(())
}

/// How a standby's wait for the Lease ends.
enum Standby {
    Leads,
    Stops,
    LeaseReleased,
}
