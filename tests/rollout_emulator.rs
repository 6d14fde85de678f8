//! UpdateRollout against the emulator's App Streaming groups: waves in order, within their
//! budget, stopped by failures, one approval per group and version across restarts, lost
//! answers and a status that a restore lost. Status is kept in memory; `tests/e2e/` has the
//! story on the real apiserver.

mod support;

use alicloud_ops_operator::api::rollout::{RolloutPhase, UpdateRollout, UpdateRolloutSpec};
use alicloud_ops_operator::controller::kind::Stage;
use alicloud_ops_operator::reconcile::Reason;
use alicloud_ops_operator::reconcile::update_rollout::{PROMOTE, RESUME};
use chrono::{DateTime, Utc};
use serde_json::json;
use support::memory::*;

/// The default dataset's Hangzhou groups: aig-hz0001 (ring canary), aig-hz0002 (early) and
/// aig-hz0003 (broad) offer a new version; aig-hz0004 (broad) offers none.
fn rollout(name: &str, spec: serde_json::Value) -> UpdateRollout {
    let spec: UpdateRolloutSpec = serde_json::from_value(spec).unwrap();
    named(UpdateRollout::new("x", spec), name)
}

fn rings(extra: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({
        "ota": {"bizRegionId": "cn-hangzhou"},
        "startDelay": "0s",
        "waves": [
            {"name": "canary", "selector": {"tags": {"ring": "canary"}}},
            {"name": "early", "selector": {"tags": {"ring": "early"}}},
            {"name": "broad", "selector": {"appInstanceGroupIds": ["aig-hz0003"]}},
        ],
    });
    spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    spec
}

/// The targets approved, in order, as the emulator applied the calls (a lost answer
/// included): `param` of each `action` call.
fn applied(h: &Harness, action: &str, param: &str) -> Vec<String> {
    log_of(h, action)
        .into_iter()
        .filter(|r| r.code == "success" || r.answer_lost)
        .map(|r| r.params[param].clone())
        .collect()
}

fn approved_groups(h: &Harness) -> Vec<String> {
    applied(h, "ApproveOtaTask", "AppInstanceGroupId")
}

fn now(h: &Harness) -> DateTime<Utc> {
    h.emu.world().clock.now()
}

fn set_annotation(r: &mut UpdateRollout, key: &str, value: &str) {
    r.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(key.into(), value.into());
}

