//! OtaSchedule: approve each new version once, for the right start time.

use chrono::{DateTime, Utc};

use super::schedule::CronInZone;
use super::{Outcome, PlanContext, Reason, VERIFY_AFTER, Verdict, rfc3339, until};
use crate::api::ota::{Approval, ApprovalSource, OtaScheduleSpec, OtaScheduleStatus};
use crate::cloud::ops::appstream::{AppInstanceGroup, OtaTask};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approve {
    pub task_id: String,
    pub version: String,
    /// RFC 3339.
    pub start_time: String,
}

pub struct OtaInput<'a> {
    pub spec: &'a OtaScheduleSpec,
    pub group: Option<&'a AppInstanceGroup>,
    pub previous: &'a OtaScheduleStatus,
    /// The group's approved tasks (ListOtaTask), when read: right before an approval, and
    /// whenever an approval is recorded as in flight. `None`: not read this time.
    pub tasks: Option<&'a [OtaTask]>,
    /// Older OtaSchedules of the same delivery group (`namespace/name`): the oldest wins.
    pub older_peers: &'a [String],
}

/// Whether this plan needs the task list: to confirm an approval in flight, or, on the
/// fresh read right before an approval, to check that nobody approved the version already.
pub fn needs_tasks(previous: &OtaScheduleStatus, group: Option<&AppInstanceGroup>, fresh: bool) -> bool {
    let Some(g) = group else { return false };
    let pending = &g.ota_info.new_ota_version;
    previous.in_flight.is_some()
        || (fresh && !pending.is_empty() && previous.approved.as_ref().is_none_or(|a| &a.version != pending))
}

