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

/// The groups approved, in order, as the emulator applied the calls (a lost answer included).
fn approved_groups(h: &Harness) -> Vec<String> {
    log_of(h, "ApproveOtaTask")
        .into_iter()
        .filter(|r| r.code == "success" || r.answer_lost)
        .map(|r| r.params["AppInstanceGroupId"].clone())
        .collect()
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
