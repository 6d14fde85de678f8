//! UpdateRollout: the spec and status around the wave core ([`super::rollout`]): what the
//! record says was approved, whether approvals may start now, what a person asked for
//! (promote, resume), and the status and verdict that follow.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::rollout::{
    Amount, Approve, Approved, FailurePolicy, OnFailure, OtaRolloutInput, OtaRolloutPlan, Phase, Promotion, Wave,
    WaveRecord, plan_ota,
};
use super::schedule::{Schedule, Window, blackouts};
use super::{Outcome, PlanContext, Reason, VERIFY_AFTER, Verdict, duration, rfc3339, until};
use crate::api::rollout::{
    FailureAction, GroupApproval, RolloutPhase, TargetFailure, UpdateRolloutSpec, UpdateRolloutStatus, WaveStatus,
};
use crate::cloud::ops::appstream::{AppInstanceGroup, OtaTask};

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
/// The failures kept in status.
pub const MAX_FAILURES_KEPT: usize = 50;

pub struct RolloutInput<'a> {
    pub spec: &'a UpdateRolloutSpec,
    /// The region's delivery groups, less those an older resource approves.
    pub groups: &'a [AppInstanceGroup],
    /// The task lists (ListOtaTask) read this time, by group.
    pub tasks: &'a BTreeMap<String, Vec<OtaTask>>,
    pub previous: &'a UpdateRolloutStatus,
    /// The `ops.alicloud.dev/promote` annotation.
    pub promote: Option<&'a str>,
    /// The `ops.alicloud.dev/resume` annotation.
    pub resume: Option<&'a str>,
    /// Older resources that approve some of the same groups (named for people).
    pub conflicts: &'a [String],
}

