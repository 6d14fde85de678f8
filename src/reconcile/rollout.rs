//! Progressive rollouts, the decision core: which targets to approve now, wave by wave, and
//! what each wave and target has come to. Pure: no I/O. UpdateRollout
//! ([`super::update_rollout`]) carries it into Kubernetes.
//!
//! [`plan_waves`] is the wave machine, the same for every target: it is given each target's
//! state and decides the order, the budget, the soak, promotion and failure. What a target's
//! state is comes from the cloud's own fields, once per target:
//! - OTA delivery groups ([`plan_ota`]): `ListAppInstanceGroup` `Status`, `ResourceStatus`,
//!   `OtaInfo`; `ListOtaTask` `TaskDisplayStatus`. An approval cannot be taken back, and it
//!   approves whatever version the group offers now, so a group offered another version than
//!   the pinned one waits.
//! - FOTA cloud computers ([`plan_fota`]): `DescribeDesktopInfo` `CurrentAppVersion`,
//!   `DesktopStatus`, `ManagementFlag`, `ConnectionStatus`. The cloud updates only a computer
//!   that is Running with nobody connected: the others wait for their users.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::api::rollout::RolloutSelector;
use crate::cloud::ops::appstream::{AppInstanceGroup, OtaTask};
use crate::cloud::ops::ecd::{Desktop, DesktopInfo};

/// A number of a wave's targets, or a percentage of them (`3`, `25%`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Amount {
    Count(u32),
    Percent(u32),
}

impl Amount {
    /// Parses `3` or `25%`; the error names `field`.
    pub fn parse(field: &str, text: &str) -> Result<Amount, String> {
        let bad = || format!("{field}: {text:?} is neither a whole number nor a percentage such as 25%");
        match text.strip_suffix('%') {
            Some(p) => p.parse().map(Amount::Percent).map_err(|_| bad()),
            None => text.parse().map(Amount::Count).map_err(|_| bad()),
        }
    }

    /// How many of `total` this is, a percentage rounded down.
    pub fn of(self, total: usize) -> usize {
        match self {
            Amount::Count(n) => n as usize,
            Amount::Percent(p) => total * p as usize / 100,
        }
    }
}

/// How a wave that has succeeded and soaked gives way to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Promotion {
    Auto,
    /// Only once a person says so.
    Manual,
}

#[derive(Clone, Debug)]
pub struct Wave {
    pub name: String,
    pub selector: RolloutSelector,
    /// At most this many of the wave's groups approved and not yet done, at once (at least one).
    pub max_unavailable: Amount,
    /// How long a wave that has succeeded must stay healthy before the next starts.
    pub soak: chrono::Duration,
    pub promotion: Promotion,
}

impl Wave {
    /// Whether the wave's selector takes the delivery group `g`.
    pub fn selects(&self, g: &AppInstanceGroup) -> bool {
        selector_takes(&self.selector, g)
    }

    /// Whether the wave's selector takes the cloud computer `d`.
    pub fn selects_desktop(&self, d: &Desktop) -> bool {
        selector_takes_desktop(&self.selector, d)
    }
}

fn tag_pairs(s: &RolloutSelector) -> impl Iterator<Item = (&str, &str)> {
    s.tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

/// The one selector rule for delivery groups: a group is taken when it is one of
/// `appInstanceGroupIds` (if any are given) and carries every one of `tags`; a selector with
/// neither takes nothing.
pub fn selector_takes(s: &RolloutSelector, g: &AppInstanceGroup) -> bool {
    let ids = &s.app_instance_group_ids;
    (!ids.is_empty() || !s.tags.is_empty())
        && (ids.is_empty() || ids.iter().any(|i| i.0 == g.app_instance_group_id))
        && g.has_tags(tag_pairs(s))
}

/// The one selector rule for cloud computers: one of `desktopIds` (if any are given) and
/// meeting every other criterion as a maintenance window's selector does; a selector with no
/// criterion for computers takes nothing.
pub fn selector_takes_desktop(s: &RolloutSelector, d: &Desktop) -> bool {
    let any = !s.desktop_ids.is_empty()
        || s.office_site_id.is_some()
        || !s.tags.is_empty()
        || !s.desktop_group_ids.is_empty()
        || !s.policy_group_ids.is_empty()
        || !s.end_user_ids.is_empty();
    any && (s.desktop_ids.is_empty() || s.desktop_ids.iter().any(|i| i.0 == d.desktop_id))
        && super::maintenance::criteria_take(
            &super::maintenance::Criteria {
                office_site_id: s.office_site_id.as_deref(),
                tags: &s.tags,
                desktop_group_ids: &s.desktop_group_ids,
                policy_group_ids: &s.policy_group_ids,
                end_user_ids: &s.end_user_ids,
            },
            d,
        )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailure {
    /// Stop every further approval (the default).
    Pause,
    Continue,
}

#[derive(Clone, Debug)]
pub struct FailurePolicy {
    /// More failures than this in one wave are too many.
    pub max_failures: Amount,
    /// An approved group not done this long after its start time has failed.
    pub progress_deadline: chrono::Duration,
    /// Whether `PART_FINISHED` counts as success (its meaning is unconfirmed: by default no).
    pub part_finished_succeeds: bool,
    pub action: OnFailure,
}

/// An approval this rollout made (recorded before it was sent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approved {
    /// The delivery group or cloud computer.
    pub target: String,
    pub version: String,
    /// OTA: the approved start time. FOTA: when the approval was recorded.
    pub start_time: DateTime<Utc>,
}

/// What a wave has come to, as recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WaveRecord {
    pub started_at: Option<DateTime<Utc>>,
    /// When its last target was done (succeeded or failed within the budget).
    pub completed_at: Option<DateTime<Utc>>,
    pub promoted: bool,
    /// Failures a person accepted by resuming: they do not stop the wave again.
    pub accepted_failures: usize,
}

