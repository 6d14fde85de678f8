//! UpdateRollout: the spec and status around the wave core ([`super::rollout`]): what the
//! record says was approved, whether approvals may start now, what a person asked for
//! (promote, resume), and the status and verdict that follow, for either target (OTA
//! delivery groups, FOTA cloud computers).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::maintenance::{SkipBusy, skip_busy_of};
use super::rollout::{
    Amount, Approve, ApproveDesktop, Approved, FailurePolicy, FotaRolloutInput, OnFailure, OtaRolloutInput, Phase,
    Promotion, RolloutBasis, RolloutPlan, Wave, WaveRecord, plan_fota, plan_ota,
};
use super::schedule::{Schedule, Window, blackouts};
use super::{Outcome, PlanContext, Reason, VERIFY_AFTER, Verdict, duration, rfc3339, until};
use crate::api::rollout::{
    DesktopApproval, FailureAction, GroupApproval, RolloutPhase, TargetFailure, UpdateRolloutSpec, UpdateRolloutStatus,
    WaveStatus,
};
use crate::cloud::ops::appstream::{AppInstanceGroup, OtaTask};
use crate::cloud::ops::ecd::{Desktop, DesktopInfo, FotaTask};

/// The annotation `kubectl alicloud-ops promote` sets: the name of the wave promoted.
pub const PROMOTE: &str = "ops.alicloud.dev/promote";
/// The annotation `kubectl alicloud-ops resume` sets (a new value each time): failures so far
/// are accepted and a rollout stopped by them goes on.
pub const RESUME: &str = "ops.alicloud.dev/resume";

/// How far after its approval a group's upgrade starts, unless `spec.startDelay` says.
pub const DEFAULT_START_DELAY: std::time::Duration = std::time::Duration::from_secs(60);
/// A group approved and not done this long after its start has failed, unless the policy says.
pub const DEFAULT_PROGRESS_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2 * 3600);
/// While groups update, look this often.
pub const WATCH_UPDATES: std::time::Duration = std::time::Duration::from_secs(15);
/// While computers update (10-15 minutes each) or wait for their users, look this often:
/// each look reads the wave's computers by id, 100 a call.
pub const WATCH_DESKTOPS: std::time::Duration = std::time::Duration::from_secs(60);
/// A FOTA rollout takes at most this many computers: its record of approvals lives in its
/// status, which must stay well inside the apiserver's object size.
pub const MAX_FOTA_TARGETS: usize = 5000;
/// The failures kept in status.
pub const MAX_FAILURES_KEPT: usize = 50;

/// What the cloud shows of the rollout's target.
#[derive(Clone, Copy)]
pub enum RolloutCloud<'a> {
    Ota {
        /// The region's delivery groups, less those an older resource approves.
        groups: &'a [AppInstanceGroup],
        /// The task lists (ListOtaTask) read this time, by group.
        tasks: &'a BTreeMap<String, Vec<OtaTask>>,
    },
    Fota {
        /// The region's cloud computers (DescribeDesktops), less those an older rollout takes.
        desktops: &'a [Desktop],
        /// The computers read by id this time (DescribeDesktopInfo).
        infos: &'a BTreeMap<String, DesktopInfo>,
        /// The region's image-update tasks.
        tasks: &'a [FotaTask],
        /// Older resources that push the task this rollout would hold (named for people):
        /// they act, and the rollout does nothing while they do.
        task_rivals: &'a [String],
    },
}

pub struct RolloutInput<'a> {
    pub spec: &'a UpdateRolloutSpec,
    pub cloud: RolloutCloud<'a>,
    pub previous: &'a UpdateRolloutStatus,
    /// The `ops.alicloud.dev/promote` annotation.
    pub promote: Option<&'a str>,
    /// The `ops.alicloud.dev/resume` annotation.
    pub resume: Option<&'a str>,
    /// Older resources that act on some of the same targets (named for people).
    pub conflicts: &'a [String],
}

/// One write of a rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RolloutAction {
    /// ApproveOtaTask of one delivery group.
    ApproveGroup(Approve),
    /// ApproveFotaUpdate of one cloud computer.
    ApproveDesktop(ApproveDesktop),
    /// UpdateFotaTask `UserStatus=Pending`: users do not take the update by themselves
    /// outside the rollout.
    HoldTask { task_uid: String },
}

/// The spec, read once: every field that can be wrong is named.
struct Read {
    waves: Vec<Wave>,
    policy: FailurePolicy,
    window: Option<Schedule>,
    blackouts: Vec<Window>,
    start_delay: chrono::Duration,
    /// FOTA with `drain.policy: SkipBusy`.
    skip_busy: Option<SkipBusy>,
}

