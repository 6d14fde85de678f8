//! OtaSchedule: approve each new version once, for the right start time.

use chrono::{DateTime, Utc};

use super::schedule::CronInZone;
use super::{Outcome, PlanContext, Reason, VERIFY_AFTER, Verdict, rfc3339, until};
use crate::api::ota::{Approval, OtaScheduleSpec, OtaScheduleStatus};
use crate::cloud::ops::appstream::AppInstanceGroup;

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
    cron.next_after(now + MIN_LEAD)
        .map(Ok)
        .ok_or_else(|| format!("spec.window.cron: {:?} never matches", w.cron))
}

pub fn plan(input: &OtaInput<'_>, ctx: &PlanContext) -> Outcome<Approve, OtaScheduleStatus> {
    let spec = input.spec;
    let mut status = input.previous.clone();
    let outcome = |status, verdict, requeue_after| Outcome {
        actions: vec![],
        intent: None,
        status,
        verdict,
        requeue_after,
    };
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
    // An approval recorded as in flight went through exactly when the TaskId has changed.
    if let Some(f) = status.in_flight.take()
        && ota.task_id != f.task_id
    {
        status.scheduled_start = Some(f.start_time.clone());
        status.last_approval_time.get_or_insert_with(|| rfc3339(ctx.now));
        status.approved = Some(f);
    }
    status.current_version = Some(ota.ota_version.clone()).filter(|v| !v.is_empty());
    status.pending_version = Some(ota.new_ota_version.clone()).filter(|v| !v.is_empty());
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
    if let Some(a) = status.approved.as_ref().filter(|a| a.version == version) {
        let msg = format!("version {version} is approved to start at {}", a.start_time);
        let requeue = a
            .start_time
            .parse::<DateTime<Utc>>()
            .ok()
            .filter(|s| *s > ctx.now)
            .map(|s| until(ctx.now, s));
        return outcome(status, Verdict::ready(Reason::Approved, msg), requeue);
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