/// What one target has come to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetState {
    /// Not approved yet, and it may be now.
    Pending,
    /// Not approved yet, offering another version (or none): it waits.
    VersionMismatch,
    /// Not approved yet, and the cloud would not update it now (someone is connected, or it
    /// is not Running): it waits, and is looked at again.
    Busy,
    /// Not read this time (a FOTA computer of a wave not started): counted pending, never
    /// approved.
    NotRead,
    Updating,
    Succeeded,
    /// With the cloud's own words for it.
    Failed(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WaveProgress {
    pub name: String,
    pub targets: usize,
    pub pending: usize,
    /// Of the pending, those that wait because the cloud would not update them now.
    pub busy: usize,
    pub updating: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub record: WaveRecord,
    /// When the next wave may start, once this one has succeeded.
    pub soak_until: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    WaitingForWindow,
    Progressing,
    Soaking,
    WaitingForPromotion,
    Paused(String),
    Completed,
}

/// A target that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub target: String,
    pub wave: String,
    /// The cloud's own words.
    pub detail: String,
}

/// The wave machine's input: each wave's targets and their states, and what was recorded.
pub struct WavesInput<'a> {
    pub waves: &'a [Wave],
    pub policy: &'a FailurePolicy,
    /// Each wave's targets (each target in its first wave only), in the order they are to
    /// be approved.
    pub members: &'a [Vec<(String, TargetState)>],
    /// One per wave, in order (missing ones are empty).
    pub records: &'a [WaveRecord],
    /// Stopped by too many failures, as recorded: it stays stopped across restarts.
    pub paused_by_failures: bool,
    /// `spec.paused`.
    pub paused: bool,
    /// Whether approvals may start now (the window is open, outside blackouts).
    pub in_window: bool,
    pub now: DateTime<Utc>,
    /// What the targets are called, for people: `group(s)`, `computer(s)`.
    pub noun: &'static str,
}

/// What the wave machine decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WavesPlan {
    pub waves: Vec<WaveProgress>,
    /// The wave that acts now (the first not done), if any.
    pub current: Option<usize>,
    /// The targets to approve now: of the current wave, within its budget.
    pub approve: Vec<String>,
    pub phase: Phase,
    /// Targets that failed, with the cloud's words, in wave order.
    pub failures: Vec<Failure>,
    pub paused_by_failures: bool,
}

/// The wave machine: each wave's progress, the wave that acts now, and the targets it
/// approves now. Wave N+1 gets nothing before wave N has succeeded, soaked and, where manual,
/// been promoted; never more than `maxUnavailable` of a wave approved and not done at once;
/// a wave with more failures than `maxFailures` stops every further approval (or, with
/// `Continue`, counts as done).
pub fn plan_waves(input: &WavesInput<'_>) -> WavesPlan {
    let mut waves = Vec::new();
    let mut failures = Vec::new();
    let mut current = None;
    let mut approve = Vec::new();
    let mut paused_by_failures = input.paused_by_failures;
    let mut phase = None;
    let none = Vec::new();
    for (i, wave) in input.waves.iter().enumerate() {
        let members = input.members.get(i).unwrap_or(&none);
        let mut progress = WaveProgress {
            name: wave.name.clone(),
            targets: members.len(),
            record: input.records.get(i).cloned().unwrap_or_default(),
            ..Default::default()
        };
        let mut pending = Vec::new();
        for (id, state) in members {
            match state {
                TargetState::Pending => {
                    progress.pending += 1;
                    pending.push(id);
                }
                TargetState::VersionMismatch | TargetState::NotRead => progress.pending += 1,
                TargetState::Busy => {
                    progress.pending += 1;
                    progress.busy += 1;
                }
                TargetState::Updating => progress.updating += 1,
                TargetState::Succeeded => progress.succeeded += 1,
                TargetState::Failed(detail) => {
                    progress.failed += 1;
                    failures.push(Failure {
                        target: id.clone(),
                        wave: wave.name.clone(),
                        detail: detail.clone(),
                    });
                }
            }
        }
        let too_many =
            progress.failed > input.policy.max_failures.of(progress.targets) + progress.record.accepted_failures;
        let done = progress.pending == 0 && progress.updating == 0;
        if done && progress.record.completed_at.is_none() && (!too_many || input.policy.action == OnFailure::Continue) {
            progress.record.completed_at = Some(input.now);
        }
        progress.soak_until = progress.record.completed_at.map(|at| at + wave.soak);
        if current.is_none() {
            let stopped_here = too_many && input.policy.action == OnFailure::Pause;
            paused_by_failures |= stopped_here;
            let soaked = progress.soak_until.is_some_and(|until| input.now >= until);
            let promoted = wave.promotion == Promotion::Auto || progress.record.promoted;
            if !(done && soaked && promoted) || stopped_here {
                current = Some(i);
                phase = Some(if stopped_here {
                    Phase::Paused(format!(
                        "wave {} has {} failed {} of {}, more than maxFailures allows",
                        wave.name, progress.failed, input.noun, progress.targets
                    ))
                } else if paused_by_failures {
                    Phase::Paused("stopped by failures before; the failed targets are in status".into())
                } else if input.paused {
                    Phase::Paused("spec.paused".into())
                } else if done && !soaked {
                    Phase::Soaking
                } else if done {
                    Phase::WaitingForPromotion
                } else if !input.in_window && progress.updating == 0 {
                    Phase::WaitingForWindow
                } else {
                    Phase::Progressing
                });
                // Approvals: this wave only, within its budget, while nothing holds it.
                if matches!(phase, Some(Phase::Progressing)) && input.in_window {
                    let budget = wave.max_unavailable.of(progress.targets).max(1);
                    let room = budget.saturating_sub(progress.updating);
                    approve.extend(pending.iter().take(room).map(|id| (*id).clone()));
                    if !approve.is_empty() && progress.record.started_at.is_none() {
                        progress.record.started_at = Some(input.now);
                    }
                }
            }
        }
        waves.push(progress);
    }
    WavesPlan {
        waves,
        current,
        approve,
        phase: phase.unwrap_or(Phase::Completed),
        failures,
        paused_by_failures,
    }
}