fn read(spec: &UpdateRolloutSpec) -> Result<Read, String> {
    let mut waves = Vec::new();
    for (i, w) in spec.waves.iter().enumerate() {
        let field = format!("spec.waves[{i}]");
        let soak = match &w.soak {
            None => std::time::Duration::ZERO,
            Some(s) => zero_or_within(&format!("{field}.soak"), s, SOAK_MAX)?,
        };
        waves.push(Wave {
            name: w.name.clone(),
            selector: w.selector.clone(),
            max_unavailable: amount(&format!("{field}.maxUnavailable"), &w.max_unavailable.as_text())?,
            soak: chrono::Duration::from_std(soak).map_err(|e| format!("{field}.soak: {e}"))?,
            promotion: match w.promotion {
                crate::api::rollout::Promotion::Auto => Promotion::Auto,
                crate::api::rollout::Promotion::Manual => Promotion::Manual,
            },
        });
    }
    let fp = &spec.failure_policy;
    let deadline = match &fp.progress_deadline {
        None => DEFAULT_PROGRESS_DEADLINE,
        Some(d) => duration::parse_within(
            "spec.failurePolicy.progressDeadline",
            d,
            std::time::Duration::from_secs(60),
            duration::WINDOW_MAX,
        )?,
    };
    let start_delay = match &spec.start_delay {
        None => DEFAULT_START_DELAY,
        Some(d) => zero_or_within("spec.startDelay", d, std::time::Duration::from_secs(86_400))?,
    };
    let window = match &spec.window {
        None => None,
        Some(w) => Some(Schedule::recurring("spec.window", &w.cron, &w.duration, &w.time_zone)?),
    };
    Ok(Read {
        waves,
        policy: FailurePolicy {
            max_failures: amount("spec.failurePolicy.maxFailures", &fp.max_failures.as_text())?,
            progress_deadline: chrono::Duration::from_std(deadline).unwrap_or(chrono::Duration::MAX),
            part_finished_succeeds: fp.part_finished_succeeds,
            action: match fp.action {
                FailureAction::Pause => OnFailure::Pause,
                FailureAction::Continue => OnFailure::Continue,
            },
        },
        window,
        blackouts: blackouts(&spec.blackouts)?,
        start_delay: chrono::Duration::from_std(start_delay).unwrap_or_default(),
        skip_busy: skip_busy_of(spec.fota.as_ref().and_then(|f| f.drain.as_ref()), "spec.fota.drain")?,
    })
}

/// A duration that may be zero (`0s`), else from one second to `max`.
fn zero_or_within(field: &str, value: &str, max: std::time::Duration) -> Result<std::time::Duration, String> {
    if value.chars().filter(char::is_ascii_digit).all(|c| c == '0') && !value.is_empty() {
        duration::parse_within(field, &value.replace('0', "1"), std::time::Duration::ZERO, max)?;
        return Ok(std::time::Duration::ZERO);
    }
    duration::parse_within(field, value, std::time::Duration::from_secs(1), max)
}

/// The longest soak: 30 days.
pub const SOAK_MAX: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

fn amount(field: &str, text: &str) -> Result<Amount, String> {
    match Amount::parse(field, text)? {
        Amount::Percent(p) if p > 100 => Err(format!("{field}: {text} is more than 100%")),
        a => Ok(a),
    }
}

fn time(text: &Option<String>) -> Option<DateTime<Utc>> {
    text.as_deref()?.parse().ok()
}

/// Whether approvals may start at `now`, and when that answer next changes.
fn window_at(read: &Read, now: DateTime<Utc>) -> (bool, Option<DateTime<Utc>>) {
    if let Some(b) = read.blackouts.iter().find(|b| b.start <= now && now < b.end) {
        return (false, Some(b.end));
    }
    let next_blackout = read.blackouts.iter().map(|b| b.start).filter(|s| *s > now).min();
    let Some(schedule) = &read.window else {
        return (true, next_blackout);
    };
    let state = schedule.at(now);
    let boundary = [state.next_boundary(), next_blackout].into_iter().flatten().min();
    (state.current.is_some(), boundary)
}

/// Whether approvals may start at `now`: in the window, and (FOTA with SkipBusy) while at
/// least `minMaintenance` of it is left, since an update takes 10-15 minutes.
fn may_approve(read: &Read, now: DateTime<Utc>) -> bool {
    let (open, _) = window_at(read, now);
    let left_enough = match (&read.skip_busy, &read.window) {
        (Some(skip), Some(schedule)) => schedule
            .at(now)
            .current
            .is_none_or(|w| now + skip.min_maintenance <= w.end),
        _ => true,
    };
    open && left_enough
}

/// The records of the waves, by name (a wave renamed starts afresh).
fn records(spec: &UpdateRolloutSpec, previous: &UpdateRolloutStatus) -> Vec<WaveRecord> {
    spec.waves
        .iter()
        .map(|w| {
            previous
                .waves
                .iter()
                .find(|s| s.name == w.name)
                .map(|s| WaveRecord {
                    started_at: time(&s.started_at),
                    completed_at: time(&s.completed_at),
                    promoted: s.promoted_at.is_some(),
                    accepted_failures: usize::try_from(s.accepted_failures).unwrap_or_default(),
                })
                .unwrap_or_default()
        })
        .collect()
}

