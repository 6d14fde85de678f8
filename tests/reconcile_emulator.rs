//! Each kind's reconcile against the emulator: first sync, drift, and back, counting the
//! cloud calls. Status is kept in memory here; the end-to-end tests use the apiserver.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use alicloud_ops_operator::api::ManagementPolicy;
use alicloud_ops_operator::api::common::CommonSpec;
use alicloud_ops_operator::api::fota::{FotaTaskPolicy, FotaTaskPolicySpec};
use alicloud_ops_operator::api::image_share::{DeletionPolicy, ImageShare, ImageShareSpec};
use alicloud_ops_operator::api::maintenance::{
    DesktopId, DesktopMaintenanceWindow, DesktopMaintenanceWindowSpec, FixedWindow,
};
use alicloud_ops_operator::api::ota::{OtaSchedule, OtaScheduleSpec, OtaType};
use alicloud_ops_operator::cloud::SignatureVersion;
use alicloud_ops_operator::controller::kind::{KindEnv, ManagedKind, Stage};
use alicloud_ops_operator::controller::runner::{Reconciled, StatusSink, reconcile_once};
use alicloud_ops_operator::controller::snapshot::SnapshotCache;
use alicloud_ops_operator::emulator::Emulator;
use alicloud_ops_operator::reconcile::{PlanContext, Reason};
use chrono::{DateTime, Utc};
use support::*;

#[derive(Default)]
struct Memory {
    writes: Mutex<u32>,
}

impl<K: ManagedKind> StatusSink<K> for Memory {
    async fn write(&self, _obj: &K, _status: &K::Status) -> Result<(), kube::Error> {
        *self.writes.lock().unwrap() += 1;
        Ok(())
    }
}

struct Harness {
    emu: Emulator,
    env: KindEnv,
    sink: Memory,
}

impl Harness {
    async fn new() -> Self {
        let emu = emulator().await;
        let env = KindEnv {
            cloud: client(&emu, SignatureVersion::V3),
            account: "test".into(),
            // No caching between steps: each reconcile reads what the cloud says now.
            snapshots: Arc::new(SnapshotCache::new(Duration::ZERO)),
        };
        Harness {
            emu,
            env,
            sink: Memory::default(),
        }
    }

    /// One reconcile at `now`; the status is kept on the object as the apiserver would.
    async fn step<K: HasStatus>(&self, obj: &mut K, now: DateTime<Utc>, stage: Stage) -> Reconciled<K> {
        let ctx = PlanContext {
            now,
            generation: 1,
            policy: obj.common().management_policy,
            resync: Duration::from_secs(600),
        };
        let r = reconcile_once(obj, &self.env, &[], &ctx, stage, false, &self.sink)
            .await
            .unwrap();
        obj.set_status(r.status.clone());
        r
    }

    fn writes(&self, action: &str) -> u64 {
        self.emu.world().counters().count(action)
    }
}

trait HasStatus: ManagedKind {
    fn set_status(&mut self, s: Self::Status);
}
macro_rules! has_status {
    ($($k:ty),*) => {$(impl HasStatus for $k { fn set_status(&mut self, s: Self::Status) { self.status = Some(s); } })*};
}
has_status!(FotaTaskPolicy, ImageShare, DesktopMaintenanceWindow, OtaSchedule);

fn named<K: kube::Resource>(mut k: K, name: &str) -> K {
    k.meta_mut().name = Some(name.into());
    k.meta_mut().namespace = Some("default".into());
    k.meta_mut().uid = Some(format!("uid-{name}"));
    k
}

#[tokio::test]
async fn fota_policy_first_sync_drift_and_back() {
    let h = Harness::new().await;
    let mut p = named(
        FotaTaskPolicy::new(
            "x",
            FotaTaskPolicySpec {
                region_id: "cn-hangzhou".into(),
                auto_push: true,
                task_uids: None,
                common: CommonSpec::default(),
            },
        ),
        "push",
    );
    let now = Utc::now();
    let r = h.step(&mut p, now, Stage::Apply).await;
    assert_eq!(r.applied.len(), 2, "{:?}", r.applied);
    assert_eq!(h.writes("UpdateFotaTask"), 2);
    let r = h.step(&mut p, now, Stage::Apply).await;
    assert_eq!(r.verdict.reason, Reason::InSync);
    assert_eq!(h.writes("UpdateFotaTask"), 2, "no write without drift");
    assert_eq!(h.writes("DescribeFotaTasks"), 2, "one list per reconcile");
    // Someone switches a task off behind the operator's back.
    h.emu
        .world()
        .update_state(|s| s.ecd.get_mut("cn-hangzhou").unwrap().fota_tasks[2].status = "Pending".into());
    let r = h.step(&mut p, now, Stage::Apply).await;
    assert_eq!(
        r.applied,
        vec!["UpdateFotaTask aot-hz0003 UserStatus=Running".to_string()]
    );
    let r = h.step(&mut p, now, Stage::Apply).await;
    assert_eq!(r.verdict.reason, Reason::InSync);
    assert_eq!(h.writes("UpdateFotaTask"), 3);
}