/// Each target in its first wave: the members of each wave, and the targets more than one
/// wave selects.
fn first_waves<'t, T>(
    waves: &[Wave],
    targets: &'t [T],
    selects: impl Fn(&Wave, &T) -> bool,
    id: impl Fn(&T) -> &str,
) -> (Vec<Vec<&'t T>>, Vec<String>) {
    let mut members: Vec<Vec<&T>> = vec![Vec::new(); waves.len()];
    let mut overlapping = Vec::new();
    for t in targets {
        let mut chosen = waves.iter().enumerate().filter(|(_, w)| selects(w, t)).map(|(i, _)| i);
        if let Some(first) = chosen.next() {
            members[first].push(t);
            if chosen.next().is_some() {
                overlapping.push(id(t).to_string());
            }
        }
    }
    (members, overlapping)
}

/// What is common to both targets' inputs: the waves, the policy and what was recorded.
pub struct RolloutBasis<'a> {
    pub waves: &'a [Wave],
    pub policy: &'a FailurePolicy,
    pub approved: &'a [Approved],
    /// The version the rollout pinned, once it has.
    pub pinned: Option<&'a str>,
    /// One per wave, in order (missing ones are empty).
    pub records: &'a [WaveRecord],
    pub paused_by_failures: bool,
    pub paused: bool,
    pub in_window: bool,
    pub now: DateTime<Utc>,
}

impl RolloutBasis<'_> {
    fn plan_waves(&self, members: &[Vec<(String, TargetState)>], noun: &'static str) -> WavesPlan {
        plan_waves(&WavesInput {
            waves: self.waves,
            policy: self.policy,
            members,
            records: self.records,
            paused_by_failures: self.paused_by_failures,
            paused: self.paused,
            in_window: self.in_window,
            now: self.now,
            noun,
        })
    }

    fn approval(&self, target: &str) -> Option<&Approved> {
        self.approved.iter().rev().find(|a| a.target == target)
    }
}

/// A rollout's plan, for either target: the wave machine's, with the pinned version, the
/// approvals to send and those adopted from what the cloud shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutPlan<A> {
    pub pinned: Option<String>,
    pub waves: Vec<WaveProgress>,
    pub current: Option<usize>,
    pub approve: Vec<A>,
    pub phase: Phase,
    pub failures: Vec<Failure>,
    /// Targets several waves select: each belongs to its first.
    pub overlapping: Vec<String>,
    pub paused_by_failures: bool,
    /// Approvals of the pinned version that the cloud shows but the record did not hold
    /// (made before a restore that lost the status, or by someone else): they count as the
    /// target's one approval, and the kind records them.
    pub adopted: Vec<Approved>,
}

impl<A> RolloutPlan<A> {
    /// The same plan, with its approvals turned into `f`'s.
    pub fn map<B>(self, f: impl Fn(A) -> B) -> RolloutPlan<B> {
        RolloutPlan {
            pinned: self.pinned,
            waves: self.waves,
            current: self.current,
            approve: self.approve.into_iter().map(f).collect(),
            phase: self.phase,
            failures: self.failures,
            overlapping: self.overlapping,
            paused_by_failures: self.paused_by_failures,
            adopted: self.adopted,
        }
    }

    fn from_waves(
        plan: WavesPlan,
        pinned: Option<String>,
        overlapping: Vec<String>,
        adopted: Vec<Approved>,
    ) -> (Self, Vec<String>) {
        (
            RolloutPlan {
                pinned,
                waves: plan.waves,
                current: plan.current,
                approve: Vec::new(),
                phase: plan.phase,
                failures: plan.failures,
                overlapping,
                paused_by_failures: plan.paused_by_failures,
                adopted,
            },
            plan.approve,
        )
    }
}

pub struct OtaRolloutInput<'a> {
    pub basis: RolloutBasis<'a>,
    /// The region's delivery groups, as ListAppInstanceGroup answers.
    pub groups: &'a [AppInstanceGroup],
    /// The approved tasks (ListOtaTask) of the groups this rollout approved.
    pub tasks: &'a BTreeMap<String, Vec<OtaTask>>,
    /// How far ahead of now an approval's start time is set.
    pub lead: chrono::Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approve {
    pub group_id: String,
    /// The group's current `OtaInfo.TaskId`: what ApproveOtaTask takes.
    pub task_id: String,
    pub version: String,
    pub start_time: DateTime<Utc>,
}

pub type OtaRolloutPlan = RolloutPlan<Approve>;

