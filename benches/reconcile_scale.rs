//! Reconciles per second and cloud calls for many resources of one region, through the
//! shared snapshots, against the emulator; and the process's peak memory.
//!
//! `cargo bench --bench reconcile_scale` (env: BENCH_RESOURCES, default 2000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use alicloud_ops_operator::api::ManagementPolicy;
use alicloud_ops_operator::api::common::CommonSpec;
use alicloud_ops_operator::api::image_share::{DeletionPolicy, ImageShare, ImageShareSpec};
use alicloud_ops_operator::api::maintenance::{
    DesktopId, DesktopMaintenanceWindow, DesktopMaintenanceWindowSpec, FixedWindow,
};
use alicloud_ops_operator::cloud::client::ClientSettings;
use alicloud_ops_operator::cloud::endpoint::{Endpoints, parse_endpoint};
use alicloud_ops_operator::cloud::ops::ecd::Desktop;
use alicloud_ops_operator::cloud::ops::swas::CustomImage;
use alicloud_ops_operator::cloud::ratelimit::RateLimitConfig;
use alicloud_ops_operator::cloud::snapshot::SnapshotCache;
use alicloud_ops_operator::cloud::transport::TransportConfig;
use alicloud_ops_operator::cloud::{CloudClient, CredentialSource, Credentials};
use alicloud_ops_operator::controller::kind::{KindEnv, ManagedKind, Stage};
use alicloud_ops_operator::controller::runner::{StatusSink, reconcile_once};
use alicloud_ops_operator::emulator::state::{EcdRegion, SwasRegion};
use alicloud_ops_operator::emulator::{
    CloudState, DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, Emulator, EmulatorConfig,
};
use alicloud_ops_operator::reconcile::PlanContext;

struct Discard;

impl<K: ManagedKind> StatusSink<K> for Discard {
    async fn write(&self, _obj: &K, _status: &K::Status) -> Result<(), kube::Error> {
        Ok(())
    }
}

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        / 1024
}

/// Reconciles every object once with 8 workers; returns the seconds it took.
async fn run_all<K: ManagedKind>(objects: Arc<Vec<K>>, env: &KindEnv) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (objects, env) = (objects.clone(), env.clone());
        tasks.push(tokio::spawn(async move {
            for o in objects.iter().skip(worker).step_by(8) {
                let ctx = PlanContext {
                    now: chrono::Utc::now(),
                    generation: 1,
                    policy: ManagementPolicy::Manage,
                    resync: Duration::from_secs(600),
                    request: None,
                };
                let r = reconcile_once(o, &env, &[], &ctx, Stage::Apply, false, &Discard)
                    .await
                    .unwrap();
                assert!(r.error.is_none(), "{:?}", r.error);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    started.elapsed().as_secs_f64()
}

fn named<K: kube::Resource>(mut k: K, i: usize) -> K {
    k.meta_mut().namespace = Some("bench".into());
    k.meta_mut().uid = Some(format!("uid-{i}"));
    k
}

fn main() {
    let n: usize = std::env::var("BENCH_RESOURCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut state = CloudState::default_dataset();
        state.swas.insert(
            "ap-southeast-1".into(),
            SwasRegion {
                custom_images: (0..n).map(|i| CustomImage { image_id: format!("m-sg{i:05}"), status: "1".into(), in_share: true, ..Default::default() }).collect(),
            },
        );
        state.ecd.insert(
            "ap-southeast-1".into(),
            EcdRegion {
                desktops: (0..n)
                    .map(|i| Desktop { desktop_id: format!("ecd-sg{i:05}"), office_site_id: "sg+dir-1".into(), management_flags: vec!["NoFlag".into()], ..Default::default() })
                    .collect(),
                ..Default::default()
            },
        );
        let emu = Emulator::start(EmulatorConfig { state, ..Default::default() }).await.unwrap();
        let settings = ClientSettings {
            transport: TransportConfig { endpoints: Endpoints::with_override(parse_endpoint(&emu.url()).unwrap()), ..Default::default() },
            limits: RateLimitConfig { qps: 0.0, burst: 1, action_quotas: vec![] },
            retry: Default::default(),
        };
        let creds = Credentials::new(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, None, None);
        let cloud = CloudClient::build(settings, CredentialSource::Static { credentials: creds, origin: "bench".into() }, Default::default()).unwrap();
        let env = KindEnv::new(cloud, "bench".into(), Arc::new(SnapshotCache::new(Duration::from_secs(60))));
        println!("reconcile scale: {n} resources of a kind in one region, 8 workers, 2 cores; emulator in the same process");

        // Every image already shared: reads only.
        let shares: Vec<ImageShare> = (0..n)
            .map(|i| {
                let spec = ImageShareSpec {
                    region_id: "ap-southeast-1".into(),
                    image_id: format!("m-sg{i:05}"),
                    shared: true,
                    deletion_policy: DeletionPolicy::Retain,
                    common: CommonSpec::default(),
                };
                named(ImageShare::new(&format!("share-{i}"), spec), i)
            })
            .collect();
        let secs = run_all(Arc::new(shares), &env).await;
        let c = emu.world().counters();
        println!("  ImageShare, all in sync: {:.0} reconciles/s; {} ListCustomImages pages, {} writes", n as f64 / secs, c.count("ListCustomImages"), c.count("ModifyImageShareStatus"));
        assert_eq!(c.count("ModifyImageShareStatus"), 0);
        emu.world().reset_counters();

        // One window per desktop, all open: every reconcile writes.
        let now = chrono::Utc::now();
        let windows: Vec<DesktopMaintenanceWindow> = (0..n)
            .map(|i| {
                let spec = DesktopMaintenanceWindowSpec {
                    region_id: "ap-southeast-1".into(),
                    desktop_ids: Some(vec![DesktopId(format!("ecd-sg{i:05}"))]),
                    selector: None,
                    window: Some(FixedWindow { start: (now - chrono::Duration::hours(1)).to_rfc3339(), end: (now + chrono::Duration::hours(1)).to_rfc3339() }),
                    recurring: None,
                    drain: None,
                    exclude: None,
                    blackouts: Vec::new(),
                    notify: None,
                    common: CommonSpec::default(),
                };
                named(DesktopMaintenanceWindow::new(&format!("w-{i}"), spec), i)
            })
            .collect();
        let secs = run_all(Arc::new(windows), &env).await;
        let c = emu.world().counters();
        println!(
            "  DesktopMaintenanceWindow, each entering: {:.0} reconciles/s; {} DescribeDesktops pages, {} SetDesktopMaintenance",
            n as f64 / secs,
            c.count("DescribeDesktops"),
            c.count("SetDesktopMaintenance")
        );
        assert_eq!(c.count("SetDesktopMaintenance") as usize, n);
        let in_maintenance = emu.world().state().ecd["ap-southeast-1"].desktops.iter().filter(|d| d.in_maintenance()).count();
        assert_eq!(in_maintenance, n);
        println!("  peak RSS: {} MiB", peak_rss_mib());
    });
}
