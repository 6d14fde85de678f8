//! Reconciles in memory: the runner against the emulator, with status kept on the object as
//! the apiserver would keep it (no Kubernetes here).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use alicloud_ops_operator::api::ManagementPolicy;
use alicloud_ops_operator::api::fota::FotaTaskPolicy;
use alicloud_ops_operator::api::image_share::ImageShare;
use alicloud_ops_operator::api::maintenance::DesktopMaintenanceWindow;
use alicloud_ops_operator::api::ota::OtaSchedule;
use alicloud_ops_operator::api::rollout::UpdateRollout;
use alicloud_ops_operator::cloud::SignatureVersion;
use alicloud_ops_operator::cloud::snapshot::SnapshotCache;
use alicloud_ops_operator::controller::kind::{KindEnv, ManagedKind, Stage};
use alicloud_ops_operator::controller::runner::{Reconciled, StatusSink, reconcile_once};
use alicloud_ops_operator::emulator::{Emulator, World};
use alicloud_ops_operator::reconcile::PlanContext;
use chrono::{DateTime, Utc};

use super::{client, emulator};

/// Keeps, for every status write, how many requests the emulator had answered by then, so
/// a test can tell whether an intent was written before the call it announces.
pub struct Memory {
    world: Arc<World>,
    pub writes: Mutex<Vec<(u64, serde_json::Value)>>,
}

impl<K: ManagedKind> StatusSink<K> for Memory {
    async fn write(&self, _obj: &K, status: &K::Status) -> Result<(), kube::Error> {
        let seen = self.world.counters().total;
        self.writes
            .lock()
            .unwrap()
            .push((seen, serde_json::to_value(status).unwrap()));
        Ok(())
    }
}

pub struct Harness {
    pub emu: Emulator,
    pub env: KindEnv,
    pub sink: Memory,
}

impl Harness {
    pub async fn new() -> Self {
        // No caching between steps: each reconcile reads what the cloud says now.
        Self::with_snapshot_max_age(Duration::ZERO).await
    }

    pub async fn with_snapshot_max_age(ttl: Duration) -> Self {
        let emu = emulator().await;
        let env = KindEnv::new(
            client(&emu, SignatureVersion::V3),
            "test".into(),
            Arc::new(SnapshotCache::new(ttl)),
        );
        let sink = Memory {
            world: emu.world().clone(),
            writes: Mutex::default(),
        };
        Harness { emu, env, sink }
    }

    /// One reconcile at `now`; the status is kept on the object as the apiserver would.
    pub async fn step<K: HasStatus>(&self, obj: &mut K, now: DateTime<Utc>, stage: Stage) -> Reconciled<K> {
        let ctx = PlanContext {
            policy: obj.common().management_policy,
            generation: obj.meta().generation.unwrap_or(1),
            ..manage_ctx(now)
        };
        let r = reconcile_once(obj, &self.env, &[], &ctx, stage, false, &self.sink)
            .await
            .unwrap();
        obj.set_status(r.status.clone());
        r
    }

    /// [`Harness::step`] with the other resources of the kind, as the controller passes them.
    pub async fn step_among<K: HasStatus>(
        &self,
        obj: &mut K,
        peers: &[&K],
        now: DateTime<Utc>,
        stage: Stage,
    ) -> Reconciled<K> {
        let ctx = PlanContext {
            policy: obj.common().management_policy,
            generation: obj.meta().generation.unwrap_or(1),
            ..manage_ctx(now)
        };
        let peers: Vec<Arc<K>> = peers.iter().map(|p| Arc::new((*p).clone())).collect();
        let r = reconcile_once(obj, &self.env, &peers, &ctx, stage, false, &self.sink)
            .await
            .unwrap();
        obj.set_status(r.status.clone());
        r
    }

    pub fn writes(&self, action: &str) -> u64 {
        self.emu.world().counters().count(action)
    }
}

pub trait HasStatus: ManagedKind {
    fn set_status(&mut self, s: Self::Status);
}
macro_rules! has_status {
    ($($k:ty),*) => {$(impl HasStatus for $k { fn set_status(&mut self, s: Self::Status) { self.status = Some(s); } })*};
}
has_status!(
    FotaTaskPolicy,
    ImageShare,
    DesktopMaintenanceWindow,
    OtaSchedule,
    UpdateRollout
);

pub fn named<K: kube::Resource>(mut k: K, name: &str) -> K {
    k.meta_mut().name = Some(name.into());
    k.meta_mut().namespace = Some("default".into());
    k.meta_mut().uid = Some(format!("uid-{name}"));
    k
}

/// The context every step here plans in: generation 1, Manage, a 10-minute resync.
pub fn manage_ctx(now: DateTime<Utc>) -> PlanContext {
    PlanContext {
        now,
        generation: 1,
        policy: ManagementPolicy::Manage,
        resync: Duration::from_secs(600),
        request: None,
    }
}

/// Adds a fault to the emulator (its admin API's JSON shape).
pub fn fault(h: &Harness, v: serde_json::Value) {
    h.emu.world().add_fault(serde_json::from_value(v).unwrap()).unwrap();
}

/// The requests the emulator answered for `action`, oldest first.
pub fn log_of(h: &Harness, action: &str) -> Vec<alicloud_ops_operator::emulator::RequestRecord> {
    h.emu
        .world()
        .request_log()
        .into_iter()
        .filter(|r| r.action == action)
        .collect()
}