/// The recorded approvals, with each one not confirmed yet settled where the cloud tells:
/// the group's TaskId moved on (it was accepted), or its task list shows it (accepted; the
/// list of groups was older than the answer). One whose task list was read and does not show
/// it, while the TaskId is still the one it was sent with, was not accepted: it is dropped,
/// so the group is approved again (and that write is planned again on a fresh read first).
fn settle_approvals(
    previous: &[GroupApproval],
    groups: &[AppInstanceGroup],
    tasks: &BTreeMap<String, Vec<OtaTask>>,
) -> Vec<GroupApproval> {
    previous
        .iter()
        .filter_map(|a| {
            if a.confirmed {
                return Some(a.clone());
            }
            let moved_on = groups
                .iter()
                .find(|g| g.app_instance_group_id == a.app_instance_group_id)
                .is_some_and(|g| g.ota_info.task_id != a.task_id);
            let listed = tasks.get(&a.app_instance_group_id).map(|list| {
                list.iter().any(|t| {
                    t.ota_version == a.version
                        && t.task_start_time.parse::<DateTime<Utc>>().ok() == a.start_time.parse().ok()
                })
            });
            match (moved_on, listed) {
                (true, _) | (_, Some(true)) => Some(GroupApproval {
                    confirmed: true,
                    ..a.clone()
                }),
                (false, Some(false)) => None,
                // Not known yet: kept (it counts as the group's approval) until the list is read.
                (false, None) => Some(a.clone()),
            }
        })
        .collect()
}

/// The recorded ApproveFotaUpdate calls, with each one not confirmed yet settled by the
/// computer's state: updating, on the pinned version, or failed shows it was accepted; a
/// computer read that shows none of these was not (the call failed or never went): the
/// record is dropped, so the computer is approved again once it is free.
fn settle_desktop_approvals(
    previous: &[DesktopApproval],
    infos: &BTreeMap<String, DesktopInfo>,
    pinned: Option<&str>,
) -> Vec<DesktopApproval> {
    previous
        .iter()
        .filter_map(|a| {
            if a.confirmed {
                return Some(a.clone());
            }
            match infos.get(&a.desktop_id) {
                // Not read: kept (it counts as the computer's approval) until it is.
                None => Some(a.clone()),
                Some(i)
                    if i.updating()
                        || Some(i.current_app_version.as_str()) == pinned
                        || i.desktop_status == "Failed" =>
                {
                    Some(DesktopApproval {
                        confirmed: true,
                        ..a.clone()
                    })
                }
                Some(_) => None,
            }
        })
        .collect()
}

/// Whether the rollout completed its version for the spec of `generation`: then it stays
/// Completed, and the cloud need not be read for it.
pub fn completed(previous: &UpdateRolloutStatus, generation: i64) -> bool {
    previous.phase == Some(RolloutPhase::Completed)
        && previous.common.observed_generation == Some(generation)
        && previous.pinned_version.is_some()
}

/// The groups whose task lists an OTA plan needs: every group approved in the wave that acts
/// now and every approval not confirmed yet (how their upgrades go), and, on the fresh read
/// before approving, the groups about to be approved (whether someone approved them already).
pub fn needs_tasks(input: &RolloutInput<'_>, ctx: &PlanContext, fresh: bool) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(read) = read(input.spec) else { return out };
    let RolloutCloud::Ota { groups, .. } = input.cloud else {
        return out;
    };
    let none = BTreeMap::new();
    let status = UpdateRolloutStatus {
        approvals: settle_approvals(&input.previous.approvals, groups, &none),
        ..input.previous.clone()
    };
    let unread = RolloutInput {
        cloud: RolloutCloud::Ota { groups, tasks: &none },
        ..*input
    };
    let first = run(&read, &unread, &status, &records(input.spec, input.previous), ctx);
    out.extend(
        status
            .approvals
            .iter()
            .filter(|a| !a.confirmed)
            .map(|a| a.app_instance_group_id.clone()),
    );
    if let Some(current) = first.current {
        let members: BTreeSet<&str> = groups
            .iter()
            .filter(|g| read.waves.iter().position(|w| w.selects(g)) == Some(current))
            .map(|g| g.app_instance_group_id.as_str())
            .collect();
        out.extend(
            status
                .approvals
                .iter()
                .filter(|a| members.contains(a.app_instance_group_id.as_str()))
                .map(|a| a.app_instance_group_id.clone()),
        );
    }
    if fresh {
        out.extend(first.approve.iter().filter_map(|a| match a {
            RolloutAction::ApproveGroup(a) => Some(a.group_id.clone()),
            _ => None,
        }));
    }
    out
}