/// Each wave gets its approvals only once the wave before it is done, and the rollout ends
/// Completed with every group on the pinned version; each group is approved once.
#[tokio::test]
async fn waves_go_one_after_another_and_each_group_is_approved_once() {
    let h = Harness::new().await;
    let mut r = rollout("rings", rings(json!({})));
    let step = h.step(&mut r, now(&h), Stage::Apply).await;
    assert_eq!(approved_groups(&h), ["aig-hz0001"], "{}", step.verdict.message);
    let s = step.status.clone();
    assert_eq!(s.pinned_version.as_deref(), Some("1.5.0-R-20261115.100000"), "{s:?}");
    assert_eq!(s.phase, Some(RolloutPhase::Progressing));
    assert_eq!(s.current_wave.as_deref(), Some("canary"));
    assert_eq!(
        (s.waves[0].updating, s.waves[0].pending),
        (1, 0),
        "the approved canary counts as updating"
    );
    // The approval was recorded before it was sent, and confirmed by the answer.
    let first_write = h.sink.writes.lock().unwrap()[0].1.clone();
    assert_eq!(first_write["approvals"][0]["confirmed"], false, "{first_write}");
    assert!(s.approvals[0].confirmed);

    // The canary's upgrade starts at once (startDelay 0s) and the emulator ends it FINISHED.
    for _ in 0..4 {
        h.step(&mut r, now(&h), Stage::Apply).await;
    }
    assert_eq!(approved_groups(&h), ["aig-hz0001", "aig-hz0002", "aig-hz0003"]);
    let done = h.step(&mut r, now(&h), Stage::Apply).await;
    assert_eq!(done.verdict.reason, Reason::Completed, "{}", done.verdict.message);
    let s = &done.status;
    assert_eq!(s.progress.as_deref(), Some("3/3"));
    assert!(
        s.waves.iter().all(|w| w.succeeded == 1 && w.completed_at.is_some()),
        "{s:?}"
    );
    let groups = h.emu.world().state().appstream.app_instance_groups;
    for id in ["aig-hz0001", "aig-hz0002", "aig-hz0003"] {
        let g = groups.iter().find(|g| g.group.app_instance_group_id == id).unwrap();
        assert_eq!(g.group.ota_info.ota_version, "1.5.0-R-20261115.100000", "{id}");
    }
    for _ in 0..2 {
        h.step(&mut r, now(&h), Stage::Apply).await;
    }
    assert_eq!(approved_groups(&h).len(), 3, "never approved again");
    // Later a newer version is installed on the canary by other means: the rollout of
    // 1.5.0 stays complete, with no failure.
    h.emu.world().update_state(|s| {
        s.appstream.app_instance_groups[0].group.ota_info.ota_version = "1.6.0".into();
    });
    let reads = h.writes("ListAppInstanceGroup") + h.writes("ListOtaTask");
    let later = h.step(&mut r, now(&h) + chrono::Duration::hours(3), Stage::Apply).await;
    assert_eq!(
        h.writes("ListAppInstanceGroup") + h.writes("ListOtaTask"),
        reads,
        "a completed rollout reads nothing"
    );
    assert_eq!(later.verdict.reason, Reason::Completed, "{}", later.verdict.message);
    assert!(later.status.failures.is_empty(), "{:?}", later.status.failures);
    assert!(
        later.verdict.message.contains("3 of 3 group(s) succeeded"),
        "{}",
        later.verdict.message
    );
}

/// A wave of three with maxUnavailable 2 gets two approvals; the third waits until one is
/// done.
#[tokio::test]
async fn never_more_than_max_unavailable_at_once() {
    let h = Harness::new().await;
    h.emu.world().update_state(|s| {
        for g in &mut s.appstream.app_instance_groups {
            g.upgrade_duration_seconds = 600;
        }
    });
    let mut r = rollout(
        "budget",
        json!({"ota": {"bizRegionId": "cn-hangzhou"}, "startDelay": "0s",
               "waves": [{"name": "all", "selector": {"appInstanceGroupIds": ["aig-hz0001", "aig-hz0002", "aig-hz0003"]}, "maxUnavailable": 2}]}),
    );
    h.step(&mut r, now(&h), Stage::Apply).await;
    assert_eq!(approved_groups(&h), ["aig-hz0001", "aig-hz0002"]);
    for _ in 0..2 {
        let s = h.step(&mut r, now(&h), Stage::Apply).await;
        assert_eq!(s.status.waves[0].updating, 2, "{:?}", s.status.waves);
    }
    assert_eq!(approved_groups(&h).len(), 2, "the third waits while two update");
    h.emu.world().clock.advance(chrono::Duration::minutes(11)).unwrap();
    h.step(&mut r, now(&h), Stage::Apply).await;
    assert_eq!(approved_groups(&h), ["aig-hz0001", "aig-hz0002", "aig-hz0003"]);
}