#[tokio::test]
async fn fota_policy_reports_the_global_switch() {
    let h = Harness::new().await;
    h.emu
        .world()
        .update_state(|s| s.ecd.get_mut("cn-hangzhou").unwrap().global_auto_update = true);
    let mut p = named(
        FotaTaskPolicy::new(
            "x",
            FotaTaskPolicySpec {
                region_id: "cn-hangzhou".into(),
                auto_push: false,
                task_uids: None,
                common: CommonSpec::default(),
            },
        ),
        "hold",
    );
    let now = Utc::now();
    let r = h.step(&mut p, now, Stage::Apply).await;
    assert_eq!(r.applied.len(), 3);
    let r = h.step(&mut p, now + chrono::Duration::seconds(10), Stage::Apply).await;
    assert_eq!(r.verdict.reason, Reason::GlobalAutoUpdateEnabled);
    assert!(r.applied.is_empty(), "not retried hot");
    assert_eq!(h.writes("UpdateFotaTask"), 3);
}

#[tokio::test]
async fn maintenance_window_enters_exits_and_leaves_foreign_ones() {
    let h = Harness::new().await;
    let now = Utc::now();
    // ecd-hz10001 is already in maintenance by someone else in the default dataset.
    let ids = ["ecd-hz10001", "ecd-hz10011", "ecd-hz10012", "ecd-hz10013"];
    let mut w = named(
        DesktopMaintenanceWindow::new(
            "x",
            DesktopMaintenanceWindowSpec {
                region_id: "cn-hangzhou".into(),
                desktop_ids: Some(ids.iter().map(|s| DesktopId(s.to_string())).collect()),
                selector: None,
                window: Some(FixedWindow {
                    start: (now - chrono::Duration::hours(1)).to_rfc3339(),
                    end: (now + chrono::Duration::hours(1)).to_rfc3339(),
                }),
                recurring: None,
                common: CommonSpec::default(),
            },
        ),
        "w",
    );
    let r = h.step(&mut w, now, Stage::Apply).await;
    assert_eq!(r.applied.len(), 1);
    assert_eq!(
        r.status.desktops_in_maintenance,
        vec!["ecd-hz10011", "ecd-hz10012", "ecd-hz10013"]
    );
    assert_eq!(r.status.foreign_maintenance, vec!["ecd-hz10001"]);
    let in_maint = |h: &Harness| -> Vec<String> {
        h.emu.world().state().ecd["cn-hangzhou"]
            .desktops
            .iter()
            .filter(|d| d.in_maintenance())
            .map(|d| d.desktop_id.clone())
            .collect()
    };
    assert!(in_maint(&h).contains(&"ecd-hz10012".to_string()));
    // Drift: someone takes one out during the window; it goes back in.
    h.emu.world().update_state(|s| {
        s.ecd
            .get_mut("cn-hangzhou")
            .unwrap()
            .desktops
            .iter_mut()
            .find(|d| d.desktop_id == "ecd-hz10012")
            .unwrap()
            .management_flags = vec!["NoFlag".into()]
    });
    let r = h.step(&mut w, now, Stage::Apply).await;
    assert_eq!(r.applied, vec!["SetDesktopMaintenance ENTER ecd-hz10012".to_string()]);
    // After the window: only ours come out.
    let r = h.step(&mut w, now + chrono::Duration::hours(2), Stage::Apply).await;
    assert_eq!(
        r.applied,
        vec!["SetDesktopMaintenance EXIT ecd-hz10011, ecd-hz10012, ecd-hz10013".to_string()]
    );
    let still = in_maint(&h);
    assert!(
        still.contains(&"ecd-hz10001".to_string()),
        "the foreign one stays: {still:?}"
    );
    assert!(!still.contains(&"ecd-hz10011".to_string()));
    assert_eq!(h.writes("SetDesktopMaintenance"), 3);
    let r = h.step(&mut w, now + chrono::Duration::hours(3), Stage::Apply).await;
    assert!(r.applied.is_empty());
    assert_eq!(r.verdict.reason, Reason::Completed);
}