/// The computers a FOTA plan reads by id: those of every wave up to `upto` (each in its first
/// wave) and every approval not confirmed yet. Without `upto`, up to the first wave whose
/// record does not show it done, soaked and (where manual) promoted; the wave that acts may
/// be a later one once these are read, and the caller reads on up to it. Returns the wave read
/// up to.
pub fn desktops_to_read(input: &RolloutInput<'_>, ctx: &PlanContext, upto: Option<usize>) -> (BTreeSet<String>, usize) {
    let mut out = BTreeSet::new();
    let Ok(read) = read(input.spec) else { return (out, 0) };
    let RolloutCloud::Fota { desktops, .. } = input.cloud else {
        return (out, 0);
    };
    let records = records(input.spec, input.previous);
    let upto = upto.unwrap_or_else(|| {
        read.waves
            .iter()
            .zip(&records)
            .position(|(w, r)| {
                let passed = r.completed_at.is_some_and(|at| ctx.now >= at + w.soak)
                    && (w.promotion == Promotion::Auto || r.promoted);
                !passed
            })
            .unwrap_or(read.waves.len().saturating_sub(1))
    });
    out.extend(
        desktops
            .iter()
            .filter(|d| {
                read.waves
                    .iter()
                    .position(|w| w.selects_desktop(d))
                    .is_some_and(|i| i <= upto)
            })
            .map(|d| d.desktop_id.clone()),
    );
    out.extend(
        input
            .previous
            .desktop_approvals
            .iter()
            .filter(|a| !a.confirmed)
            .map(|a| a.desktop_id.clone()),
    );
    (out, upto)
}

/// Whether any wave of `spec` selects the delivery group `g` (for conflicts).
pub fn selects(spec: &UpdateRolloutSpec, g: &AppInstanceGroup) -> bool {
    spec.ota.is_some()
        && spec
            .waves
            .iter()
            .any(|w| super::rollout::selector_takes(&w.selector, g))
}

/// Whether any wave of `spec` selects the cloud computer `d` (for conflicts).
pub fn selects_desktop(spec: &UpdateRolloutSpec, d: &Desktop) -> bool {
    spec.fota.is_some()
        && spec
            .waves
            .iter()
            .any(|w| super::rollout::selector_takes_desktop(&w.selector, d))
}

/// The version a FOTA rollout pins when it has none yet: `spec.fota.appVersion`, else the
/// version of the region's newest task.
fn fota_version<'a>(spec: &'a UpdateRolloutSpec, tasks: &'a [FotaTask]) -> Option<&'a str> {
    let f = spec.fota.as_ref()?;
    f.app_version.as_deref().or_else(|| {
        tasks
            .iter()
            .max_by(|a, b| a.publish_time.cmp(&b.publish_time))
            .map(|t| t.app_version.as_str())
    })
}

/// The image-update task a FOTA rollout holds: the one of its pinned version (or of the
/// version it would pin now).
pub fn fota_task<'a>(
    spec: &UpdateRolloutSpec,
    previous: &UpdateRolloutStatus,
    tasks: &'a [FotaTask],
) -> Option<&'a FotaTask> {
    let version = previous
        .pinned_version
        .clone()
        .or_else(|| fota_version(spec, tasks).map(str::to_string))?;
    tasks.iter().find(|t| t.app_version == version)
}

fn run(
    read: &Read,
    input: &RolloutInput<'_>,
    status: &UpdateRolloutStatus,
    records: &[WaveRecord],
    ctx: &PlanContext,
) -> RolloutPlan<RolloutAction> {
    let approved: Vec<Approved> = match input.cloud {
        RolloutCloud::Ota { .. } => status
            .approvals
            .iter()
            .filter_map(|a| {
                Some(Approved {
                    target: a.app_instance_group_id.clone(),
                    version: a.version.clone(),
                    start_time: a.start_time.parse().ok()?,
                })
            })
            .collect(),
        RolloutCloud::Fota { .. } => status
            .desktop_approvals
            .iter()
            .filter_map(|a| {
                Some(Approved {
                    target: a.desktop_id.clone(),
                    version: status.pinned_version.clone().unwrap_or_default(),
                    start_time: a.approved_at.parse().ok()?,
                })
            })
            .collect(),
    };
    let basis = RolloutBasis {
        waves: &read.waves,
        policy: &read.policy,
        approved: &approved,
        pinned: status.pinned_version.as_deref(),
        records,
        paused_by_failures: status.paused_by_failures,
        paused: input.spec.paused,
        in_window: may_approve(read, ctx.now),
        now: ctx.now,
    };
    match input.cloud {
        RolloutCloud::Ota { groups, tasks } => plan_ota(&OtaRolloutInput {
            basis,
            groups,
            tasks,
            lead: read.start_delay,
        })
        .map(RolloutAction::ApproveGroup),
        RolloutCloud::Fota {
            desktops, infos, tasks, ..
        } => plan_fota(&FotaRolloutInput {
            basis,
            desktops,
            infos,
            version: fota_version(input.spec, tasks),
        })
        .map(RolloutAction::ApproveDesktop),
    }
}