/// A failed upgrade beyond maxFailures stops every further approval, whatever the group shows
/// later (the stop is recorded in status); a person's resume accepts the failure and the
/// next wave goes on.
#[tokio::test]
async fn a_failure_stops_the_rollout_until_a_person_resumes_it() {
    let h = Harness::new().await;
    h.emu.world().update_state(|s| {
        s.appstream.app_instance_groups[1].upgrade_outcomes = vec!["FAILED".into()];
    });
    let mut r = rollout("failing", rings(json!({})));
    for _ in 0..4 {
        h.step(&mut r, now(&h), Stage::Apply).await;
    }
    let stopped = h.step(&mut r, now(&h), Stage::Apply).await;
    assert_eq!(
        stopped.verdict.reason,
        Reason::PausedByFailures,
        "{}",
        stopped.verdict.message
    );
    assert_eq!(approved_groups(&h), ["aig-hz0001", "aig-hz0002"]);
    let s = &stopped.status;
    assert!(s.paused_by_failures);
    assert_eq!(s.failures.len(), 1, "{s:?}");
    assert_eq!(s.failures[0].target, "aig-hz0002");
    assert_eq!(s.failures[0].wave, "early");
    assert!(
        s.failures[0].detail.contains("TaskDisplayStatus FAILED"),
        "{}",
        s.failures[0].detail
    );
    assert!(
        s.failures[0].detail.contains("MAINTAIN_FAILED"),
        "{}",
        s.failures[0].detail
    );
    // Someone repairs the group in the console: the stop holds (it is recorded).
    h.emu.world().update_state(|s| {
        let g = &mut s.appstream.app_instance_groups[1].group;
        g.status = "PUBLISHED".into();
        g.resource_status = "AVAILABLE".into();
    });
    for _ in 0..2 {
        let again = h.step(&mut r, now(&h), Stage::Apply).await;
        assert_eq!(again.verdict.reason, Reason::PausedByFailures);
    }
    assert_eq!(approved_groups(&h).len(), 2, "nothing approved while stopped");
    set_annotation(&mut r, RESUME, "2026-12-07T01:00:00Z");
    let resumed = h.step(&mut r, now(&h), Stage::Apply).await;
    assert_eq!(
        approved_groups(&h),
        ["aig-hz0001", "aig-hz0002", "aig-hz0003"],
        "{}",
        resumed.verdict.message
    );
    assert_eq!(resumed.status.waves[1].accepted_failures, 1);
    assert_eq!(resumed.status.resumed_with.as_deref(), Some("2026-12-07T01:00:00Z"));
}

/// A manual wave waits for a person; the annotation naming it promotes it, once.
#[tokio::test]
async fn a_manual_wave_waits_for_its_promotion() {
    let h = Harness::new().await;
    let mut r = rollout(
        "manual",
        json!({"ota": {"bizRegionId": "cn-hangzhou"}, "startDelay": "0s",
               "waves": [{"name": "canary", "selector": {"tags": {"ring": "canary"}}, "promotion": "Manual"},
                         {"name": "early", "selector": {"tags": {"ring": "early"}}}]}),
    );
    for _ in 0..3 {
        h.step(&mut r, now(&h), Stage::Apply).await;
    }
    let waiting = h.step(&mut r, now(&h), Stage::Apply).await;
    assert_eq!(
        waiting.verdict.reason,
        Reason::WaitingForPromotion,
        "{}",
        waiting.verdict.message
    );
    assert_eq!(approved_groups(&h), ["aig-hz0001"]);
    set_annotation(&mut r, PROMOTE, "early");
    h.step(&mut r, now(&h), Stage::Apply).await;
    assert_eq!(
        approved_groups(&h),
        ["aig-hz0001"],
        "promoting another wave promotes nothing"
    );
    set_annotation(&mut r, PROMOTE, "canary");
    let promoted = h.step(&mut r, now(&h), Stage::Apply).await;
    assert_eq!(
        approved_groups(&h),
        ["aig-hz0001", "aig-hz0002"],
        "{}",
        promoted.verdict.message
    );
    assert!(promoted.status.waves[0].promoted_at.is_some());
}