fn same_instant(a: &str, b: &str) -> bool {
    match (DateTime::parse_from_rfc3339(a), DateTime::parse_from_rfc3339(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// What the cloud's task list says about an approval recorded as in flight, whose TaskId
/// has since changed.
fn confirm(f: Approval, tasks: Option<&[OtaTask]>) -> Approval {
    let Some(tasks) = tasks else {
        return Approval {
            source: Some(ApprovalSource::Unconfirmed),
            ..f
        };
    };
    match tasks.iter().find(|t| t.task_id == f.task_id) {
        Some(t) if t.ota_version == f.version && same_instant(&t.task_start_time, &f.start_time) => Approval {
            source: Some(ApprovalSource::Operator),
            ..f
        },
        Some(t) => Approval {
            version: t.ota_version.clone(),
            task_id: t.task_id.clone(),
            start_time: t.task_start_time.clone(),
            source: Some(ApprovalSource::Elsewhere),
        },
        None => Approval {
            source: Some(ApprovalSource::Unconfirmed),
            ..f
        },
    }
}

/// An approval of `version` that someone else made, as the task list shows it.
fn approved_elsewhere(version: &str, tasks: Option<&[OtaTask]>) -> Option<Approval> {
    tasks?
        .iter()
        .find(|t| t.ota_version == version && matches!(t.task_display_status.as_str(), "STANDBY" | "RUNNING"))
        .map(|t| Approval {
            version: t.ota_version.clone(),
            task_id: t.task_id.clone(),
            start_time: t.task_start_time.clone(),
            source: Some(ApprovalSource::Elsewhere),
        })
}

/// After an approved start time has passed, look again soon (then less and less often)
/// so the status shows the installed version without waiting for the resync.
fn after_start(now: DateTime<Utc>, start: DateTime<Utc>, resync: std::time::Duration) -> std::time::Duration {
    if start > now {
        return until(now, start);
    }
    let since = (now - start).to_std().unwrap_or_default();
    (since / 2).clamp(
        std::time::Duration::from_secs(10),
        resync.max(std::time::Duration::from_secs(10)),
    )
}

/// How far ahead of now a window start must be to be chosen, so the approval does not
/// arrive after its own start time.
const MIN_LEAD: chrono::Duration = chrono::Duration::minutes(1);

fn start_for(spec: &OtaScheduleSpec, now: DateTime<Utc>) -> Result<Result<DateTime<Utc>, String>, String> {
    if let Some(raw) = &spec.start_time {
        let t = DateTime::parse_from_rfc3339(raw)
            .map_err(|_| format!("spec.startTime: {raw:?} is not an RFC 3339 time"))?
            .with_timezone(&Utc);
        return Ok(if t < now { Err(rfc3339(t)) } else { Ok(t) });
    }
    let w = spec
        .window
        .as_ref()
        .ok_or("spec: set exactly one of startTime or window")?;
    let cron = CronInZone::parse("spec.window", &w.cron, &w.time_zone)?;
    cron.next_after(now.checked_add_signed(MIN_LEAD).unwrap_or(DateTime::<Utc>::MAX_UTC))
        .map(Ok)
        .ok_or_else(|| format!("spec.window.cron: {:?} never matches", w.cron))
}

pub fn plan(input: &OtaInput<'_>, ctx: &PlanContext) -> Outcome<Approve, OtaScheduleStatus> {
    let spec = input.spec;
    let mut status = input.previous.clone();
    let outcome = Outcome::settled;
    let Some(group) = input.group else {
        return outcome(
            status,
            Verdict::not_ready(
                Reason::NotFound,
                format!(
                    "delivery group {} does not exist in {}",
                    spec.app_instance_group_id, spec.biz_region_id
                ),
            ),
            None,
        );
    };
    let ota = &group.ota_info;
    // An approval recorded as in flight went through only if the TaskId changed; the task
    // list then tells whether it was ours (someone else may have approved in between).
    if let Some(f) = status.in_flight.take() {
        if ota.task_id != f.task_id {
            let confirmed = confirm(f, input.tasks);
            status.scheduled_start = Some(confirmed.start_time.clone());
            status.last_approval_time.get_or_insert_with(|| rfc3339(ctx.now));
            status.approved = Some(confirmed);
        } else if input.tasks.is_none() {
            // Not known yet whether it went through: keep the record until the list is read.
            status.in_flight = Some(f);
        }
    }
    status.current_version = Some(ota.ota_version.clone()).filter(|v| !v.is_empty());
    status.pending_version = Some(ota.new_ota_version.clone()).filter(|v| !v.is_empty());
    status.conflicts = input.older_peers.to_vec();
    let Some(version) = status.pending_version.clone() else {
        status.scheduled_start = None;
        let current = status.current_version.clone().unwrap_or_default();
        return outcome(
            status,
            Verdict::ready(
                Reason::UpToDate,
                format!("version {current} is current; no new version"),
            ),
            None,
        );
    };
    if status.approved.as_ref().is_none_or(|a| a.version != version)
        && let Some(a) = approved_elsewhere(&version, input.tasks)
    {
        status.scheduled_start = Some(a.start_time.clone());
        status.approved = Some(a);
    }
    if let Some(a) = status.approved.as_ref().filter(|a| a.version == version) {
        let who = match a.source {
            Some(ApprovalSource::Elsewhere) => " (approved outside this resource)",
            Some(ApprovalSource::Unconfirmed) => " (the TaskId changed, but the task list does not show the approval)",
            _ => "",
        };
        let start = a.start_time.parse::<DateTime<Utc>>().ok();
        // After its start the group shows how the upgrade went; a failure is said as such
        // (the version stays pending, and is not approved again: an approval cannot be
        // withdrawn, so a person decides what comes next).
        let task = input
            .tasks
            .into_iter()
            .flatten()
            .find(|t| t.ota_version == version && same_instant(&t.task_start_time, &a.start_time));
        let task_failed = task.is_some_and(|t| matches!(t.task_display_status.as_str(), "FAILED" | "TERMINATED"));
        let group_failed =
            matches!(group.status.as_str(), "MAINTAIN_FAILED" | "FAILED") || group.resource_status == "UNAVAILABLE";
        if start.is_some_and(|s| ctx.now >= s) && (task_failed || group_failed) {
            let msg = format!(
                "the upgrade to version {version} approved for {} failed: the group is {} / {}{}; the version is not \
                 approved again",
                a.start_time,
                group.status,
                group.resource_status,
                task.map(|t| format!(", its task {}", t.task_display_status))
                    .unwrap_or_default()
            );
            return outcome(status, Verdict::not_ready(Reason::UpgradeFailed, msg), None);
        }
        let msg = format!("version {version} is approved to start at {}{who}", a.start_time);
        let requeue = start.map(|s| after_start(ctx.now, s, ctx.resync));
        return outcome(status, Verdict::ready(Reason::Approved, msg), requeue);
    }
    if status.in_flight.is_some() {
        // Undecided: nothing more until the task list is read (next, fresh, plan).
        let msg = format!("version {version}: an approval is recorded as in flight; checking whether it went through");
        return outcome(status, Verdict::not_ready(Reason::Applying, msg), Some(VERIFY_AFTER));
    }
    if !input.older_peers.is_empty() {
        let msg = format!(
            "an older OtaSchedule or UpdateRollout approves the same delivery group: {}",
            input.older_peers.join(", ")
        );
        return outcome(status, Verdict::not_ready(Reason::Conflict, msg), None);
    }
    let start = match start_for(spec, ctx.now) {
        Err(msg) => return outcome(status, Verdict::not_ready(Reason::InvalidSpec, msg), None),
        Ok(Err(past)) => {
            let msg = format!(
                "version {version} appeared after the one-off startTime {past}; set a new startTime to approve it"
            );
            return outcome(status, Verdict::not_ready(Reason::StartTimeInPast, msg), None);
        }
        Ok(Ok(s)) => s,
    };
    if !ctx.manages() {
        let msg = format!(
            "version {version} is waiting; would approve it for {}; ObserveOnly, nothing written",
            rfc3339(start)
        );
        return outcome(status, Verdict::not_ready(Reason::DriftDetected, msg), None);
    }
    let approval = Approval {
        version: version.clone(),
        task_id: ota.task_id.clone(),
        start_time: rfc3339(start),
        source: Some(ApprovalSource::Operator),
    };
    let mut intent = status.clone();
    intent.in_flight = Some(approval.clone());
    status.approved = Some(approval.clone());
    status.scheduled_start = Some(approval.start_time.clone());
    status.last_approval_time = Some(rfc3339(ctx.now));
    Outcome {
        actions: vec![Approve {
            task_id: approval.task_id,
            version: version.clone(),
            start_time: approval.start_time.clone(),
        }],
        intent: Some(intent),
        status,
        verdict: Verdict::ready(
            Reason::Approved,
            format!("version {version} approved to start at {}", approval.start_time),
        ),
        requeue_after: Some(VERIFY_AFTER),
    }
}