/// What the targets are called, for people.
fn noun(input: &RolloutInput<'_>) -> &'static str {
    match input.cloud {
        RolloutCloud::Ota { .. } => "group(s)",
        RolloutCloud::Fota { .. } => "computer(s)",
    }
}

pub fn plan(input: &RolloutInput<'_>, ctx: &PlanContext) -> Outcome<RolloutAction, UpdateRolloutStatus> {
    let mut status = input.previous.clone();
    let outcome = Outcome::settled;
    let read = match read(input.spec) {
        Ok(r) => r,
        Err(msg) => return outcome(status, Verdict::not_ready(Reason::InvalidSpec, msg), None),
    };
    let noun = noun(input);
    // A rollout that completed its version for this spec stays complete: what happens to its
    // targets afterwards (a newer version installed by other means) is not its failure.
    if completed(input.previous, ctx.generation)
        && let Some(version) = &input.previous.pinned_version
    {
        let msg = format!(
            "version {version}: every wave is done; {} {noun} succeeded{}",
            input.previous.progress.as_deref().unwrap_or("-").replace('/', " of "),
            failed_note(&input.previous.failures)
        );
        return outcome(status, Verdict::ready(Reason::Completed, msg), None);
    }
    status.conflicts = input.conflicts.to_vec();
    if let RolloutCloud::Fota { tasks, task_rivals, .. } = input.cloud
        && !task_rivals.is_empty()
    {
        status.conflicts = task_rivals.to_vec();
        let task = fota_task(input.spec, input.previous, tasks);
        status.fota_task_uid = task.map(|t| t.task_uid.clone());
        let task = task
            .map(|t| format!("{} ({})", t.task_uid, t.app_version))
            .unwrap_or_default();
        let msg = format!(
            "the image-update task {task} is pushed to users by older resources: {}; they act, and this rollout \
             holds and approves nothing while they do",
            task_rivals.join(", ")
        );
        return outcome(status, Verdict::not_ready(Reason::Conflict, msg), None);
    }
    match input.cloud {
        RolloutCloud::Ota { groups, tasks } => {
            status.approvals = settle_approvals(&input.previous.approvals, groups, tasks);
        }
        RolloutCloud::Fota { infos, tasks, .. } => {
            let pinned = input
                .previous
                .pinned_version
                .as_deref()
                .or_else(|| fota_version(input.spec, tasks));
            status.desktop_approvals = settle_desktop_approvals(&input.previous.desktop_approvals, infos, pinned);
        }
    }
    let mut records = records(input.spec, input.previous);
    let mut plan = run(&read, input, &status, &records, ctx);
    // What a person asked for: promote the wave waiting for it; resume after failures.
    let resume = input
        .resume
        .filter(|r| Some(*r) != input.previous.resumed_with.as_deref());
    if let Some(r) = resume {
        status.resumed_with = Some(r.to_string());
        status.paused_by_failures = false;
        for (record, wave) in records.iter_mut().zip(&plan.waves) {
            record.accepted_failures = wave.failed;
        }
    }
    if let Some(current) = plan.current
        && matches!(plan.phase, Phase::Soaking | Phase::WaitingForPromotion)
        && input.promote == Some(read.waves[current].name.as_str())
        && !records[current].promoted
    {
        records[current].promoted = true;
    }
    if resume.is_some()
        || records
            .iter()
            .zip(&plan.waves)
            .any(|(r, w)| r.promoted != w.record.promoted)
    {
        plan = run(&read, input, &status, &records, ctx);
    }
    for a in &plan.adopted {
        match input.cloud {
            RolloutCloud::Ota { .. } => status.approvals.push(GroupApproval {
                app_instance_group_id: a.target.clone(),
                version: a.version.clone(),
                task_id: String::new(),
                start_time: rfc3339(a.start_time),
                confirmed: true,
            }),
            RolloutCloud::Fota { .. } => status.desktop_approvals.push(DesktopApproval {
                desktop_id: a.target.clone(),
                approved_at: rfc3339(a.start_time),
                confirmed: true,
            }),
        }
    }
    status.pinned_version = plan.pinned.clone();
    status.paused_by_failures = plan.paused_by_failures;
    status.overlapping = plan.overlapping.clone();
    status.current_wave = plan.current.map(|i| read.waves[i].name.clone());
    status.waves = plan
        .waves
        .iter()
        .map(|w| {
            let promoted_at = input
                .previous
                .waves
                .iter()
                .find(|p| p.name == w.name)
                .and_then(|p| p.promoted_at.clone())
                .or_else(|| w.record.promoted.then(|| rfc3339(ctx.now)));
            wave_status(w, promoted_at)
        })
        .collect();
    let targets: usize = plan.waves.iter().map(|w| w.targets).sum();
    let succeeded: usize = plan.waves.iter().map(|w| w.succeeded).sum();
    status.progress = Some(format!("{succeeded}/{targets}"));
    status.failures = plan
        .failures
        .iter()
        .map(|f| TargetFailure {
            target: f.target.clone(),
            wave: f.wave.clone(),
            detail: f.detail.clone(),
        })
        .take(MAX_FAILURES_KEPT)
        .collect();
    status.phase = Some(match &plan.phase {
        Phase::WaitingForWindow => RolloutPhase::WaitingForWindow,
        Phase::Progressing => RolloutPhase::Progressing,
        Phase::Soaking => RolloutPhase::Soaking,
        Phase::WaitingForPromotion => RolloutPhase::WaitingForPromotion,
        Phase::Paused(_) => RolloutPhase::Paused,
        Phase::Completed => RolloutPhase::Completed,
    });
    status.paused_reason = match &plan.phase {
        Phase::Paused(why) => Some(why.clone()),
        _ => None,
    };
    if targets == 0 {
        status.phase = None;
        let what = match input.cloud {
            RolloutCloud::Ota { .. } => "delivery group",
            RolloutCloud::Fota { .. } => "cloud computer",
        };
        let msg = format!(
            "no {what} in {} matches a wave's selector{}",
            input.spec.region(),
            if input.conflicts.is_empty() {
                String::new()
            } else {
                format!(
                    " (besides those older resources act on: {})",
                    input.conflicts.join(", ")
                )
            }
        );
        let reason = if input.conflicts.is_empty() {
            Reason::NotFound
        } else {
            Reason::Conflict
        };
        return outcome(status, Verdict::not_ready(reason, msg), None);
    }
    let Some(version) = plan.pinned.clone() else {
        status.phase = None;
        let msg = match input.cloud {
            RolloutCloud::Ota { .. } => "no group of the waves offers a new version".to_string(),
            RolloutCloud::Fota { .. } => format!("no image-update task in {}", input.spec.region()),
        };
        return outcome(status, Verdict::ready(Reason::UpToDate, msg), None);
    };
    // FOTA: the task of the pinned version, held Pending while the rollout runs.
    let mut hold = None;
    if let RolloutCloud::Fota { tasks, .. } = input.cloud {
        if targets > MAX_FOTA_TARGETS {
            status.phase = None;
            let msg = format!(
                "spec.waves: the selectors take {targets} cloud computers, more than the {MAX_FOTA_TARGETS} \
                 one rollout records; split it into several rollouts"
            );
            return outcome(status, Verdict::not_ready(Reason::InvalidSpec, msg), None);
        }
        if plan.phase != Phase::Completed {
            let Some(task) = tasks.iter().find(|t| t.app_version == version) else {
                let msg = format!(
                    "no image-update task in {} offers version {version}{}",
                    input.spec.region(),
                    if input.previous.pinned_version.is_some() {
                        " (status.pinnedVersion)"
                    } else {
                        " (spec.fota.appVersion)"
                    }
                );
                return outcome(status, Verdict::not_ready(Reason::NotFound, msg), None);
            };
            status.fota_task_uid = Some(task.task_uid.clone());
            if task.push_state() == Some("Running") {
                let written_at: Option<DateTime<Utc>> = time(&input.previous.user_status_written_at);
                let look_after_write =
                    duration::latest_resync(ctx.resync).saturating_add(std::time::Duration::from_secs(1));
                let recently = written_at
                    .is_some_and(|at| ctx.now - at < chrono::Duration::from_std(look_after_write).unwrap_or_default());
                if recently {
                    // Set Pending and still pushed: the global switch pushes the update to
                    // every computer, and the rollout cannot pace what it does not hold.
                    let msg = format!(
                        "the global auto-update switch of {} keeps task {} pushed to every computer, so the \
                         rollout cannot pace it and approves nothing; turn the switch off in the console \
                         (Operations > Image Updates)",
                        input.spec.region(),
                        task.task_uid
                    );
                    return outcome(status, Verdict::not_ready(Reason::GlobalAutoUpdateEnabled, msg), None);
                }
                if !ctx.manages() {
                    let msg = format!(
                        "task {} has UserStatus Running; the rollout would hold it Pending. ObserveOnly, nothing written",
                        task.task_uid
                    );
                    return outcome(status, Verdict::not_ready(Reason::DriftDetected, msg), None);
                }
                hold = Some(task.task_uid.clone());
            }
        }
    }
    if let Some(task_uid) = hold {
        // The task first: approvals wait for the look that shows it Pending.
        status.user_status_written_at = Some(rfc3339(ctx.now));
        let msg = format!("setting UserStatus Pending on task {task_uid}, which the rollout holds");
        return Outcome {
            actions: vec![RolloutAction::HoldTask { task_uid }],
            intent: None,
            status,
            verdict: Verdict::not_ready(Reason::Progressing, msg),
            requeue_after: Some(VERIFY_AFTER),
        };
    }
    let fota = matches!(input.cloud, RolloutCloud::Fota { .. });
    let wave_name = status.current_wave.clone().unwrap_or_default();
    let (_, boundary) = window_at(&read, ctx.now);
    let current = plan.current.map(|i| &plan.waves[i]);
    let (verdict, requeue) = match &plan.phase {
        Phase::Completed => (
            Verdict::ready(
                Reason::Completed,
                format!(
                    "version {version}: every wave is done; {succeeded} of {targets} {noun} succeeded{}",
                    failed_note(&status.failures)
                ),
            ),
            None,
        ),
        Phase::Paused(why) if plan.paused_by_failures => (
            Verdict::not_ready(
                Reason::PausedByFailures,
                format!(
                    "version {version}: {why}; nothing more is approved until a person resumes the rollout \
                     (kubectl alicloud-ops resume){}",
                    failed_note(&status.failures)
                ),
            ),
            None,
        ),
        Phase::Paused(why) => (
            Verdict::not_ready(Reason::Paused, format!("version {version}: paused ({why})")),
            None,
        ),
        Phase::WaitingForWindow => (
            Verdict::ready(
                Reason::Scheduled,
                format!(
                    "version {version}: wave {wave_name} waits for the window{}",
                    boundary
                        .map(|b| format!(" (next change {})", rfc3339(b)))
                        .unwrap_or_default()
                ),
            ),
            boundary.map(|b| until(ctx.now, b)),
        ),
        Phase::Soaking => {
            let soak_until = current.and_then(|w| w.soak_until);
            (
                Verdict::not_ready(
                    Reason::Soaking,
                    format!(
                        "version {version}: wave {wave_name} is done and soaks until {}",
                        soak_until.map(rfc3339).unwrap_or_default()
                    ),
                ),
                soak_until.map(|t| until(ctx.now, t)),
            )
        }
        Phase::WaitingForPromotion => (
            Verdict::not_ready(
                Reason::WaitingForPromotion,
                format!(
                    "version {version}: wave {wave_name} is done; the next wave waits for a person to promote it \
                     (kubectl alicloud-ops promote, or the annotation {PROMOTE}={wave_name})"
                ),
            ),
            None,
        ),
        Phase::Progressing => {
            let w = current.cloned().unwrap_or_default();
            let mut msg = format!(
                "version {version}: wave {wave_name}: {} updating, {} pending, {} succeeded, {} failed of {}",
                w.updating, w.pending, w.succeeded, w.failed, w.targets
            );
            let waiting = w.updating == 0 && plan.approve.is_empty();
            if fota && w.busy > 0 {
                msg.push_str(&format!(
                    "; {} wait for their users to leave (or to be Running): the cloud updates only a computer \
                     nobody is connected to",
                    w.busy
                ));
            } else if waiting && !fota {
                msg.push_str(&format!(
                    "; the pending groups offer another version than {version} and wait"
                ));
            }
            let requeue = if !plan.approve.is_empty() {
                Some(VERIFY_AFTER)
            } else if fota && (w.updating > 0 || w.busy > 0 || w.pending > 0) {
                Some(match (&read.skip_busy, w.updating) {
                    (Some(skip), 0) => skip.retry_every,
                    _ => WATCH_DESKTOPS,
                })
            } else if w.updating > 0 {
                Some(WATCH_UPDATES)
            } else {
                None
            };
            (Verdict::not_ready(Reason::Progressing, msg), requeue)
        }
    };
    // Targets an older resource acts on are left to it: say so whatever the phase.
    let verdict = if status.conflicts.is_empty() {
        verdict
    } else {
        Verdict {
            message: format!(
                "{}; {noun} also acted on by older resources are left to them: {}",
                verdict.message,
                status.conflicts.join(", ")
            ),
            ..verdict
        }
    };
    let boundary_requeue = match plan.phase {
        Phase::Progressing => boundary.map(|b| until(ctx.now, b)),
        _ => None,
    };
    let requeue = super::min_requeue(requeue, boundary_requeue);
    if plan.approve.is_empty() {
        return outcome(status, verdict, requeue);
    }
    let names: Vec<&str> = plan
        .approve
        .iter()
        .filter_map(|a| match a {
            RolloutAction::ApproveGroup(a) => Some(a.group_id.as_str()),
            RolloutAction::ApproveDesktop(a) => Some(a.desktop_id.as_str()),
            RolloutAction::HoldTask { .. } => None,
        })
        .collect();
    if !ctx.manages() {
        let msg = format!(
            "version {version}: would approve {}; ObserveOnly, nothing written",
            names.join(", ")
        );
        return outcome(status, Verdict::not_ready(Reason::DriftDetected, msg), None);
    }
    // The targets approved now count as updating in the status written after the approvals.
    if let Some(w) = plan.current.and_then(|i| status.waves.get_mut(i)) {
        let n = i32::try_from(plan.approve.len()).unwrap_or(i32::MAX);
        w.pending = w.pending.saturating_sub(n).max(0);
        w.updating = w.updating.saturating_add(n);
    }
    for a in &plan.approve {
        match a {
            RolloutAction::ApproveGroup(a) => status.approvals.push(GroupApproval {
                app_instance_group_id: a.group_id.clone(),
                version: a.version.clone(),
                task_id: a.task_id.clone(),
                start_time: rfc3339(a.start_time),
                confirmed: false,
            }),
            RolloutAction::ApproveDesktop(a) => status.desktop_approvals.push(DesktopApproval {
                desktop_id: a.desktop_id.clone(),
                approved_at: rfc3339(ctx.now),
                confirmed: false,
            }),
            RolloutAction::HoldTask { .. } => {}
        }
    }
    Outcome {
        actions: plan.approve,
        intent: Some(status.clone()),
        status,
        verdict,
        requeue_after: requeue,
    }
}

fn failed_note(failures: &[TargetFailure]) -> String {
    match failures.len() {
        0 => String::new(),
        n => format!("; {n} failed (status.failures)"),
    }
}

fn wave_status(w: &super::rollout::WaveProgress, promoted_at: Option<String>) -> WaveStatus {
    let n = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
    WaveStatus {
        name: w.name.clone(),
        targets: n(w.targets),
        pending: n(w.pending),
        busy: n(w.busy),
        updating: n(w.updating),
        succeeded: n(w.succeeded),
        failed: n(w.failed),
        accepted_failures: n(w.record.accepted_failures),
        started_at: w.record.started_at.map(rfc3339),
        completed_at: w.record.completed_at.map(rfc3339),
        soak_until: w.soak_until.map(rfc3339),
        promoted_at,
    }
}

/// Notes the cloud accepted `action`.
pub fn confirm(status: &mut UpdateRolloutStatus, action: &RolloutAction) {
    match action {
        RolloutAction::ApproveGroup(action) => {
            if let Some(a) = status
                .approvals
                .iter_mut()
                .rev()
                .find(|a| a.app_instance_group_id == action.group_id && a.task_id == action.task_id)
            {
                a.confirmed = true;
            }
        }
        RolloutAction::ApproveDesktop(action) => {
            if let Some(a) = status
                .desktop_approvals
                .iter_mut()
                .rev()
                .find(|a| a.desktop_id == action.desktop_id)
            {
                a.confirmed = true;
            }
        }
        RolloutAction::HoldTask { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ManagementPolicy;
    use crate::cloud::ops::ecd::Tag;

    /// A FOTA rollout whose selectors take more computers than its status can record is
    /// refused, naming the field, before anything is held or approved.
    #[test]
    fn a_fota_rollout_over_too_many_computers_is_refused_naming_the_field() {
        let spec: UpdateRolloutSpec = serde_json::from_value(serde_json::json!({
            "fota": {"regionId": "cn-hangzhou"},
            "waves": [{"name": "all", "selector": {"tags": {"ring": "all"}}}]
        }))
        .unwrap();
        let desktops: Vec<Desktop> = (0..=MAX_FOTA_TARGETS)
            .map(|i| Desktop {
                desktop_id: format!("ecd-{i}"),
                desktop_status: "Running".into(),
                tags: vec![Tag {
                    key: "ring".into(),
                    value: "all".into(),
                }],
                ..Default::default()
            })
            .collect();
        let tasks = [FotaTask {
            task_uid: "aot-1".into(),
            app_version: "2.3.0".into(),
            status: "Running".into(),
            publish_time: "2026-12-01T00:00:00Z".into(),
            ..Default::default()
        }];
        let ctx = PlanContext {
            now: "2026-12-07T00:00:00Z".parse().unwrap(),
            generation: 1,
            policy: ManagementPolicy::Manage,
            resync: std::time::Duration::from_secs(600),
            request: None,
        };
        let out = plan(
            &RolloutInput {
                spec: &spec,
                cloud: RolloutCloud::Fota {
                    desktops: &desktops,
                    infos: &BTreeMap::new(),
                    tasks: &tasks,
                    task_rivals: &[],
                },
                previous: &UpdateRolloutStatus::default(),
                promote: None,
                resume: None,
                conflicts: &[],
            },
            &ctx,
        );
        assert_eq!(out.verdict.reason, Reason::InvalidSpec, "{}", out.verdict.message);
        assert!(out.verdict.message.contains("spec.waves"), "{}", out.verdict.message);
        assert!(out.actions.is_empty(), "nothing held or approved: {:?}", out.actions);
    }
}