/// An approval whose answer was lost is confirmed from the cloud (the TaskId moved on) and
/// never sent again; a status lost to a restore is rebuilt from the task lists: the group
/// approved before is not approved again.
#[tokio::test]
async fn a_lost_answer_and_a_lost_status_never_approve_a_group_twice() {
    let h = Harness::new().await;
    fault(
        &h,
        json!({"action": "ApproveOtaTask", "code": "ServiceUnavailable", "afterApply": true, "count": 1}),
    );
    // Upgrades an hour from now, so the approvals stay STANDBY.
    let mut r = rollout("lost", rings(json!({"startDelay": "1h"})));
    let first = h.step(&mut r, now(&h), Stage::Apply).await;
    assert!(first.error.is_some(), "the answer was lost");
    assert!(!first.status.approvals[0].confirmed, "maybe applied: the record stays");
    for _ in 0..2 {
        let again = h.step(&mut r, now(&h), Stage::Apply).await;
        assert!(again.status.approvals[0].confirmed, "{:?}", again.status.approvals);
        assert_eq!(again.verdict.reason, Reason::Progressing);
    }
    assert_eq!(approved_groups(&h), ["aig-hz0001"], "sent once");
    // A restore without status: the task list shows the approval, which is adopted.
    r.status = None;
    let rebuilt = h.step(&mut r, now(&h), Stage::Apply).await;
    assert_eq!(
        rebuilt.verdict.reason,
        Reason::Progressing,
        "{}",
        rebuilt.verdict.message
    );
    assert_eq!(rebuilt.status.approvals.len(), 1, "{:?}", rebuilt.status.approvals);
    assert_eq!(rebuilt.status.waves[0].updating, 1);
    assert_eq!(approved_groups(&h), ["aig-hz0001"], "never approved twice");
}

/// A group offered another version than the pinned one waits: it is never approved.
#[tokio::test]
async fn a_group_offered_another_version_waits() {
    let h = Harness::new().await;
    let mut r = rollout("pinned", rings(json!({})));
    h.step(&mut r, now(&h), Stage::Apply).await;
    // A newer version is published to the early ring in the middle of the rollout.
    h.emu.world().update_state(|s| {
        s.appstream.app_instance_groups[1].group.ota_info.new_ota_version = "2.2.0".into();
    });
    for _ in 0..4 {
        h.step(&mut r, now(&h), Stage::Apply).await;
    }
    let waiting = h.step(&mut r, now(&h), Stage::Apply).await;
    assert_eq!(approved_groups(&h), ["aig-hz0001"]);
    assert_eq!(waiting.status.current_wave.as_deref(), Some("early"));
    assert!(
        waiting.verdict.message.contains("another version"),
        "{}",
        waiting.verdict.message
    );
    assert!(
        log_of(&h, "ApproveOtaTask")
            .iter()
            .all(|a| a.effects.iter().all(|e| !e.contains("2.2.0"))),
        "the newer version is never approved"
    );
}

// --- FOTA: cloud computers' image update, computer by computer -------------------------

/// Hangzhou's computers ecd-hz10011..15 (Running, nobody connected, on 2.0.0); the newest
/// task is aot-hz0003 (2.3.0, Pending).
const NEWEST: &str = "2.3.0-R-20261301.120000";

fn fota_rings(extra: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({
        "fota": {"regionId": "cn-hangzhou"},
        "waves": [
            {"name": "canary", "selector": {"desktopIds": ["ecd-hz10011"]}},
            {"name": "rest", "selector": {"desktopIds": ["ecd-hz10012", "ecd-hz10013", "ecd-hz10014", "ecd-hz10015"]}, "maxUnavailable": 2},
        ],
    });
    spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    spec
}

fn approved_desktops(h: &Harness) -> Vec<String> {
    applied(h, "ApproveFotaUpdate", "DesktopId")
}

fn edit_desktop(h: &Harness, id: &str, change: impl Fn(&mut alicloud_ops_operator::cloud::ops::ecd::Desktop)) {
    h.emu.world().update_state(|s| {
        let desktops = &mut s.ecd.get_mut("cn-hangzhou").unwrap().desktops;
        change(desktops.iter_mut().find(|d| d.desktop_id == id).unwrap());
    })
}

fn connect(h: &Harness, id: &str, user: &str) {
    edit_desktop(h, id, |d| {
        d.sessions.push(alicloud_ops_operator::cloud::ops::ecd::DesktopSession {
            end_user_id: user.into(),
            establishment_time: "2026-12-01T08:00Z".into(),
            external_user_name: String::new(),
        })
    });
}