#[tokio::test]
async fn maintenance_cleanup_during_the_window_exits_first() {
    let h = Harness::new().await;
    let now = Utc::now();
    let ids: Vec<DesktopId> = (1..=150).map(|i| DesktopId(format!("ecd-hz2{i:04}"))).collect();
    let ids = ids
        .into_iter()
        .filter(|d| d.0.as_str() <= "ecd-hz20100")
        .collect::<Vec<_>>();
    let mut w = named(
        DesktopMaintenanceWindow::new(
            "x",
            DesktopMaintenanceWindowSpec {
                region_id: "cn-hangzhou".into(),
                desktop_ids: Some(ids),
                selector: None,
                window: Some(FixedWindow {
                    start: (now - chrono::Duration::minutes(5)).to_rfc3339(),
                    end: (now + chrono::Duration::hours(1)).to_rfc3339(),
                }),
                recurring: None,
                common: CommonSpec::default(),
            },
        ),
        "w",
    );
    h.step(&mut w, now, Stage::Apply).await;
    assert_eq!(h.writes("SetDesktopMaintenance"), 1, "100 ids: one call");
    let r = h.step(&mut w, now, Stage::Cleanup).await;
    assert_eq!(r.applied.len(), 1);
    assert_eq!(h.writes("SetDesktopMaintenance"), 2);
    assert!(
        h.emu.world().state().ecd["cn-hangzhou"]
            .desktops
            .iter()
            .filter(|d| d.desktop_id.starts_with("ecd-hz2"))
            .all(|d| !d.in_maintenance())
    );
}

#[tokio::test]
async fn image_share_sync_drift_with_fresh_token_and_cleanup() {
    let h = Harness::new().await;
    let mut s = named(
        ImageShare::new(
            "x",
            ImageShareSpec {
                region_id: "cn-hangzhou".into(),
                image_id: "m-hz0003".into(),
                shared: true,
                deletion_policy: DeletionPolicy::UnShare,
                common: CommonSpec::default(),
            },
        ),
        "img",
    );
    let now = Utc::now();
    let r = h.step(&mut s, now, Stage::Apply).await;
    let first_token = r.applied[0].clone();
    assert_eq!(r.status.share_operations, 1);
    let r = h.step(&mut s, now, Stage::Apply).await;
    assert_eq!((r.verdict.reason, r.applied.len()), (Reason::InSync, 0));
    h.emu
        .world()
        .update_state(|st| st.swas.get_mut("cn-hangzhou").unwrap().custom_images[2].in_share = false);
    let r = h.step(&mut s, now, Stage::Apply).await;
    assert_eq!(r.applied.len(), 1);
    assert_ne!(
        r.applied[0], first_token,
        "a repair needs a new ClientToken or the cloud ignores it"
    );
    assert!(h.emu.world().state().swas["cn-hangzhou"].custom_images[2].in_share);
    let r = h.step(&mut s, now, Stage::Cleanup).await;
    assert_eq!(r.applied.len(), 1);
    assert!(!h.emu.world().state().swas["cn-hangzhou"].custom_images[2].in_share);
    assert_eq!(h.writes("ModifyImageShareStatus"), 3);
}

#[tokio::test]
async fn observe_only_never_writes() {
    let h = Harness::new().await;
    let common = CommonSpec {
        management_policy: ManagementPolicy::ObserveOnly,
        ..Default::default()
    };
    let mut s = named(
        ImageShare::new(
            "x",
            ImageShareSpec {
                region_id: "cn-hangzhou".into(),
                image_id: "m-hz0003".into(),
                shared: true,
                deletion_policy: DeletionPolicy::Retain,
                common,
            },
        ),
        "img",
    );
    let r = h.step(&mut s, Utc::now(), Stage::Apply).await;
    assert_eq!(r.verdict.reason, Reason::DriftDetected);
    assert!(r.drift);
    assert_eq!(h.writes("ModifyImageShareStatus"), 0);
}