/// The state of `g` for the pinned version `pinned`.
fn group_state(
    g: &AppInstanceGroup,
    pinned: Option<&str>,
    approval: Option<&Approved>,
    tasks: Option<&Vec<OtaTask>>,
    policy: &FailurePolicy,
    now: DateTime<Utc>,
) -> TargetState {
    let Some(pinned) = pinned else {
        return TargetState::VersionMismatch;
    };
    let healthy_on_pinned =
        g.ota_info.ota_version == pinned && g.status == "PUBLISHED" && g.resource_status == "AVAILABLE";
    let Some(a) = approval else {
        return if healthy_on_pinned {
            TargetState::Succeeded
        } else if g.ota_info.new_ota_version == pinned {
            TargetState::Pending
        } else {
            TargetState::VersionMismatch
        };
    };
    let task = tasks
        .into_iter()
        .flatten()
        .find(|t| t.ota_version == a.version && t.task_start_time.parse::<DateTime<Utc>>().ok() == Some(a.start_time));
    let shown = task.map(|t| t.task_display_status.as_str()).unwrap_or_default();
    let words = |what: &str| {
        format!(
            "{what} (TaskDisplayStatus {}, Status {}, ResourceStatus {})",
            if shown.is_empty() { "-" } else { shown },
            g.status,
            g.resource_status
        )
    };
    match shown {
        "FAILED" | "TERMINATED" => return TargetState::Failed(words("the upgrade failed")),
        "PART_FINISHED" if !policy.part_finished_succeeds => {
            return TargetState::Failed(words("the upgrade finished only in part"));
        }
        _ => {}
    }
    // The task's own word comes first (a PART_FINISHED group may show the version).
    if healthy_on_pinned {
        return TargetState::Succeeded;
    }
    if matches!(g.status.as_str(), "MAINTAIN_FAILED" | "FAILED") || g.resource_status == "UNAVAILABLE" {
        return TargetState::Failed(words("the group is unhealthy"));
    }
    if g.ota_info.ota_version == pinned {
        // The version is there, but the group is not published and available yet.
        return TargetState::Updating;
    }
    if now > a.start_time + policy.progress_deadline {
        return TargetState::Failed(words("not done by the progress deadline"));
    }
    TargetState::Updating
}

/// Plans an OTA rollout: the pinned version, each wave's progress, and the approvals due now.
pub fn plan_ota(input: &OtaRolloutInput<'_>) -> OtaRolloutPlan {
    let b = &input.basis;
    let (members, overlapping) = first_waves(b.waves, input.groups, Wave::selects, |g| {
        g.app_instance_group_id.as_str()
    });
    // The version is pinned once: what the first wave's first group offering one offers.
    let pinned = b.pinned.map(str::to_string).or_else(|| {
        members
            .iter()
            .flatten()
            .map(|g| g.ota_info.new_ota_version.clone())
            .find(|v| !v.is_empty())
    });
    // A group's approval: the recorded one, or one its task list shows for the pinned version.
    let mut adopted = Vec::new();
    let mut approval_of = |id: &str| -> Option<Approved> {
        if let Some(a) = b.approval(id) {
            return Some(a.clone());
        }
        let version = pinned.as_deref()?;
        let t = input.tasks.get(id)?.iter().find(|t| t.ota_version == version)?;
        let a = Approved {
            target: id.to_string(),
            version: version.to_string(),
            start_time: t.task_start_time.parse::<DateTime<Utc>>().ok()?,
        };
        adopted.push(a.clone());
        Some(a)
    };
    let states: Vec<Vec<(String, TargetState)>> = members
        .iter()
        .map(|groups| {
            groups
                .iter()
                .map(|g| {
                    let id = g.app_instance_group_id.as_str();
                    let approval = approval_of(id);
                    let state = group_state(
                        g,
                        pinned.as_deref(),
                        approval.as_ref(),
                        input.tasks.get(id),
                        b.policy,
                        b.now,
                    );
                    (id.to_string(), state)
                })
                .collect()
        })
        .collect();
    let (mut plan, approve) = RolloutPlan::from_waves(b.plan_waves(&states, "group(s)"), pinned, overlapping, adopted);
    plan.approve = approve
        .iter()
        .filter_map(|id| input.groups.iter().find(|g| &g.app_instance_group_id == id))
        .map(|g| Approve {
            group_id: g.app_instance_group_id.clone(),
            task_id: g.ota_info.task_id.clone(),
            version: plan.pinned.clone().unwrap_or_default(),
            start_time: b.now + input.lead,
        })
        .collect();
    plan
}

pub struct FotaRolloutInput<'a> {
    pub basis: RolloutBasis<'a>,
    /// The region's cloud computers, as DescribeDesktops lists them.
    pub desktops: &'a [Desktop],
    /// The computers read by id this time (DescribeDesktopInfo). One not read is counted
    /// pending and not approved.
    pub infos: &'a BTreeMap<String, DesktopInfo>,
    /// The version to pin when none is yet (`spec.fota.appVersion`, else the newest task's).
    pub version: Option<&'a str>,
}

/// ApproveFotaUpdate of one cloud computer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApproveDesktop {
    pub desktop_id: String,
    pub version: String,
}

pub type FotaRolloutPlan = RolloutPlan<ApproveDesktop>;

/// The state of a cloud computer for the pinned version, from DescribeDesktopInfo.
fn desktop_state(
    info: Option<&DesktopInfo>,
    pinned: &str,
    approval: Option<&Approved>,
    policy: &FailurePolicy,
    now: DateTime<Utc>,
) -> TargetState {
    let Some(d) = info else {
        return TargetState::NotRead;
    };
    let words = |what: &str| {
        format!(
            "{what} (DesktopStatus {}, CurrentAppVersion {}, ManagementFlag {})",
            d.desktop_status,
            if d.current_app_version.is_empty() {
                "-"
            } else {
                &d.current_app_version
            },
            if d.management_flag.is_empty() {
                "-".to_string()
            } else {
                d.management_flag.join(",")
            }
        )
    };
    if d.desktop_status == "Failed" && (approval.is_some() || d.current_app_version == pinned) {
        return TargetState::Failed(words("the computer failed"));
    }
    let on_pinned = d.current_app_version == pinned;
    if on_pinned && d.desktop_status == "Running" && !d.updating() {
        return TargetState::Succeeded;
    }
    match approval {
        Some(a) => {
            if now > a.start_time + policy.progress_deadline {
                TargetState::Failed(words("not done by the progress deadline"))
            } else {
                TargetState::Updating
            }
        }
        None if d.updating() => TargetState::Updating,
        // On the version but not Running, not Running, or someone is connected.
        None if on_pinned || d.desktop_status != "Running" || d.connection_status == "Connected" => TargetState::Busy,
        None => TargetState::Pending,
    }
}