fn versions(h: &Harness, ids: &[&str]) -> Vec<String> {
    let state = h.emu.world().state();
    let r = &state.ecd["cn-hangzhou"];
    ids.iter().map(|id| r.app_version(id).to_string()).collect()
}

fn task_status(h: &Harness, uid: &str) -> String {
    let state = h.emu.world().state();
    state.ecd["cn-hangzhou"]
        .fota_tasks
        .iter()
        .find(|t| t.task_uid == uid)
        .unwrap()
        .status
        .clone()
}

/// The canary first, then the rest two at a time; a computer someone works on is never
/// approved while they are connected (the cloud would not update it), and goes once they
/// leave; each computer is approved once, for the pinned version, and ends on it.
#[tokio::test]
async fn fota_waves_update_free_computers_and_wait_for_people() {
    let h = Harness::new().await;
    connect(&h, "ecd-hz10013", "alice");
    let mut r = rollout("fota", fota_rings(json!({})));
    let step = h.step(&mut r, now(&h), Stage::Apply).await;
    assert_eq!(approved_desktops(&h), ["ecd-hz10011"], "{}", step.verdict.message);
    assert_eq!(step.status.pinned_version.as_deref(), Some(NEWEST));
    assert_eq!(step.status.fota_task_uid.as_deref(), Some("aot-hz0003"));
    let first_write = h.sink.writes.lock().unwrap()[0].1.clone();
    assert_eq!(
        first_write["desktopApprovals"][0]["confirmed"], false,
        "recorded before it was sent: {first_write}"
    );
    // The emulator finishes an update at the next request (fotaUpdateSeconds 0).
    let rest = h.step(&mut r, now(&h), Stage::Apply).await;
    assert_eq!(
        approved_desktops(&h),
        ["ecd-hz10011", "ecd-hz10012", "ecd-hz10014"],
        "two at a time, past the computer alice works on: {}",
        rest.verdict.message
    );
    assert_eq!(rest.status.waves[1].busy, 1, "{:?}", rest.status.waves[1]);
    let more = h.step(&mut r, now(&h), Stage::Apply).await;
    assert_eq!(approved_desktops(&h).len(), 4, "{}", more.verdict.message);
    let waiting = h.step(&mut r, now(&h), Stage::Apply).await;
    assert_eq!(waiting.verdict.reason, Reason::Progressing);
    assert!(
        waiting.verdict.message.contains("1 wait for their users"),
        "{}",
        waiting.verdict.message
    );
    assert_eq!(approved_desktops(&h).len(), 4, "alice is still connected");
    edit_desktop(&h, "ecd-hz10013", |d| d.sessions.clear());
    h.step(&mut r, now(&h), Stage::Apply).await;
    assert_eq!(approved_desktops(&h).last().map(String::as_str), Some("ecd-hz10013"));
    let done = h.step(&mut r, now(&h), Stage::Apply).await;
    assert_eq!(done.verdict.reason, Reason::Completed, "{}", done.verdict.message);
    assert_eq!(done.status.progress.as_deref(), Some("5/5"));
    let ids = [
        "ecd-hz10011",
        "ecd-hz10012",
        "ecd-hz10013",
        "ecd-hz10014",
        "ecd-hz10015",
    ];
    assert_eq!(versions(&h, &ids), vec![NEWEST; 5]);
    let mut sent = approved_desktops(&h);
    sent.sort();
    assert_eq!(sent, ids, "each computer approved exactly once");
    assert!(
        log_of(&h, "ApproveFotaUpdate").iter().all(|r| r.code == "success"),
        "no approval was refused (none went to a connected computer)"
    );
    assert!(
        log_of(&h, "ApproveFotaUpdate")
            .iter()
            .all(|r| r.params["AppVersion"] == NEWEST)
    );
}