/// The spec, read once: every field that can be wrong is named.
struct Read {
    waves: Vec<Wave>,
    policy: FailurePolicy,
    window: Option<Schedule>,
    blackouts: Vec<Window>,
    start_delay: chrono::Duration,
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
            group_ids: w.selector.app_instance_group_ids.iter().map(|g| g.0.clone()).collect(),
            tags: w.selector.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
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

/// Whether the rollout completed its version for the spec of `generation`: then it stays
/// Completed, and the cloud need not be read for it.
pub fn completed(previous: &UpdateRolloutStatus, generation: i64) -> bool {
    previous.phase == Some(RolloutPhase::Completed)
        && previous.common.observed_generation == Some(generation)
        && previous.pinned_version.is_some()
}

/// The groups whose task lists this plan needs: every group approved in the wave that acts
/// now and every approval not confirmed yet (how their upgrades go), and, on the fresh read
/// before approving, the groups about to be approved (whether someone approved them already).
pub fn needs_tasks(input: &RolloutInput<'_>, ctx: &PlanContext, fresh: bool) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(read) = read(input.spec) else { return out };
    let none = BTreeMap::new();
    let approvals = settle_approvals(&input.previous.approvals, input.groups, &none);
    let first = run(
        &read,
        input,
        &approvals,
        &records(input.spec, input.previous),
        &none,
        ctx,
    );
    out.extend(
        approvals
            .iter()
            .filter(|a| !a.confirmed)
            .map(|a| a.app_instance_group_id.clone()),
    );
    if let Some(current) = first.current {
        let members = wave_members(&read.waves, input.groups, current);
        out.extend(
            approvals
                .iter()
                .filter(|a| members.contains(&a.app_instance_group_id))
                .map(|a| a.app_instance_group_id.clone()),
        );
    }
    if fresh {
        out.extend(first.approve.iter().map(|a| a.group_id.clone()));
    }
    out
}

/// Whether any wave of `spec` selects `g` (for conflicts between rollouts).
pub fn selects(spec: &UpdateRolloutSpec, g: &AppInstanceGroup) -> bool {
    spec.waves.iter().any(|w| {
        let ids: Vec<&str> = w.selector.app_instance_group_ids.iter().map(|i| i.0.as_str()).collect();
        let tags: Vec<(&str, &str)> = w.selector.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        super::rollout::selector_takes(&ids, &tags, g)
    })
}

/// The ids of the groups that belong to wave `index` (each group to its first wave).
fn wave_members(waves: &[Wave], groups: &[AppInstanceGroup], index: usize) -> BTreeSet<String> {
    groups
        .iter()
        .filter(|g| waves.iter().position(|w| w.selects(g)) == Some(index))
        .map(|g| g.app_instance_group_id.clone())
        .collect()
}

fn run(
    read: &Read,
    input: &RolloutInput<'_>,
    approvals: &[GroupApproval],
    records: &[WaveRecord],
    tasks: &BTreeMap<String, Vec<OtaTask>>,
    ctx: &PlanContext,
) -> OtaRolloutPlan {
    let approved: Vec<Approved> = approvals
        .iter()
        .filter_map(|a| {
            Some(Approved {
                group_id: a.app_instance_group_id.clone(),
                version: a.version.clone(),
                start_time: a.start_time.parse().ok()?,
            })
        })
        .collect();
    let (in_window, _) = window_at(read, ctx.now);
    plan_ota(&OtaRolloutInput {
        waves: &read.waves,
        policy: &read.policy,
        groups: input.groups,
        tasks,
        approved: &approved,
        pinned: input.previous.pinned_version.as_deref(),
        records,
        paused_by_failures: input.previous.paused_by_failures,
        paused: input.spec.paused,
        in_window,
        now: ctx.now,
        lead: read.start_delay,
    })
}

pub fn plan(input: &RolloutInput<'_>, ctx: &PlanContext) -> Outcome<Approve, UpdateRolloutStatus> {
    let mut status = input.previous.clone();
    let outcome = Outcome::settled;
    let read = match read(input.spec) {
        Ok(r) => r,
        Err(msg) => return outcome(status, Verdict::not_ready(Reason::InvalidSpec, msg), None),
    };
    // A rollout that completed its version for this spec stays complete: what happens to its
    // groups afterwards (a newer version installed by other means) is not its failure.
    if completed(input.previous, ctx.generation)
        && let Some(version) = &input.previous.pinned_version
    {
        let msg = format!(
            "version {version}: every wave is done; {} group(s) succeeded{}",
            input.previous.progress.as_deref().unwrap_or("-").replace('/', " of "),
            failed_note(&input.previous.failures)
        );
        return outcome(status, Verdict::ready(Reason::Completed, msg), None);
    }
    status.conflicts = input.conflicts.to_vec();
    status.approvals = settle_approvals(&input.previous.approvals, input.groups, input.tasks);
    let mut records = records(input.spec, input.previous);
    let mut plan = run(&read, input, &status.approvals, &records, input.tasks, ctx);
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
        let paused_by_failures = status.paused_by_failures;
        let previous = UpdateRolloutStatus {
            paused_by_failures,
            ..input.previous.clone()
        };
        plan = run(
            &read,
            &RolloutInput {
                previous: &previous,
                ..*input
            },
            &status.approvals,
            &records,
            input.tasks,
            ctx,
        );
    }
    for a in &plan.adopted {
        status.approvals.push(GroupApproval {
            app_instance_group_id: a.group_id.clone(),
            version: a.version.clone(),
            task_id: String::new(),
            start_time: rfc3339(a.start_time),
            confirmed: true,
        });
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
    let failures: Vec<TargetFailure> = plan
        .failures
        .iter()
        .map(|(target, detail)| TargetFailure {
            target: target.clone(),
            wave: wave_of(&read.waves, input.groups, target).unwrap_or_default(),
            detail: detail.clone(),
        })
        .take(MAX_FAILURES_KEPT)
        .collect();
    status.failures = failures;
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
        let msg = format!(
            "no delivery group in {} matches a wave's selector{}",
            input.spec.ota.biz_region_id,
            if input.conflicts.is_empty() {
                String::new()
            } else {
                format!(
                    " (besides those older resources approve: {})",
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
        return outcome(
            status,
            Verdict::ready(Reason::UpToDate, "no group of the waves offers a new version"),
            None,
        );
    };
    let wave_name = status.current_wave.clone().unwrap_or_default();
    let (_, boundary) = window_at(&read, ctx.now);
    let current = plan.current.map(|i| &plan.waves[i]);
    let (verdict, requeue) = match &plan.phase {
        Phase::Completed => (
            Verdict::ready(
                Reason::Completed,
                format!(
                    "version {version}: every wave is done; {succeeded} of {targets} group(s) succeeded{}",
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
            let msg = format!(
                "version {version}: wave {wave_name}: {} updating, {} pending, {} succeeded, {} failed of {}",
                w.updating, w.pending, w.succeeded, w.failed, w.targets
            );
            let waiting_for_version = w.updating == 0 && plan.approve.is_empty();
            let msg = if waiting_for_version {
                format!("{msg}; the pending groups offer another version than {version} and wait")
            } else {
                msg
            };
            let requeue = if !plan.approve.is_empty() {
                Some(VERIFY_AFTER)
            } else if w.updating > 0 {
                Some(WATCH_UPDATES)
            } else {
                None
            };
            (Verdict::not_ready(Reason::Progressing, msg), requeue)
        }
    };
    // Groups an older resource approves are left to it: say so whatever the phase.
    let verdict = if status.conflicts.is_empty() {
        verdict
    } else {
        Verdict {
            message: format!(
                "{}; groups also approved by older resources are left to them: {}",
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
    if !ctx.manages() {
        let msg = format!(
            "version {version}: would approve {}; ObserveOnly, nothing written",
            plan.approve
                .iter()
                .map(|a| a.group_id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return outcome(status, Verdict::not_ready(Reason::DriftDetected, msg), None);
    }
    // The groups approved now count as updating in the status written after the approvals.
    if let Some(w) = plan.current.and_then(|i| status.waves.get_mut(i)) {
        let n = i32::try_from(plan.approve.len()).unwrap_or(i32::MAX);
        w.pending = w.pending.saturating_sub(n).max(0);
        w.updating = w.updating.saturating_add(n);
    }
    for a in &plan.approve {
        status.approvals.push(GroupApproval {
            app_instance_group_id: a.group_id.clone(),
            version: a.version.clone(),
            task_id: a.task_id.clone(),
            start_time: rfc3339(a.start_time),
            confirmed: false,
        });
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

fn wave_of(waves: &[Wave], groups: &[AppInstanceGroup], id: &str) -> Option<String> {
    let g = groups.iter().find(|g| g.app_instance_group_id == id)?;
    waves.iter().find(|w| w.selects(g)).map(|w| w.name.clone())
}

fn wave_status(w: &super::rollout::WaveProgress, promoted_at: Option<String>) -> WaveStatus {
    let n = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
    WaveStatus {
        name: w.name.clone(),
        targets: n(w.targets),
        pending: n(w.pending),
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

/// Notes the cloud accepted the approval of `action`'s group.
pub fn confirm(status: &mut UpdateRolloutStatus, action: &Approve) {
    for a in status.approvals.iter_mut().rev() {
        if a.app_instance_group_id == action.group_id && a.task_id == action.task_id {
            a.confirmed = true;
            break;
        }
    }
}
