//! Each kind's reconcile against the emulator: first sync, drift, and back, counting the
//! cloud calls. Status is kept in memory here; the end-to-end tests use the apiserver.

mod support;

use std::sync::Arc;
use std::time::Duration;

use alicloud_ops_operator::api::ManagementPolicy;
use alicloud_ops_operator::api::common::CommonSpec;
use alicloud_ops_operator::api::fota::{FotaTaskPolicy, FotaTaskPolicySpec};
use alicloud_ops_operator::api::image_share::{DeletionPolicy, ImageShare, ImageShareSpec};
use alicloud_ops_operator::api::maintenance::{
    DesktopId, DesktopMaintenanceWindow, DesktopMaintenanceWindowSpec, FixedWindow,
};
use alicloud_ops_operator::api::ota::{ApprovalSource, OtaSchedule, OtaScheduleSpec, OtaType};
use alicloud_ops_operator::cloud::SignatureVersion;
use alicloud_ops_operator::cloud::snapshot::SnapshotCache;
use alicloud_ops_operator::controller::kind::{KindEnv, Stage};
use alicloud_ops_operator::controller::runner::reconcile_once;

use alicloud_ops_operator::reconcile::Reason;
use chrono::{DateTime, Utc};
use support::memory::*;
use support::*;

/// ImageShare `img<i>` of `m-hz<i>`, whose spec matches the default dataset (1 and 2 shared).
fn in_sync_image(i: u32) -> ImageShare {
    named(
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
    )
}

/// A FotaTaskPolicy pushing every task of cn-hangzhou.
fn push_all(name: &str) -> FotaTaskPolicy {
    named(
        FotaTaskPolicy::new(
            "x",
            FotaTaskPolicySpec {
                region_id: "cn-hangzhou".into(),
                auto_push: true,
                task_uids: None,
                common: CommonSpec::default(),
            },
        ),
        name,
    )
}