/// A task pushed to users is held Pending before the first approval; a computer that the
/// update leaves Failed stops the rollout, and it stays stopped until a person resumes it.
#[tokio::test]
async fn fota_holds_the_task_pending_and_stops_on_a_failed_computer() {
    let h = Harness::new().await;
    h.emu.world().update_state(|s| {
        s.ecd.get_mut("cn-hangzhou").unwrap().fota_failures = vec!["ecd-hz10012".into()];
    });
    // 2.1.0 is task aot-hz0001, pushed (Running).
    let mut r = rollout(
        "fota-fail",
        fota_rings(json!({"fota": {"regionId": "cn-hangzhou", "appVersion": "2.1.0-R-20261101.120000"}})),
    );
    let first = h.step(&mut r, now(&h), Stage::Apply).await;
    assert_eq!(
        first.applied,
        ["UpdateFotaTask aot-hz0001 UserStatus=Pending"],
        "{}",
        first.verdict.message
    );
    assert!(approved_desktops(&h).is_empty(), "no approval before the task is held");
    assert_eq!(task_status(&h, "aot-hz0001"), "Pending");
    h.step(&mut r, now(&h), Stage::Apply).await;
    assert_eq!(approved_desktops(&h), ["ecd-hz10011"]);
    h.step(&mut r, now(&h), Stage::Apply).await;
    let failed = h.step(&mut r, now(&h), Stage::Apply).await;
    assert_eq!(
        failed.verdict.reason,
        Reason::PausedByFailures,
        "{}",
        failed.verdict.message
    );
    assert!(
        failed.status.failures[0].detail.contains("DesktopStatus Failed"),
        "{:?}",
        failed.status.failures
    );
    let sent = approved_desktops(&h).len();
    for _ in 0..3 {
        let again = h.step(&mut r, now(&h), Stage::Apply).await;
        assert_eq!(again.verdict.reason, Reason::PausedByFailures);
    }
    assert_eq!(approved_desktops(&h).len(), sent, "nothing more after the stop");
    set_annotation(&mut r, RESUME, "once");
    let resumed = h.step(&mut r, now(&h), Stage::Apply).await;
    assert_ne!(
        resumed.verdict.reason,
        Reason::PausedByFailures,
        "{}",
        resumed.verdict.message
    );
    assert!(
        approved_desktops(&h).len() > sent,
        "the rollout goes on after the resume"
    );
}

/// While the region's global auto-update switch is on, the task stays pushed whatever the
/// rollout sets, and the rollout approves nothing, saying why.
#[tokio::test]
async fn fota_is_blocked_by_the_global_auto_update_switch() {
    let h = Harness::new().await;
    h.emu
        .world()
        .update_state(|s| s.ecd.get_mut("cn-hangzhou").unwrap().global_auto_update = true);
    let mut r = rollout("fota-global", fota_rings(json!({})));
    let first = h.step(&mut r, now(&h), Stage::Apply).await;
    assert_eq!(first.applied, ["UpdateFotaTask aot-hz0003 UserStatus=Pending"]);
    let blocked = h.step(&mut r, now(&h), Stage::Apply).await;
    assert_eq!(
        blocked.verdict.reason,
        Reason::GlobalAutoUpdateEnabled,
        "{}",
        blocked.verdict.message
    );
    assert!(
        blocked.verdict.message.contains("turn the switch off"),
        "{}",
        blocked.verdict.message
    );
    assert!(approved_desktops(&h).is_empty());
}