#[tokio::test]
async fn many_resources_share_one_list_per_region() {
    let h = Harness::new().await;
    let env = KindEnv {
        snapshots: Arc::new(SnapshotCache::new(Duration::from_secs(30))),
        ..h.env.clone()
    };
    let now = Utc::now();
    for i in 1..=6 {
        let s = named(
            ImageShare::new(
                "x",
                ImageShareSpec {
                    region_id: "cn-hangzhou".into(),
                    image_id: format!("m-hz{i:04}"),
                    shared: i <= 2,
                    deletion_policy: DeletionPolicy::Retain,
                    common: CommonSpec::default(),
                },
            ),
            &format!("img{i}"),
        );
        let ctx = PlanContext {
            now,
            generation: 1,
            policy: ManagementPolicy::Manage,
            resync: Duration::from_secs(600),
        };
        let r = reconcile_once(&s, &env, &[], &ctx, Stage::Apply, false, &h.sink)
            .await
            .unwrap();
        assert_eq!(r.verdict.reason, Reason::InSync, "{}", r.verdict.message);
    }
    assert_eq!(
        h.emu.world().counters().count("ListCustomImages"),
        1,
        "6 resources, 1 list call"
    );
}

#[tokio::test]
async fn ota_schedule_approves_once_and_survives_a_restart() {
    let h = Harness::new().await;
    let start = Utc::now() + chrono::Duration::hours(1);
    let mut o = named(
        OtaSchedule::new(
            "x",
            OtaScheduleSpec {
                biz_region_id: "cn-hangzhou".into(),
                app_instance_group_id: "aig-hz0002".into(),
                ota_type: OtaType::Fota,
                start_time: Some(start.to_rfc3339()),
                window: None,
                common: CommonSpec::default(),
            },
        ),
        "ota",
    );
    let now = Utc::now();
    let before = h.emu.world().state().appstream.app_instance_groups[1]
        .group
        .ota_info
        .task_id
        .clone();
    let r = h.step(&mut o, now, Stage::Apply).await;
    assert_eq!(r.applied.len(), 1, "{:?}", r.verdict);
    assert_eq!(r.status.approved.as_ref().unwrap().task_id, before);
    // The TaskId was read fresh right before approving: two list calls for one approval.
    assert_eq!(h.writes("ListAppInstanceGroup"), 2);
    for _ in 0..3 {
        let r = h.step(&mut o, now, Stage::Apply).await;
        assert!(r.applied.is_empty());
        assert_eq!(r.verdict.reason, Reason::Approved);
    }
    assert_eq!(h.writes("ApproveOtaTask"), 1, "never twice");

    // A restart that lost everything but the in-flight record: the rotated TaskId proves
    // the approval went through, so nothing is sent again.
    let mut status = o.status.clone().unwrap();
    status.in_flight = status.approved.take();
    o.status = Some(status);
    let r = h.step(&mut o, now, Stage::Apply).await;
    assert!(r.applied.is_empty());
    assert_eq!(h.writes("ApproveOtaTask"), 1);

    h.emu.world().clock.advance(chrono::Duration::hours(2));
    let r = h.step(&mut o, now + chrono::Duration::hours(2), Stage::Apply).await;
    assert_eq!(r.verdict.reason, Reason::UpToDate);
    assert_eq!(r.status.current_version.as_deref(), Some("1.5.0-R-20261115.100000"));
}

#[tokio::test]
async fn ota_running_upgrade_is_not_a_failure() {
    let h = Harness::new().await;
    h.emu.world().update_state(|s| {
        let g = &mut s.appstream.app_instance_groups[2];
        g.upgrade_duration_seconds = 3600;
        g.scheduled_upgrade = Some(alicloud_ops_operator::emulator::state::ScheduledUpgrade {
            approved_task_id: "ota-old".into(),
            start_time: Utc::now() - chrono::Duration::minutes(1),
            version: "1.4.5".into(),
        });
    });
    let mut o = named(
        OtaSchedule::new(
            "x",
            OtaScheduleSpec {
                biz_region_id: "cn-hangzhou".into(),
                app_instance_group_id: "aig-hz0003".into(),
                ota_type: OtaType::Fota,
                start_time: Some((Utc::now() + chrono::Duration::hours(1)).to_rfc3339()),
                window: None,
                common: CommonSpec::default(),
            },
        ),
        "running",
    );
    let r = h.step(&mut o, Utc::now(), Stage::Apply).await;
    assert_eq!(r.verdict.reason, Reason::UpgradeRunning);
    assert!(r.error.is_none());
    assert!(r.verdict.ready);
}