/// Plans a FOTA rollout: each wave's progress from the computers' own state, and the
/// ApproveFotaUpdate calls due now (free computers, and busy ones once they are free).
pub fn plan_fota(input: &FotaRolloutInput<'_>) -> FotaRolloutPlan {
    let b = &input.basis;
    let (members, overlapping) = first_waves(b.waves, input.desktops, Wave::selects_desktop, |d| {
        d.desktop_id.as_str()
    });
    let pinned = b.pinned.or(input.version).map(str::to_string);
    let Some(version) = pinned.clone() else {
        let states: Vec<Vec<(String, TargetState)>> = members
            .iter()
            .map(|ds| {
                ds.iter()
                    .map(|d| (d.desktop_id.clone(), TargetState::VersionMismatch))
                    .collect()
            })
            .collect();
        return RolloutPlan::from_waves(b.plan_waves(&states, "computer(s)"), None, overlapping, Vec::new()).0;
    };
    let mut adopted = Vec::new();
    let states: Vec<Vec<(String, TargetState)>> = members
        .iter()
        .map(|ds| {
            ds.iter()
                .map(|d| {
                    let id = d.desktop_id.as_str();
                    let info = input.infos.get(id);
                    let mut approval = b.approval(id).cloned();
                    // Updating to the pinned version without a record: adopted, its deadline
                    // counted from now.
                    if approval.is_none() && info.is_some_and(|i| i.updating() && i.current_app_version != version) {
                        let a = Approved {
                            target: id.to_string(),
                            version: version.clone(),
                            start_time: b.now,
                        };
                        adopted.push(a.clone());
                        approval = Some(a);
                    }
                    (
                        id.to_string(),
                        desktop_state(info, &version, approval.as_ref(), b.policy, b.now),
                    )
                })
                .collect()
        })
        .collect();
    let (mut plan, approve) =
        RolloutPlan::from_waves(b.plan_waves(&states, "computer(s)"), pinned, overlapping, adopted);
    plan.approve = approve
        .into_iter()
        .map(|desktop_id| ApproveDesktop {
            desktop_id,
            version: version.clone(),
        })
        .collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::ops::appstream::{GroupTag, OtaInfo};

    const OLD: &str = "1.4.0";
    const NEW: &str = "1.5.0";

    fn at(minute: i64) -> DateTime<Utc> {
        "2026-12-01T02:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::minutes(minute)
    }

    fn group(id: &str, ring: &str) -> AppInstanceGroup {
        AppInstanceGroup {
            app_instance_group_id: id.into(),
            status: "PUBLISHED".into(),
            resource_status: "AVAILABLE".into(),
            ota_info: OtaInfo {
                ota_version: OLD.into(),
                new_ota_version: NEW.into(),
                task_id: format!("ota-{id}"),
            },
            tags: vec![GroupTag {
                key: "ring".into(),
                value: ring.into(),
                scope: String::new(),
            }],
            ..Default::default()
        }
    }

    fn wave(name: &str, ring: &str, max_unavailable: Amount, soak_minutes: i64, promotion: Promotion) -> Wave {
        Wave {
            name: name.into(),
            selector: RolloutSelector {
                tags: [("ring".to_string(), ring.to_string())].into(),
                ..Default::default()
            },
            max_unavailable,
            soak: chrono::Duration::minutes(soak_minutes),
            promotion,
        }
    }

    fn policy(max_failures: Amount, action: OnFailure) -> FailurePolicy {
        FailurePolicy {
            max_failures,
            progress_deadline: chrono::Duration::minutes(60),
            part_finished_succeeds: false,
            action,
        }
    }

    /// A world of groups and approvals that the tests move forward by hand, as the cloud would.
    struct World {
        groups: Vec<AppInstanceGroup>,
        tasks: BTreeMap<String, Vec<OtaTask>>,
        approved: Vec<Approved>,
        records: Vec<WaveRecord>,
        paused_by_failures: bool,
    }

    impl World {
        fn new(groups: Vec<AppInstanceGroup>) -> Self {
            World {
                groups,
                tasks: BTreeMap::new(),
                approved: Vec::new(),
                records: Vec::new(),
                paused_by_failures: false,
            }
        }

        fn plan(&mut self, waves: &[Wave], policy: &FailurePolicy, now: DateTime<Utc>) -> OtaRolloutPlan {
            let plan = plan_ota(&OtaRolloutInput {
                basis: RolloutBasis {
                    waves,
                    policy,
                    approved: &self.approved,
                    pinned: Some(NEW),
                    records: &self.records,
                    paused_by_failures: self.paused_by_failures,
                    paused: false,
                    in_window: true,
                    now,
                },
                groups: &self.groups,
                tasks: &self.tasks,
                lead: chrono::Duration::minutes(1),
            });
            // What the kind records, and what the cloud then shows.
            self.records = plan.waves.iter().map(|w| w.record.clone()).collect();
            self.paused_by_failures = plan.paused_by_failures;
            for a in &plan.approve {
                self.approved.push(Approved {
                    target: a.group_id.clone(),
                    version: a.version.clone(),
                    start_time: a.start_time,
                });
                self.tasks.entry(a.group_id.clone()).or_default().push(OtaTask {
                    task_id: a.task_id.clone(),
                    ota_version: a.version.clone(),
                    task_start_time: crate::reconcile::rfc3339(a.start_time),
                    task_display_status: "STANDBY".into(),
                });
            }
            plan
        }

        /// The upgrade of `id` ends with `outcome`, as the cloud shows it.
        fn end(&mut self, id: &str, outcome: &str) {
            let g = self.groups.iter_mut().find(|g| g.app_instance_group_id == id).unwrap();
            if outcome == "FINISHED" {
                g.ota_info.ota_version = NEW.into();
                g.ota_info.new_ota_version.clear();
            } else {
                g.status = "MAINTAIN_FAILED".into();
                g.resource_status = "UNAVAILABLE".into();
            }
            for t in self.tasks.get_mut(id).unwrap() {
                t.task_display_status = outcome.into();
            }
        }
    }

    fn approved(plan: &OtaRolloutPlan) -> Vec<&str> {
        plan.approve.iter().map(|a| a.group_id.as_str()).collect()
    }

    /// A canary first, then the rest two at a time: wave 2 gets nothing until wave 1 has
    /// succeeded and soaked, and never more than maxUnavailable of a wave at once.
    #[test]
    fn waves_go_in_order_within_their_budget_after_the_soak() {
        let mut w = World::new(vec![
            group("aig-1", "canary"),
            group("aig-2", "broad"),
            group("aig-3", "broad"),
            group("aig-4", "broad"),
        ]);
        let waves = [
            wave("canary", "canary", Amount::Count(1), 30, Promotion::Auto),
            wave("broad", "broad", Amount::Percent(50), 0, Promotion::Auto),
        ];
        let p = policy(Amount::Count(0), OnFailure::Pause);
        let first = w.plan(&waves, &p, at(0));
        assert_eq!(approved(&first), ["aig-1"]);
        assert_eq!(first.phase, Phase::Progressing);
        assert_eq!(first.waves[0].record.started_at, Some(at(0)));
        // While the canary updates, nothing else goes.
        assert!(w.plan(&waves, &p, at(5)).approve.is_empty());
        w.end("aig-1", "FINISHED");
        let soaking = w.plan(&waves, &p, at(10));
        assert_eq!(soaking.phase, Phase::Soaking);
        assert!(soaking.approve.is_empty(), "not before the soak");
        assert_eq!(soaking.waves[0].soak_until, Some(at(40)));
        // After the soak: 50 % of 3 groups, rounded down, is one at a time.
        let broad = w.plan(&waves, &p, at(40));
        assert_eq!(approved(&broad), ["aig-2"], "50 % of 3 groups is 1 at a time");
        assert!(w.plan(&waves, &p, at(41)).approve.is_empty());
        w.end("aig-2", "FINISHED");
        assert_eq!(approved(&w.plan(&waves, &p, at(50))), ["aig-3"]);
        w.end("aig-3", "FINISHED");
        assert_eq!(approved(&w.plan(&waves, &p, at(60))), ["aig-4"]);
        w.end("aig-4", "FINISHED");
        let done = w.plan(&waves, &p, at(70));
        assert_eq!(done.phase, Phase::Completed);
        assert_eq!(done.waves[1].succeeded, 3);
        // One approval per group and version, ever.
        assert_eq!(w.approved.len(), 4);
    }

    /// A failure beyond maxFailures stops every further approval, and the stop is recorded so
    /// that it holds after a restart even once the group looks healthy again.
    #[test]
    fn too_many_failures_pause_the_rollout_for_good() {
        let mut w = World::new(vec![
            group("aig-1", "canary"),
            group("aig-2", "canary"),
            group("aig-3", "broad"),
        ]);
        let waves = [
            wave("canary", "canary", Amount::Count(2), 0, Promotion::Auto),
            wave("broad", "broad", Amount::Count(1), 0, Promotion::Auto),
        ];
        let p = policy(Amount::Count(0), OnFailure::Pause);
        assert_eq!(approved(&w.plan(&waves, &p, at(0))), ["aig-1", "aig-2"]);
        w.end("aig-1", "FINISHED");
        w.end("aig-2", "FAILED");
        let paused = w.plan(&waves, &p, at(10));
        assert!(
            matches!(&paused.phase, Phase::Paused(why) if why.contains("wave canary")),
            "{:?}",
            paused.phase
        );
        assert!(paused.approve.is_empty());
        assert_eq!(paused.failures.len(), 1);
        assert!(
            paused.failures[0].detail.contains("TaskDisplayStatus FAILED"),
            "{:?}",
            paused.failures
        );
        // Someone repairs the group in the console: the rollout stays stopped.
        let g = w
            .groups
            .iter_mut()
            .find(|g| g.app_instance_group_id == "aig-2")
            .unwrap();
        g.status = "PUBLISHED".into();
        g.resource_status = "AVAILABLE".into();
        g.ota_info.ota_version = NEW.into();
        let later = w.plan(&waves, &p, at(20));
        assert!(matches!(later.phase, Phase::Paused(_)), "{:?}", later.phase);
        assert!(later.approve.is_empty());

        // With action Continue (and the same failure), the next wave goes on.
        let mut c = World::new(vec![
            group("aig-1", "canary"),
            group("aig-2", "canary"),
            group("aig-3", "broad"),
        ]);
        let go_on = policy(Amount::Count(0), OnFailure::Continue);
        c.plan(&waves, &go_on, at(0));
        c.end("aig-1", "FINISHED");
        c.end("aig-2", "FAILED");
        assert_eq!(approved(&c.plan(&waves, &go_on, at(10))), ["aig-3"]);
    }

    /// Manual promotion waits for a person; a group offered another version waits without
    /// failing; an upgrade not done by the deadline fails; PART_FINISHED is a failure unless
    /// the policy accepts it.
    #[test]
    fn promotion_versions_and_deadlines() {
        let mut w = World::new(vec![group("aig-1", "canary"), group("aig-2", "broad")]);
        let waves = [
            wave("canary", "canary", Amount::Count(1), 0, Promotion::Manual),
            wave("broad", "broad", Amount::Count(1), 0, Promotion::Auto),
        ];
        let p = policy(Amount::Count(0), OnFailure::Pause);
        w.plan(&waves, &p, at(0));
        w.end("aig-1", "FINISHED");
        let waiting = w.plan(&waves, &p, at(10));
        assert_eq!(waiting.phase, Phase::WaitingForPromotion);
        assert!(waiting.approve.is_empty());
        w.records[0].promoted = true;
        // aig-2 is offered a newer version than the pinned one: it waits.
        w.groups[1].ota_info.new_ota_version = "1.6.0".into();
        let mismatch = w.plan(&waves, &p, at(11));
        assert!(
            mismatch.approve.is_empty(),
            "never approve a version other than the pinned one"
        );
        assert_eq!(mismatch.phase, Phase::Progressing);
        assert_eq!(mismatch.waves[1].pending, 1);
        w.groups[1].ota_info.new_ota_version = NEW.into();
        assert_eq!(approved(&w.plan(&waves, &p, at(12))), ["aig-2"]);
        // Still RUNNING 61 minutes after its start: failed by the deadline.
        for t in w.tasks.get_mut("aig-2").unwrap() {
            t.task_display_status = "RUNNING".into();
        }
        let late = w.plan(&waves, &p, at(12 + 1 + 61));
        assert_eq!(late.waves[1].failed, 1, "{:?}", late.failures);
        assert!(late.failures[0].detail.contains("progress deadline"));

        let part = |accept: bool| {
            let mut w = World::new(vec![group("aig-1", "canary")]);
            let waves = [wave("canary", "canary", Amount::Count(1), 0, Promotion::Auto)];
            let p = FailurePolicy {
                part_finished_succeeds: accept,
                ..policy(Amount::Count(0), OnFailure::Pause)
            };
            w.plan(&waves, &p, at(0));
            w.end("aig-1", "FINISHED");
            for t in w.tasks.get_mut("aig-1").unwrap() {
                t.task_display_status = "PART_FINISHED".into();
            }
            w.plan(&waves, &p, at(10)).phase
        };
        assert!(matches!(part(false), Phase::Paused(_)));
        assert_eq!(part(true), Phase::Completed);
    }

    /// A group that regresses while its wave soaks fails the wave: nothing further goes.
    #[test]
    fn a_regression_during_the_soak_stops_the_rollout() {
        let mut w = World::new(vec![group("aig-1", "canary"), group("aig-2", "broad")]);
        let waves = [
            wave("canary", "canary", Amount::Count(1), 30, Promotion::Auto),
            wave("broad", "broad", Amount::Count(1), 0, Promotion::Auto),
        ];
        let p = policy(Amount::Count(0), OnFailure::Pause);
        w.plan(&waves, &p, at(0));
        w.end("aig-1", "FINISHED");
        assert_eq!(w.plan(&waves, &p, at(10)).phase, Phase::Soaking);
        w.groups[0].resource_status = "UNAVAILABLE".into();
        let plan = w.plan(&waves, &p, at(41));
        assert!(matches!(plan.phase, Phase::Paused(_)), "{:?}", plan.phase);
        assert!(plan.approve.is_empty());
        assert!(
            plan.failures[0].detail.contains("ResourceStatus UNAVAILABLE"),
            "{:?}",
            plan.failures
        );
    }

    #[test]
    fn amounts_and_overlaps() {
        assert_eq!(Amount::parse("w", "25%"), Ok(Amount::Percent(25)));
        assert_eq!(Amount::parse("w", "3"), Ok(Amount::Count(3)));
        assert!(
            Amount::parse("spec.waves[0].maxUnavailable", "x%")
                .unwrap_err()
                .contains("maxUnavailable")
        );
        assert_eq!(Amount::Percent(25).of(10), 2);
        let mut w = World::new(vec![group("aig-1", "canary")]);
        let by_id = Wave {
            selector: RolloutSelector {
                app_instance_group_ids: vec![crate::api::rollout::GroupId("aig-1".into())],
                ..Default::default()
            },
            ..wave("ids", "", Amount::Count(1), 0, Promotion::Auto)
        };
        let waves = [by_id, wave("canary", "canary", Amount::Count(1), 0, Promotion::Auto)];
        let plan = w.plan(&waves, &policy(Amount::Count(0), OnFailure::Pause), at(0));
        assert_eq!(plan.overlapping, ["aig-1"]);
        assert_eq!((plan.waves[0].targets, plan.waves[1].targets), (1, 0), "its first wave");
    }

    mod fota {
        use super::*;
        use crate::cloud::ops::ecd::Tag;

        const PINNED: &str = "2.3.0";

        fn desktop(id: &str, ring: &str) -> Desktop {
            Desktop {
                desktop_id: id.into(),
                desktop_status: "Running".into(),
                tags: vec![Tag {
                    key: "ring".into(),
                    value: ring.into(),
                }],
                ..Default::default()
            }
        }

        fn info(id: &str) -> DesktopInfo {
            DesktopInfo {
                desktop_id: id.into(),
                desktop_status: "Running".into(),
                connection_status: "Disconnected".into(),
                management_flag: vec!["NoFlag".into()],
                current_app_version: "2.0.0".into(),
                new_app_version: PINNED.into(),
            }
        }

        /// Computers as DescribeDesktopInfo shows them, moved by hand as the cloud would.
        struct Fleet {
            desktops: Vec<Desktop>,
            infos: BTreeMap<String, DesktopInfo>,
            approved: Vec<Approved>,
            records: Vec<WaveRecord>,
            paused_by_failures: bool,
        }

        impl Fleet {
            fn new(rings: &[(&str, &str)]) -> Self {
                Fleet {
                    desktops: rings.iter().map(|(id, ring)| desktop(id, ring)).collect(),
                    infos: rings.iter().map(|(id, _)| (id.to_string(), info(id))).collect(),
                    approved: Vec::new(),
                    records: Vec::new(),
                    paused_by_failures: false,
                }
            }

            fn plan(&mut self, waves: &[Wave], policy: &FailurePolicy, now: DateTime<Utc>) -> FotaRolloutPlan {
                let plan = plan_fota(&FotaRolloutInput {
                    basis: RolloutBasis {
                        waves,
                        policy,
                        approved: &self.approved,
                        pinned: Some(PINNED),
                        records: &self.records,
                        paused_by_failures: self.paused_by_failures,
                        paused: false,
                        in_window: true,
                        now,
                    },
                    desktops: &self.desktops,
                    infos: &self.infos,
                    version: None,
                });
                self.records = plan.waves.iter().map(|w| w.record.clone()).collect();
                self.paused_by_failures = plan.paused_by_failures;
                self.approved.extend(plan.adopted.iter().cloned());
                for a in &plan.approve {
                    assert_eq!(a.version, PINNED, "only the pinned version is approved");
                    self.approved.push(Approved {
                        target: a.desktop_id.clone(),
                        version: a.version.clone(),
                        start_time: now,
                    });
                    // The cloud starts the update.
                    self.with(&a.desktop_id, |i| i.management_flag = vec!["Updating".into()]);
                }
                plan
            }

            fn with(&mut self, id: &str, f: impl FnOnce(&mut DesktopInfo)) {
                f(self.infos.get_mut(id).unwrap());
            }

            fn finish(&mut self, id: &str) {
                self.with(id, |i| {
                    i.current_app_version = PINNED.into();
                    i.management_flag = vec!["NoFlag".into()];
                });
            }
        }

        fn approved(plan: &FotaRolloutPlan) -> Vec<&str> {
            plan.approve.iter().map(|a| a.desktop_id.as_str()).collect()
        }

        /// Free computers go within the budget; a computer someone works on waits (busy), is
        /// never approved while connected, and goes once its user leaves.
        #[test]
        fn computers_people_work_on_wait_and_go_once_free() {
            let mut f = Fleet::new(&[
                ("ecd-1", "canary"),
                ("ecd-2", "broad"),
                ("ecd-3", "broad"),
                ("ecd-4", "broad"),
            ]);
            f.with("ecd-3", |i| i.connection_status = "Connected".into());
            let waves = [
                wave("canary", "canary", Amount::Count(1), 0, Promotion::Auto),
                wave("broad", "broad", Amount::Count(2), 0, Promotion::Auto),
            ];
            let p = policy(Amount::Count(0), OnFailure::Pause);
            assert_eq!(approved(&f.plan(&waves, &p, at(0))), ["ecd-1"]);
            assert!(f.plan(&waves, &p, at(1)).approve.is_empty(), "the canary updates");
            f.finish("ecd-1");
            let broad = f.plan(&waves, &p, at(15));
            assert_eq!(approved(&broad), ["ecd-2", "ecd-4"], "ecd-3 has someone connected");
            // Counted before the approvals of this plan: three pending, one of them busy.
            assert_eq!((broad.waves[1].busy, broad.waves[1].pending), (1, 3));
            f.finish("ecd-2");
            f.finish("ecd-4");
            let waiting = f.plan(&waves, &p, at(30));
            assert!(waiting.approve.is_empty());
            assert_eq!(waiting.phase, Phase::Progressing, "the wave waits for ecd-3's user");
            f.with("ecd-3", |i| i.connection_status = "Disconnected".into());
            assert_eq!(approved(&f.plan(&waves, &p, at(40))), ["ecd-3"]);
            f.finish("ecd-3");
            let done = f.plan(&waves, &p, at(55));
            assert_eq!(done.phase, Phase::Completed);
            assert_eq!(f.approved.len(), 4, "each computer once");
        }

        /// A computer left Failed fails its wave; one not on the version by the deadline fails;
        /// a computer not Running is not approved (busy); a computer updating without a record
        /// (a status lost) is adopted and counts against the budget.
        #[test]
        fn failures_deadlines_and_adoption() {
            let mut f = Fleet::new(&[("ecd-1", "canary"), ("ecd-2", "canary"), ("ecd-3", "canary")]);
            f.with("ecd-3", |i| i.desktop_status = "Stopped".into());
            let waves = [wave("canary", "canary", Amount::Count(2), 0, Promotion::Auto)];
            let p = policy(Amount::Count(1), OnFailure::Pause);
            assert_eq!(approved(&f.plan(&waves, &p, at(0))), ["ecd-1", "ecd-2"]);
            f.with("ecd-1", |i| {
                i.desktop_status = "Failed".into();
                i.management_flag.clear();
            });
            let one = f.plan(&waves, &p, at(20));
            assert_eq!(one.waves[0].failed, 1);
            assert!(
                one.failures[0].detail.contains("DesktopStatus Failed"),
                "{:?}",
                one.failures
            );
            assert_eq!(one.waves[0].busy, 1, "ecd-3 is Stopped");
            assert!(one.approve.is_empty(), "a Stopped computer is not approved");
            // ecd-2 still on the old version 61 minutes after its approval.
            f.with("ecd-2", |i| i.management_flag.clear());
            let late = f.plan(&waves, &p, at(61));
            assert_eq!(late.waves[0].failed, 2);
            assert!(late.failures.iter().any(|x| x.detail.contains("progress deadline")));
            assert!(matches!(late.phase, Phase::Paused(_)), "{:?}", late.phase);

            // A status lost: the computer updating is adopted, and the budget of one is used.
            let mut g = Fleet::new(&[("ecd-1", "canary"), ("ecd-2", "canary")]);
            g.with("ecd-1", |i| i.management_flag = vec!["Updating".into()]);
            let waves = [wave("canary", "canary", Amount::Count(1), 0, Promotion::Auto)];
            let plan = g.plan(&waves, &p, at(0));
            assert_eq!(
                plan.adopted.iter().map(|a| a.target.as_str()).collect::<Vec<_>>(),
                ["ecd-1"]
            );
            assert!(plan.approve.is_empty(), "the adopted update fills the budget");
            assert_eq!(plan.waves[0].updating, 1);
        }
    }
}