/// A status lost to a restore while computers update: the updating computers are adopted
/// (not approved again) and fill the budget; nothing is approved twice.
#[tokio::test]
async fn fota_a_lost_status_never_approves_a_computer_twice() {
    let h = Harness::new().await;
    h.emu
        .world()
        .update_state(|s| s.ecd.get_mut("cn-hangzhou").unwrap().fota_update_seconds = 900);
    let mut r = rollout(
        "fota-restore",
        json!({"fota": {"regionId": "cn-hangzhou"},
               "waves": [{"name": "all", "selector": {"desktopIds": ["ecd-hz10011", "ecd-hz10012", "ecd-hz10013"]}, "maxUnavailable": 2}]}),
    );
    h.step(&mut r, now(&h), Stage::Apply).await;
    assert_eq!(approved_desktops(&h), ["ecd-hz10011", "ecd-hz10012"]);
    r.status = None;
    let restored = h.step(&mut r, now(&h), Stage::Apply).await;
    assert_eq!(approved_desktops(&h).len(), 2, "{}", restored.verdict.message);
    assert_eq!(restored.status.desktop_approvals.len(), 2, "{:?}", restored.status);
    assert_eq!(restored.status.waves[0].updating, 2);
    h.emu.world().clock.advance(chrono::Duration::minutes(16)).unwrap();
    h.step(&mut r, now(&h), Stage::Apply).await;
    assert_eq!(
        approved_desktops(&h),
        ["ecd-hz10011", "ecd-hz10012", "ecd-hz10013"],
        "the third once the first two are done"
    );
}

fn created(meta: &mut kube::api::ObjectMeta, at: &str) {
    let t: k8s_openapi::jiff::Timestamp = at.parse().unwrap();
    meta.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t));
}

/// A FotaTaskPolicy that pushes the task a FOTA rollout holds is the rollout's rival, as two
/// OtaSchedules of one group are: the older acts and the younger stands back, whichever kind
/// it is.
#[tokio::test]
async fn fota_rollout_and_a_pushing_fota_task_policy_the_older_acts() {
    use alicloud_ops_operator::api::fota::{FotaTaskPolicy, FotaTaskPolicySpec};
    use alicloud_ops_operator::controller::kind::{ClaimsTargets, Rival};
    use std::sync::Arc;

    let mut policy = named(
        FotaTaskPolicy::new(
            "x",
            serde_json::from_value::<FotaTaskPolicySpec>(json!({"regionId": "cn-hangzhou", "autoPush": true})).unwrap(),
        ),
        "push",
    );
    let mut r = rollout("fota-young", fota_rings(json!({})));
    let rival = |obj: Arc<dyn ClaimsTargets>| Rival {
        obj,
        account: Some("test".into()),
    };

    // The policy is older: the rollout holds nothing and approves nothing.
    created(&mut policy.metadata, "2026-01-01T00:00:00Z");
    created(&mut r.metadata, "2026-06-01T00:00:00Z");
    let mut h = Harness::new().await;
    h.env.rivals = Arc::new(vec![rival(Arc::new(policy.clone()))]);
    let young = h.step(&mut r, now(&h), Stage::Apply).await;
    assert_eq!(young.verdict.reason, Reason::Conflict, "{}", young.verdict.message);
    assert!(
        young
            .verdict
            .message
            .contains("is pushed to users by older resources: FotaTaskPolicy default/push"),
        "{}",
        young.verdict.message
    );
    assert!(young.applied.is_empty(), "{:?}", young.applied);
    assert!(approved_desktops(&h).is_empty());

    // The rollout is older and has started: the policy leaves the rollout's task Pending and
    // pushes the rest.
    created(&mut r.metadata, "2025-06-01T00:00:00Z");
    r.status = None;
    let mut h = Harness::new().await;
    h.step(&mut r, now(&h), Stage::Apply).await;
    h.env.rivals = Arc::new(vec![rival(Arc::new(r.clone()))]);
    let p = h.step(&mut policy, now(&h), Stage::Apply).await;
    assert_eq!(p.verdict.reason, Reason::Conflict, "{}", p.verdict.message);
    assert!(
        p.verdict.message.contains("UpdateRollout default/fota-young"),
        "{}",
        p.verdict.message
    );
    assert_eq!(
        task_status(&h, "aot-hz0003"),
        "Pending",
        "the rollout's task is left alone"
    );
    assert_eq!(task_status(&h, "aot-hz0002"), "Running", "the others are pushed");
}