#[tokio::test]
async fn fota_policy_first_sync_drift_and_back() {
    let h = Harness::new().await;
    let mut p = push_all("push");
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
    let mut w = window(
        "w",
        &ids,
        now - chrono::Duration::hours(1),
        now + chrono::Duration::hours(1),
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
                drain: None,
                exclude: None,
                blackouts: Vec::new(),
                notify: None,
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
    // The cloud showed the share, so this is drift: repaired at once.
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
        let s = in_sync_image(i);
        let ctx = manage_ctx(now);
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

/// `reconcile-requested-at` reads fresh for that resource alone: the shared list stays.
#[tokio::test]
async fn a_requested_fresh_read_does_not_drop_the_shared_list() {
    let h = Harness::with_snapshot_max_age(Duration::from_secs(60)).await;
    let ctx = manage_ctx(Utc::now());
    let lists = || h.emu.world().counters().count("ListCustomImages");
    for (i, fresh, want) in [(1, false, 1), (2, false, 1), (1, true, 2), (2, false, 2), (3, false, 2)] {
        reconcile_once(&in_sync_image(i), &h.env, &[], &ctx, Stage::Apply, fresh, &h.sink)
            .await
            .unwrap();
        assert_eq!(lists(), want, "after img{i} (fresh: {fresh})");
    }
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

    h.emu.world().clock.advance(chrono::Duration::hours(2)).unwrap();
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
            outcome: "FINISHED".into(),
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

// ---- Faults: lost answers, refusals, unknown ids, deletion that must wait ----

fn ota(name: &str, group: &str, start: DateTime<Utc>) -> OtaSchedule {
    named(
        OtaSchedule::new(
            "x",
            OtaScheduleSpec {
                biz_region_id: "cn-hangzhou".into(),
                app_instance_group_id: group.into(),
                ota_type: OtaType::Fota,
                start_time: Some(start.to_rfc3339()),
                window: None,
                common: CommonSpec::default(),
            },
        ),
        name,
    )
}

fn window(name: &str, ids: &[&str], start: DateTime<Utc>, end: DateTime<Utc>) -> DesktopMaintenanceWindow {
    named(
        DesktopMaintenanceWindow::new(
            "x",
            DesktopMaintenanceWindowSpec {
                region_id: "cn-hangzhou".into(),
                desktop_ids: Some(ids.iter().map(|s| DesktopId(s.to_string())).collect()),
                selector: None,
                window: Some(FixedWindow {
                    start: start.to_rfc3339(),
                    end: end.to_rfc3339(),
                }),
                recurring: None,
                drain: None,
                exclude: None,
                blackouts: Vec::new(),
                notify: None,
                common: CommonSpec::default(),
            },
        ),
        name,
    )
}

fn in_maintenance(h: &Harness, ids: &[&str]) -> Vec<String> {
    h.emu.world().state().ecd["cn-hangzhou"]
        .desktops
        .iter()
        .filter(|d| ids.contains(&d.desktop_id.as_str()) && d.in_maintenance())
        .map(|d| d.desktop_id.clone())
        .collect()
}

#[tokio::test]
async fn ota_approval_whose_answer_is_lost_is_confirmed_and_never_resent() {
    let h = Harness::new().await;
    fault(
        &h,
        serde_json::json!({"action": "ApproveOtaTask", "code": "ServiceUnavailable", "afterApply": true, "count": 1}),
    );
    let start = Utc::now() + chrono::Duration::hours(1);
    let mut o = ota("lost", "aig-hz0001", start);
    let r = h.step(&mut o, Utc::now(), Stage::Apply).await;
    assert!(r.error.is_some(), "the answer was lost");
    assert!(r.status.in_flight.is_some(), "maybe applied: the intent stays");
    // The intent was written before the call reached the cloud.
    let approve = &log_of(&h, "ApproveOtaTask")[0];
    assert!(approve.answer_lost);
    let writes = h.sink.writes.lock().unwrap().clone();
    let (seen, intent) = &writes[0];
    assert!(intent["inFlight"].is_object(), "first write is the intent: {intent}");
    assert!(
        *seen < approve.seq,
        "intent written after {seen} requests, approval was #{}",
        approve.seq
    );

    for _ in 0..3 {
        let r = h.step(&mut o, Utc::now(), Stage::Apply).await;
        assert_eq!(r.verdict.reason, Reason::Approved, "{}", r.verdict.message);
        assert!(r.status.in_flight.is_none());
        let a = r.status.approved.unwrap();
        assert_eq!(a.source, Some(ApprovalSource::Operator), "confirmed by ListOtaTask");
    }
    assert_eq!(log_of(&h, "ApproveOtaTask").len(), 1, "approved exactly once");
    assert!(!log_of(&h, "ListOtaTask").is_empty());
}

#[tokio::test]
async fn ota_approval_the_cloud_refused_is_forgotten_and_sent_again() {
    let h = Harness::new().await;
    fault(
        &h,
        serde_json::json!({"action": "ApproveOtaTask", "code": "InvalidParameter.TaskId", "status": 400, "count": 1}),
    );
    let mut o = ota("refused", "aig-hz0001", Utc::now() + chrono::Duration::hours(1));
    let r = h.step(&mut o, Utc::now(), Stage::Apply).await;
    assert_eq!(r.verdict.reason, Reason::CloudRejected);
    assert!(r.status.in_flight.is_none(), "a refusal proves nothing was applied");
    let r = h.step(&mut o, Utc::now(), Stage::Apply).await;
    assert_eq!(r.applied.len(), 1);
    assert_eq!(r.verdict.reason, Reason::Approved);
    let log = log_of(&h, "ApproveOtaTask");
    assert_eq!(
        log.iter().map(|r| r.code.as_str()).collect::<Vec<_>>(),
        vec!["InvalidParameter.TaskId", "success"]
    );
}

#[tokio::test]
async fn ota_version_approved_in_the_console_is_not_approved_again() {
    let h = Harness::new().await;
    // Someone approves the pending version directly, before the operator does.
    let c = client(&h.emu, SignatureVersion::V3);
    let group = h.emu.world().state().appstream.app_instance_groups[0].clone();
    let theirs = (Utc::now() + chrono::Duration::hours(5))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    alicloud_ops_operator::cloud::ops::appstream::approve_ota_task(
        &c,
        &alicloud_ops_operator::cloud::ops::appstream::ApproveOtaTask {
            app_instance_group_id: group.group.app_instance_group_id.clone(),
            biz_region_id: "cn-hangzhou".into(),
            task_id: group.group.ota_info.task_id.clone(),
            ota_type: "Fota".into(),
            start_time: theirs.clone(),
        },
    )
    .await
    .unwrap();
    let mut o = ota(
        "late",
        &group.group.app_instance_group_id,
        Utc::now() + chrono::Duration::hours(1),
    );
    for _ in 0..2 {
        let r = h.step(&mut o, Utc::now(), Stage::Apply).await;
        assert_eq!(r.verdict.reason, Reason::Approved, "{}", r.verdict.message);
        let a = r.status.approved.unwrap();
        assert_eq!(
            (a.source, a.start_time.as_str()),
            (Some(ApprovalSource::Elsewhere), theirs.as_str())
        );
    }
    assert_eq!(log_of(&h, "ApproveOtaTask").len(), 1, "only the console's approval");
}

#[tokio::test]
async fn image_share_whose_answer_is_lost_acts_once() {
    let h = Harness::new().await;
    fault(
        &h,
        serde_json::json!({"action": "ModifyImageShareStatus", "code": "ServiceUnavailable", "afterApply": true, "count": 1}),
    );
    let mut i = named(
        ImageShare::new(
            "x",
            ImageShareSpec {
                region_id: "cn-hangzhou".into(),
                image_id: "m-hz0003".into(),
                shared: true,
                deletion_policy: DeletionPolicy::Retain,
                common: CommonSpec::default(),
            },
        ),
        "lost",
    );
    for _ in 0..3 {
        h.step(&mut i, Utc::now(), Stage::Apply).await;
    }
    let log = log_of(&h, "ModifyImageShareStatus");
    assert!(log[0].answer_lost);
    let tokens: std::collections::BTreeSet<&str> = log.iter().map(|r| r.params["ClientToken"].as_str()).collect();
    assert_eq!(tokens.len(), 1, "every attempt carried the same ClientToken: {log:?}");
    let shared = h.emu.world().state().swas["cn-hangzhou"]
        .custom_images
        .iter()
        .find(|img| img.image_id == "m-hz0003")
        .unwrap()
        .in_share;
    assert!(shared);
    assert_eq!(i.status.as_ref().unwrap().share_operations, 1);
}

#[tokio::test]
async fn desktop_maintenance_and_fota_writes_converge_when_every_answer_is_lost() {
    let h = Harness::new().await;
    let now = Utc::now();
    let ids = ["ecd-hz20001", "ecd-hz20002", "ecd-hz20003"];
    let mut w = window(
        "lost",
        &ids,
        now - chrono::Duration::minutes(5),
        now + chrono::Duration::hours(1),
    );
    let mut p = push_all("lost");
    fault(
        &h,
        serde_json::json!({"action": "SetDesktopMaintenance", "code": "ServiceUnavailable", "afterApply": true}),
    );
    fault(
        &h,
        serde_json::json!({"action": "UpdateFotaTask", "code": "InternalError", "afterApply": true}),
    );
    let r = h.step(&mut w, now, Stage::Apply).await;
    assert!(r.error.is_some());
    assert_eq!(
        r.status.desktops_in_maintenance, ids,
        "recorded although every answer was lost"
    );
    assert!(h.step(&mut p, now, Stage::Apply).await.error.is_some());
    h.emu.world().clear_faults();
    let r = h.step(&mut w, now, Stage::Apply).await;
    assert_eq!(r.verdict.reason, Reason::Active, "{}", r.verdict.message);
    assert_eq!(in_maintenance(&h, &ids).len(), 3);
    // Each write that was not applied is planned again.
    let mut r = h.step(&mut p, now, Stage::Apply).await;
    for _ in 0..2 {
        if r.verdict.reason == Reason::InSync {
            break;
        }
        r = h.step(&mut p, now, Stage::Apply).await;
    }
    assert_eq!(r.verdict.reason, Reason::InSync, "{}", r.verdict.message);
    // After the window, with every answer lost again, the exits still land.
    fault(
        &h,
        serde_json::json!({"action": "SetDesktopMaintenance", "code": "ServiceUnavailable", "afterApply": true, "count": 1}),
    );
    let later = now + chrono::Duration::hours(2);
    h.step(&mut w, later, Stage::Apply).await;
    let r = h.step(&mut w, later, Stage::Apply).await;
    assert_eq!(r.verdict.reason, Reason::Completed, "{}", r.verdict.message);
    assert!(in_maintenance(&h, &ids).is_empty());
    assert!(r.status.desktops_in_maintenance.is_empty());
}

#[tokio::test]
async fn an_unknown_id_in_an_exit_batch_does_not_abandon_the_others() {
    // A shared list a minute old, as the operator's snapshots can be.
    let h = Harness::with_snapshot_max_age(Duration::from_secs(60)).await;
    let now = Utc::now();
    let ids = ["ecd-hz20011", "ecd-hz20012", "ecd-hz20013"];
    let mut w = window(
        "gone",
        &ids,
        now - chrono::Duration::minutes(5),
        now + chrono::Duration::hours(1),
    );
    h.step(&mut w, now, Stage::Apply).await;
    assert_eq!(in_maintenance(&h, &ids).len(), 3);
    // One computer is released from the account while the window runs.
    h.emu.world().update_state(|s| {
        s.ecd
            .get_mut("cn-hangzhou")
            .unwrap()
            .desktops
            .retain(|d| d.desktop_id != "ecd-hz20012")
    });
    // The snapshot still lists it, so the first EXIT batch names it and is refused whole.
    let r = h.step(&mut w, now, Stage::Cleanup).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(in_maintenance(&h, &ids).is_empty(), "the others are exited");
    assert!(r.recorded.is_empty());
    assert!(
        log_of(&h, "SetDesktopMaintenance")
            .iter()
            .any(|r| r.code == "InvalidDesktopId.NotFound"),
        "the refusal happened"
    );
}

#[tokio::test]
async fn deletion_waits_while_recorded_desktops_cannot_be_exited() {
    use alicloud_ops_operator::controller::next_step::{Settled, next_step};
    let h = Harness::new().await;
    let now = Utc::now();
    let ids = ["ecd-hz20021", "ecd-hz20022"];
    let mut w = window(
        "stuck",
        &ids,
        now - chrono::Duration::minutes(5),
        now + chrono::Duration::hours(1),
    );
    h.step(&mut w, now, Stage::Apply).await;
    fault(
        &h,
        serde_json::json!({"action": "SetDesktopMaintenance", "code": "InvalidParam.OperationIllegal", "status": 400}),
    );
    let r = h.step(&mut w, now, Stage::Cleanup).await;
    let err = r.error.expect("the exit was refused");
    assert_eq!(r.recorded, ids);
    let settled = Settled::CloudFailed {
        class: err.class(),
        remaining: r.recorded.len(),
    };
    assert!(!next_step(Stage::Cleanup, &settled, Duration::from_secs(600)).release_finalizer);
    assert_eq!(in_maintenance(&h, &ids).len(), 2);
    h.emu.world().clear_faults();
    let r = h.step(&mut w, now, Stage::Cleanup).await;
    assert!(r.recorded.is_empty());
    assert!(in_maintenance(&h, &ids).is_empty());
}

/// The cloud answering a FOTA `Status` the API documents as an example only (`valid`):
/// one write, and the policy settles once the answer says Running.
#[tokio::test]
async fn a_fota_status_neither_running_nor_pending_costs_one_write() {
    let h = Harness::new().await;
    h.emu
        .world()
        .update_state(|s| s.ecd.get_mut("cn-hangzhou").unwrap().fota_tasks[1].status = "valid".into());
    let mut p = push_all("odd");
    let now = Utc::now();
    let r = h.step(&mut p, now, Stage::Apply).await;
    assert!(r.applied.iter().any(|a| a.contains("aot-hz0002")), "{:?}", r.applied);
    let r = h.step(&mut p, now, Stage::Apply).await;
    assert_eq!(r.verdict.reason, Reason::InSync, "{}", r.verdict.message);
    assert_eq!(h.writes("UpdateFotaTask"), 2, "aot-hz0002 and aot-hz0003, once each");
}

/// A share can take a while to show in the cloud (the emulator's settle delay). The operator
/// waits for the one it sent instead of sending another with a new ClientToken (another of
/// the account's 10 calls a minute), and sends again only once the grace has passed.
#[tokio::test]
async fn a_share_that_has_not_shown_yet_is_waited_for_not_sent_again() {
    use alicloud_ops_operator::reconcile::image_share::SETTLE_GRACE;
    let h = Harness::new().await;
    h.emu.world().update_state(|s| {
        s.settle_seconds.insert("ModifyImageShareStatus".into(), 30);
    });
    let t0 = h.emu.world().clock.now();
    let mut img = in_sync_image(3);
    img.spec.shared = true;
    let r = h.step(&mut img, t0, Stage::Apply).await;
    assert_eq!(r.verdict.reason, Reason::Applying);
    assert_eq!(h.writes("ModifyImageShareStatus"), 1);
    // The cloud does not show it yet: wait, do not send again.
    h.emu.world().clock.advance(chrono::Duration::seconds(15)).unwrap();
    let r = h.step(&mut img, t0 + chrono::Duration::seconds(15), Stage::Apply).await;
    // The cloud answered it: it stands for the list, and Ready says so.
    assert_eq!(r.verdict.reason, Reason::InSync);
    assert!(
        r.verdict.message.contains("does not show it yet"),
        "{}",
        r.verdict.message
    );
    assert_eq!(
        h.writes("ModifyImageShareStatus"),
        1,
        "a second Share was sent while the first settled"
    );
    // It shows.
    h.emu.world().clock.advance(chrono::Duration::seconds(16)).unwrap();
    let r = h.step(&mut img, t0 + chrono::Duration::seconds(31), Stage::Apply).await;
    assert_eq!(r.verdict.reason, Reason::InSync);
    assert_eq!(h.writes("ModifyImageShareStatus"), 1);

    // One that never shows is sent again after the grace, with a new ClientToken.
    h.emu.world().update_state(|s| {
        s.settle_seconds.insert("ModifyImageShareStatus".into(), 3600);
    });
    let mut other = in_sync_image(4);
    other.spec.shared = true;
    h.step(&mut other, t0, Stage::Apply).await;
    h.step(
        &mut other,
        t0 + SETTLE_GRACE - chrono::Duration::seconds(1),
        Stage::Apply,
    )
    .await;
    assert_eq!(h.writes("ModifyImageShareStatus"), 2);
    h.step(
        &mut other,
        t0 + SETTLE_GRACE + chrono::Duration::seconds(1),
        Stage::Apply,
    )
    .await;
    let sent = log_of(&h, "ModifyImageShareStatus");
    assert_eq!(sent.len(), 3);
    assert_ne!(sent[1].params.get("ClientToken"), sent[2].params.get("ClientToken"));
}

/// Sets when `k` was created (older resources win conflicts).
fn created_hours_ago<K: kube::Resource>(k: &mut K, hours: i64) {
    let at = k8s_openapi::jiff::Timestamp::now()
        .checked_sub(k8s_openapi::jiff::SignedDuration::from_hours(hours))
        .unwrap();
    k.meta_mut().creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at));
}

fn image_shared(h: &Harness, id: &str) -> bool {
    h.emu.world().state().swas["cn-hangzhou"]
        .custom_images
        .iter()
        .any(|i| i.image_id == id && i.in_share)
}

/// A recorded intent is not a sent write: a Share whose call failed is sent again with the
/// same ClientToken at the next reconcile, never waited for as if it were settling.
#[tokio::test]
async fn a_share_whose_call_failed_is_sent_again_with_the_same_token() {
    let h = Harness::new().await;
    // Every attempt of the client's retries fails.
    fault(
        &h,
        serde_json::json!({"action": "ModifyImageShareStatus", "code": "ServiceUnavailable"}),
    );
    let mut img = in_sync_image(3);
    img.spec.shared = true;
    let r = h.step(&mut img, Utc::now(), Stage::Apply).await;
    assert!(r.error.is_some(), "the first call fails");
    h.emu.world().clear_faults();
    let failed = log_of(&h, "ModifyImageShareStatus");
    let r = h.step(&mut img, Utc::now(), Stage::Apply).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    let sent = log_of(&h, "ModifyImageShareStatus");
    assert_eq!(
        sent.len(),
        failed.len() + 1,
        "the failed Share was not sent again: {}",
        r.verdict.message
    );
    assert!(
        sent.iter()
            .all(|r| r.params.get("ClientToken") == sent[0].params.get("ClientToken"))
    );
    assert!(image_shared(&h, "m-hz0003"));
    // An answer lost after the cloud applied it: the same token is answered again, and
    // nothing is applied twice.
    fault(
        &h,
        serde_json::json!({"action": "ModifyImageShareStatus", "code": "ServiceUnavailable", "afterApply": true}),
    );
    img.spec.shared = false;
    let r = h.step(&mut img, Utc::now(), Stage::Apply).await;
    assert!(r.error.is_some(), "every answer is lost");
    h.emu.world().clear_faults();
    let sent = log_of(&h, "ModifyImageShareStatus");
    h.env.invalidate("ListCustomImages", "cn-hangzhou");
    let r = h.step(&mut img, Utc::now(), Stage::Apply).await;
    assert_eq!(r.verdict.reason, Reason::InSync, "{}", r.verdict.message);
    assert!(!image_shared(&h, "m-hz0003"));
    assert_eq!(
        log_of(&h, "ModifyImageShareStatus").len(),
        sent.len(),
        "the UnShare shows: nothing is sent again"
    );
}

/// Deletion bumps the generation. A Share that the cloud answered and does not show yet
/// still counts: deletion waits for it, then unshares, and only then is the cloud clean.
#[tokio::test]
async fn deletion_waits_for_a_share_that_has_not_shown_yet_then_unshares() {
    let h = Harness::new().await;
    h.emu.world().update_state(|s| {
        s.settle_seconds.insert("ModifyImageShareStatus".into(), 30);
    });
    let mut img = in_sync_image(3);
    img.spec.shared = true;
    img.spec.deletion_policy = DeletionPolicy::UnShare;
    img.metadata.generation = Some(1);
    h.step(&mut img, Utc::now(), Stage::Apply).await;
    assert_eq!(h.writes("ModifyImageShareStatus"), 1);
    img.metadata.generation = Some(2);
    let r = h.step(&mut img, Utc::now(), Stage::Cleanup).await;
    assert!(
        !r.recorded.is_empty(),
        "the Share that has not shown was forgotten: {}",
        r.verdict.message
    );
    assert_eq!(
        h.writes("ModifyImageShareStatus"),
        1,
        "an UnShare raced the settling Share"
    );
    h.emu.world().clock.advance(chrono::Duration::seconds(31)).unwrap();
    assert!(image_shared(&h, "m-hz0003"), "the Share landed");
    let r = h.step(&mut img, Utc::now(), Stage::Cleanup).await;
    assert_eq!(r.applied.len(), 1, "{}", r.verdict.message);
    assert!(!r.recorded.is_empty(), "the UnShare has not shown yet");
    h.emu.world().clock.advance(chrono::Duration::seconds(31)).unwrap();
    let r = h.step(&mut img, Utc::now(), Stage::Cleanup).await;
    assert!(r.recorded.is_empty(), "{:?}", r.recorded);
    assert!(!image_shared(&h, "m-hz0003"));
}

/// Ready does not flip back while a write the cloud answered settles, and an unrelated
/// edit (a new generation) does not send a second Share with a new ClientToken.
#[tokio::test]
async fn a_settling_share_keeps_ready_and_survives_an_unrelated_edit() {
    let h = Harness::with_snapshot_max_age(Duration::from_secs(3600)).await;
    h.emu.world().update_state(|s| {
        s.settle_seconds.insert("ModifyImageShareStatus".into(), 30);
    });
    let mut img = in_sync_image(3);
    img.spec.shared = true;
    img.metadata.generation = Some(1);
    let r = h.step(&mut img, Utc::now(), Stage::Apply).await;
    assert_eq!(r.verdict.reason, Reason::Applying);
    let mut reasons = Vec::new();
    for step in 0..3 {
        if step == 1 {
            // A new list, which does not show the Share yet.
            h.env.invalidate("ListCustomImages", "cn-hangzhou");
        }
        if step == 2 {
            img.spec.common.resync_interval = Some("20m".into());
            img.metadata.generation = Some(2);
        }
        let r = h.step(&mut img, Utc::now(), Stage::Apply).await;
        reasons.push((r.verdict.reason, r.verdict.message));
    }
    assert!(
        reasons.iter().all(|(r, _)| *r == Reason::InSync),
        "Ready flipped while the Share settled: {reasons:?}"
    );
    assert_eq!(h.writes("ModifyImageShareStatus"), 1, "a second Share was sent");
}

/// An UnShare held back by the account's quota on deletion: what remains is what the cloud
/// shows now, not an old status that says the image is not shared, so the finalizer stays.
#[tokio::test]
async fn an_unshare_held_back_by_the_quota_keeps_what_the_cloud_shows() {
    use alicloud_ops_operator::api::image_share::ImageShareStatus;
    use alicloud_ops_operator::cloud::CloudClient;
    use alicloud_ops_operator::cloud::Product;
    use alicloud_ops_operator::cloud::client::ClientSettings;
    use alicloud_ops_operator::cloud::ratelimit::RateLimitConfig;
    let mut h = Harness::new().await;
    // The documented quota, as the operator runs with it.
    let with_quota = ClientSettings {
        limits: RateLimitConfig::default(),
        ..settings(&h.emu, SignatureVersion::V3)
    };
    let base = CloudClient::build(with_quota, default_key(), Default::default()).unwrap();
    for i in 0..10 {
        base.for_holder(&format!("other-{i}"))
            .admit(Product::SwasOpen, "cn-hangzhou", "ModifyImageShareStatus")
            .await
            .unwrap();
    }
    h.env.cloud = base.for_holder("img1");
    // m-hz0001 is shared; the status (restored from a backup, say) says it is not.
    let mut img = in_sync_image(1);
    img.spec.deletion_policy = DeletionPolicy::UnShare;
    img.status = Some(ImageShareStatus {
        in_share: Some(false),
        ..Default::default()
    });
    let r = h.step(&mut img, Utc::now(), Stage::Cleanup).await;
    assert_eq!(r.verdict.reason, Reason::Throttled, "{}", r.verdict.message);
    assert_eq!(h.writes("ModifyImageShareStatus"), 0);
    assert!(
        !r.recorded.is_empty(),
        "deletion would release the finalizer with the image shared"
    );
}

/// One unknown id in `desktopIds` must not cost the known ones their window: the boundary
/// requeue survives the `NotFound`, and the known desktops enter on time.
#[tokio::test]
async fn an_unknown_desktop_id_keeps_the_window_boundary() {
    use alicloud_ops_operator::controller::next_step::{Requeue, Settled, next_step};
    let h = Harness::new().await;
    let now = Utc::now();
    let ids = ["ecd-hz20031", "ecd-hz20032", "ecd-nosuch0001"];
    let start = now + chrono::Duration::seconds(90);
    let mut w = window("partly-unknown", &ids, start, start + chrono::Duration::hours(1));
    let r = h.step(&mut w, now, Stage::Apply).await;
    assert_eq!(r.verdict.reason, Reason::NotFound, "{}", r.verdict.message);
    let settled = Settled::Planned {
        reason: r.verdict.reason,
        requeue_after: r.requeue_after,
        remaining: 0,
    };
    let next = next_step(Stage::Apply, &settled, Duration::from_secs(24 * 3600));
    match next.requeue {
        Requeue::After(d) => assert!(d <= Duration::from_secs(90), "comes back after {d:?}, past the start"),
        other => panic!("the window start was thrown away: {other:?}"),
    }
    let r = h.step(&mut w, start, Stage::Apply).await;
    assert_eq!(in_maintenance(&h, &ids[..2]).len(), 2, "{}", r.verdict.message);
    assert_eq!(r.status.unknown_desktop_ids, ["ecd-nosuch0001"]);
}

/// Back-to-back windows over the same desktops (one ends when the next starts): whichever
/// reconciles first at the seam, the desktops stay in maintenance through it, the later
/// window holds them (never "foreign"), and they exit at its end.
#[tokio::test]
async fn back_to_back_windows_hold_their_desktops_through_the_seam() {
    for later_first in [true, false] {
        let h = Harness::new().await;
        let now = Utc::now();
        let ids = ["ecd-hz20041", "ecd-hz20042"];
        let seam = now + chrono::Duration::minutes(30);
        let end = seam + chrono::Duration::hours(1);
        let mut early = window("early", &ids, now - chrono::Duration::minutes(30), seam);
        let mut late = window("late", &ids, seam, end);
        h.step_among(&mut early, &[&late], now, Stage::Apply).await;
        h.step_among(&mut late, &[&early], now, Stage::Apply).await;
        assert_eq!(in_maintenance(&h, &ids).len(), 2);
        if later_first {
            h.step_among(&mut late, &[&early], seam, Stage::Apply).await;
            h.step_among(&mut early, &[&late], seam, Stage::Apply).await;
        } else {
            h.step_among(&mut early, &[&late], seam, Stage::Apply).await;
            h.step_among(&mut late, &[&early], seam, Stage::Apply).await;
            h.step_among(&mut early, &[&late], seam, Stage::Apply).await;
        }
        let exits = log_of(&h, "SetDesktopMaintenance")
            .iter()
            .filter(|r| r.params.get("Mode").map(String::as_str) == Some("EXIT"))
            .count();
        assert_eq!(exits, 0, "later first: {later_first}: the seam exited the desktops");
        assert_eq!(in_maintenance(&h, &ids).len(), 2, "later first: {later_first}");
        let late_status = late.status.clone().unwrap();
        assert!(late_status.foreign_maintenance.is_empty(), "{late_status:?}");
        assert_eq!(late_status.desktops_in_maintenance, ids);
        assert!(early.status.clone().unwrap().desktops_in_maintenance.is_empty());
        // The later window exits them at its end.
        h.step_among(&mut late, &[&early], end, Stage::Apply).await;
        assert!(in_maintenance(&h, &ids).is_empty(), "later first: {later_first}");
    }
}

/// A restore without status (Velero's default) or a `kubectl replace --subresource=status`
/// mid-window: the window takes its desktops back from their tags, exits them at its end,
/// and its deletion does not release the finalizer while they are in maintenance.
#[tokio::test]
async fn a_window_whose_status_is_lost_takes_its_desktops_back_from_their_tags() {
    let h = Harness::new().await;
    let now = Utc::now();
    let ids = ["ecd-hz20051", "ecd-hz20052"];
    let end = now + chrono::Duration::hours(1);
    let mut w = window("restored", &ids, now - chrono::Duration::minutes(5), end);
    h.step(&mut w, now, Stage::Apply).await;
    assert_eq!(in_maintenance(&h, &ids).len(), 2);
    // A foreign desktop in maintenance, untagged, in the same window.
    h.emu.world().update_state(|s| {
        let d = s.ecd.get_mut("cn-hangzhou").unwrap().desktops.iter_mut();
        for d in d.filter(|d| d.desktop_id == "ecd-hz20053") {
            d.management_flags = vec!["UnderMaintenance".into()];
        }
    });
    w.spec
        .desktop_ids
        .as_mut()
        .unwrap()
        .push(DesktopId("ecd-hz20053".into()));

    w.status = None;
    let r = h.step(&mut w, now + chrono::Duration::minutes(1), Stage::Apply).await;
    assert_eq!(r.status.desktops_in_maintenance, ids, "{}", r.verdict.message);
    assert_eq!(
        r.status.foreign_maintenance,
        ["ecd-hz20053"],
        "someone else's stays theirs"
    );
    assert!(r.verdict.message.contains("taken back"), "{}", r.verdict.message);
    let r = h.step(&mut w, end, Stage::Apply).await;
    assert!(in_maintenance(&h, &ids).is_empty(), "{}", r.verdict.message);
    assert_eq!(
        in_maintenance(&h, &["ecd-hz20053"]).len(),
        1,
        "the foreign one is left alone"
    );

    // Lost again, then deleted during another window: deletion exits them first.
    let mut w = window("deleted", &ids, now - chrono::Duration::minutes(5), end);
    h.step(&mut w, now, Stage::Apply).await;
    w.status = None;
    fault(
        &h,
        serde_json::json!({"action": "SetDesktopMaintenance", "code": "ServiceUnavailable"}),
    );
    let r = h.step(&mut w, now, Stage::Cleanup).await;
    assert_eq!(
        r.recorded.len(),
        2,
        "the finalizer would go with the desktops in maintenance"
    );
    h.emu.world().clear_faults();
    let r = h.step(&mut w, now, Stage::Cleanup).await;
    assert!(r.recorded.is_empty());
    assert!(in_maintenance(&h, &ids).is_empty());
    let tagged = h.emu.world().state().ecd["cn-hangzhou"]
        .desktops
        .iter()
        .filter(|d| ids.contains(&d.desktop_id.as_str()) && !d.tags.is_empty())
        .count();
    assert_eq!(tagged, 0, "the record tags are removed with the record");
}

/// A lost status whose first reconcile fails (the cloud unavailable): the failure writes
/// conditions into the empty status, and that must not make the record look found. The
/// window still takes its desktops back from their tags, here after it has closed, and
/// exits them. (Chaos found it: a window Completed with its desktops left in maintenance.)
#[tokio::test]
async fn a_lost_status_stays_lost_through_a_failed_reconcile() {
    let h = Harness::new().await;
    let now = Utc::now();
    let ids = ["ecd-hz20061", "ecd-hz20062"];
    let end = now + chrono::Duration::minutes(10);
    let mut w = window("lost-then-failed", &ids, now - chrono::Duration::minutes(5), end);
    h.step(&mut w, now, Stage::Apply).await;
    assert_eq!(in_maintenance(&h, &ids).len(), 2);
    w.status = None;
    fault(
        &h,
        serde_json::json!({"action": "DescribeDesktops", "code": "ServiceUnavailable"}),
    );
    let failed = h.step(&mut w, now + chrono::Duration::minutes(1), Stage::Apply).await;
    assert!(failed.error.is_some(), "{}", failed.verdict.message);
    assert!(
        !failed.status.common.conditions.is_empty(),
        "the failure is reported in status"
    );
    h.emu.world().clear_faults();
    let r = h.step(&mut w, end + chrono::Duration::seconds(1), Stage::Apply).await;
    assert!(
        in_maintenance(&h, &ids).is_empty(),
        "the desktops were exited at the end: {}",
        r.verdict.message
    );
}

/// Conflicts between OtaSchedules of one delivery group: a schedule that cannot act
/// (suspended, ObserveOnly) never blocks one that can; they are decided within one cloud
/// account; and the message never names another namespace's object.
#[tokio::test]
async fn ota_conflicts_are_between_schedules_that_can_act_in_one_account() {
    use alicloud_ops_operator::api::ManagementPolicy;
    let start = Utc::now() + chrono::Duration::hours(1);
    /// The case, how the older schedule differs, its account, and whether it blocks.
    type Case = (&'static str, fn(&mut OtaSchedule), &'static str, bool);
    let cases: [Case; 5] = [
        ("the same account", |_| {}, "test", true),
        ("suspended", |o| o.spec.common.suspend = true, "test", false),
        (
            "ObserveOnly",
            |o| o.spec.common.management_policy = ManagementPolicy::ObserveOnly,
            "test",
            false,
        ),
        ("another account", |_| {}, "other-account", false),
        (
            "another namespace",
            |o| o.metadata.namespace = Some("tenant-b".into()),
            "test",
            true,
        ),
    ];
    for (case, edit, account, conflicts) in cases {
        let mut h = Harness::new().await;
        let mut older = ota("a-older", "aig-hz0002", start);
        created_hours_ago(&mut older, 1);
        edit(&mut older);
        let older_key = format!("{}/a-older", older.metadata.namespace.as_deref().unwrap());
        h.env.peer_accounts = Arc::new([(older_key, account.to_string())].into());
        let mut newer = ota("b-newer", "aig-hz0002", start);
        created_hours_ago(&mut newer, 0);
        let r = h.step_among(&mut newer, &[&older], Utc::now(), Stage::Apply).await;
        if conflicts {
            assert_eq!(r.verdict.reason, Reason::Conflict, "{case}: {}", r.verdict.message);
            assert_eq!(h.writes("ApproveOtaTask"), 0, "{case}");
            assert!(
                !r.verdict.message.contains("tenant-b") && !r.status.conflicts.iter().any(|c| c.contains("tenant-b")),
                "{case}: another namespace's object is named: {}",
                r.verdict.message
            );
        } else {
            assert_ne!(r.verdict.reason, Reason::Conflict, "{case}: {}", r.verdict.message);
            assert_eq!(h.writes("ApproveOtaTask"), 1, "{case}: the newer schedule was blocked");
        }
    }
}

/// FotaTaskPolicy too: a suspended older policy does not block, and a conflict with another
/// namespace's policy does not name it.
#[tokio::test]
async fn fota_conflicts_ignore_policies_that_cannot_act_and_name_no_other_namespace() {
    for (suspended, namespace) in [(true, "default"), (false, "tenant-b")] {
        let mut h = Harness::new().await;
        let mut older = push_all("a-hold");
        older.spec.auto_push = false;
        older.spec.common.suspend = suspended;
        older.metadata.namespace = Some(namespace.into());
        created_hours_ago(&mut older, 1);
        h.env.peer_accounts = Arc::new([(format!("{namespace}/a-hold"), "test".to_string())].into());
        let mut newer = push_all("b-push");
        created_hours_ago(&mut newer, 0);
        let r = h.step_among(&mut newer, &[&older], Utc::now(), Stage::Apply).await;
        if suspended {
            assert_ne!(r.verdict.reason, Reason::Conflict, "{}", r.verdict.message);
            assert_eq!(
                h.writes("UpdateFotaTask"),
                2,
                "the suspended policy blocked the newer one"
            );
        } else {
            assert_eq!(r.verdict.reason, Reason::Conflict, "{}", r.verdict.message);
            assert!(!r.verdict.message.contains("tenant-b"), "{}", r.verdict.message);
        }
    }
}

/// An ImageShare whose status is lost restarts its count of writes: a later repair must
/// still get a new ClientToken (the cloud would answer a reused one without acting).
#[tokio::test]
async fn a_repair_after_a_lost_status_gets_a_new_client_token() {
    let h = Harness::new().await;
    let mut img = in_sync_image(3);
    img.spec.shared = true;
    img.metadata.resource_version = Some("100".into());
    h.step(&mut img, Utc::now(), Stage::Apply).await;
    assert!(image_shared(&h, "m-hz0003"));
    // The status is lost (a restore, a replace), and someone unshares the image.
    img.status = None;
    img.metadata.resource_version = Some("180".into());
    h.emu.world().update_state(|s| {
        for i in s.swas.get_mut("cn-hangzhou").unwrap().custom_images.iter_mut() {
            if i.image_id == "m-hz0003" {
                i.in_share = false;
            }
        }
    });
    let r = h.step(&mut img, Utc::now(), Stage::Apply).await;
    assert_eq!(r.applied.len(), 1, "{}", r.verdict.message);
    let sent = log_of(&h, "ModifyImageShareStatus");
    assert_ne!(
        sent[0].params.get("ClientToken"),
        sent[1].params.get("ClientToken"),
        "the repair reused the first write's token"
    );
    assert!(image_shared(&h, "m-hz0003"), "the repair did not act");
}

/// A fresh read (reconcile-requested-at, the read before a write) is of the resource's own
/// objects, by id, and acts for the resource: when the rate limits cannot send it at once,
/// the resource is deferred (`Throttled`, back at its turn) instead of a worker waiting.
#[tokio::test]
async fn fresh_reads_are_by_id_and_deferred_rather_than_waited_for() {
    use alicloud_ops_operator::cloud::CloudClient;
    use alicloud_ops_operator::cloud::client::ClientSettings;
    use alicloud_ops_operator::cloud::ratelimit::RateLimitConfig;
    let mut h = Harness::new().await;
    let ids = ["ecd-hz20061", "ecd-hz20062"];
    let now = Utc::now();
    let w = window(
        "fresh",
        &ids,
        now - chrono::Duration::minutes(1),
        now + chrono::Duration::hours(1),
    );
    let ctx = manage_ctx(now);
    reconcile_once(&w, &h.env, &[], &ctx, Stage::Apply, true, &h.sink)
        .await
        .unwrap();
    let reads = log_of(&h, "DescribeDesktops");
    assert!(!reads.is_empty());
    assert!(
        reads.iter().all(|r| r.params.contains_key("DesktopId.1")),
        "a fresh read listed the whole region: {:?}",
        reads.iter().map(|r| &r.params).collect::<Vec<_>>()
    );

    // One call a minute, and it is spent: the next fresh read cannot go for a while.
    let slow = ClientSettings {
        limits: RateLimitConfig {
            qps: 1.0 / 60.0,
            burst: 1,
            action_quotas: vec![],
        },
        ..settings(&h.emu, SignatureVersion::V3)
    };
    let cloud = CloudClient::build(slow, default_key(), Default::default()).unwrap();
    h.env.cloud = cloud.for_holder("DesktopMaintenanceWindow/default/fresh");
    let r = reconcile_once(&w, &h.env, &[], &ctx, Stage::Apply, true, &h.sink)
        .await
        .unwrap();
    assert!(r.error.is_none(), "{:?}", r.error);
    let r = reconcile_once(&w, &h.env, &[], &ctx, Stage::Apply, true, &h.sink)
        .await
        .unwrap();
    assert_eq!(r.verdict.reason, Reason::Throttled, "{}", r.verdict.message);
    assert!(
        r.requeue_after.is_some_and(|d| d > Duration::from_secs(1)),
        "{:?}",
        r.requeue_after
    );
}

/// People leave on their own time, and the shared list of the region may be a resync old: a
/// window waiting on people reads the computers it waits on again, by id, so it sees them
/// leave at its next look instead of at the next list of the whole region.
#[tokio::test]
async fn a_draining_window_sees_people_leave_without_waiting_for_the_shared_list() {
    let h = Harness::with_snapshot_max_age(Duration::from_secs(3600)).await;
    let now = Utc::now();
    let ids = ["ecd-hz10011", "ecd-hz10012"];
    let edit = |id: &str, change: &dyn Fn(&mut alicloud_ops_operator::cloud::ops::ecd::Desktop)| {
        h.emu.world().update_state(|s| {
            let desktops = &mut s.ecd.get_mut("cn-hangzhou").unwrap().desktops;
            change(desktops.iter_mut().find(|d| d.desktop_id == id).unwrap());
        })
    };
    edit("ecd-hz10011", &|d| {
        d.sessions.push(alicloud_ops_operator::cloud::ops::ecd::DesktopSession {
            end_user_id: "alice".into(),
            establishment_time: "2026-11-22T11:30Z".into(),
            external_user_name: String::new(),
        })
    });
    let mut w = window(
        "w",
        &ids,
        now - chrono::Duration::minutes(5),
        now + chrono::Duration::hours(1),
    );
    let r = h.step(&mut w, now, Stage::Apply).await;
    assert_eq!(r.applied.len(), 1, "{:?}", r.applied);
    let r = h.step(&mut w, now + chrono::Duration::seconds(10), Stage::Apply).await;
    assert_eq!(r.verdict.reason, Reason::Draining, "{}", r.verdict.message);
    let lists = log_of(&h, "DescribeDesktops").len();
    // Alice leaves; the region's list (an hour's cache) still shows her.
    edit("ecd-hz10011", &|d| d.sessions.clear());
    let r = h.step(&mut w, now + chrono::Duration::seconds(40), Stage::Apply).await;
    assert_eq!(r.verdict.reason, Reason::Active, "{}", r.verdict.message);
    let reads = log_of(&h, "DescribeDesktops");
    assert_eq!(reads.len(), lists + 1, "one read by id");
    let by_id = &reads[lists].params;
    assert_eq!(
        by_id.get("DesktopId.1").map(String::as_str),
        Some("ecd-hz10011"),
        "{by_id:?}"
    );
    assert!(
        !by_id.contains_key("DesktopId.2"),
        "only the one still draining: {by_id:?}"
    );
}

/// An approved upgrade that the cloud ends `FAILED` is reported as such (not `Approved`, as if
/// all were well), with the group's own status; the version is not approved again (an
/// approval cannot be taken back, and a person decides what comes next).
#[tokio::test]
async fn an_ota_upgrade_that_failed_is_reported_and_not_approved_again() {
    let h = Harness::new().await;
    h.emu.world().update_state(|s| {
        s.appstream.app_instance_groups[1].upgrade_outcomes = vec!["FAILED".into()];
    });
    let now = h.emu.world().clock.now();
    let mut o = ota("failing", "aig-hz0002", now + chrono::Duration::minutes(10));
    let r = h.step(&mut o, now, Stage::Apply).await;
    assert_eq!(r.applied.len(), 1, "{:?}", r.verdict);
    h.emu.world().clock.advance(chrono::Duration::minutes(30)).unwrap();
    let later = now + chrono::Duration::minutes(30);
    let r = h.step(&mut o, later, Stage::Apply).await;
    assert_eq!(r.verdict.reason, Reason::UpgradeFailed, "{}", r.verdict.message);
    assert!(r.verdict.message.contains("MAINTAIN_FAILED"), "{}", r.verdict.message);
    assert!(!r.verdict.ready);
    let r = h
        .step(&mut o, later + chrono::Duration::minutes(10), Stage::Apply)
        .await;
    assert_eq!(r.verdict.reason, Reason::UpgradeFailed);
    assert_eq!(h.writes("ApproveOtaTask"), 1, "never approved again");
}
