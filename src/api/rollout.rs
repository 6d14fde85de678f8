//! UpdateRollout: OTA updates of App Streaming delivery groups, or image (FOTA) updates of
//! cloud computers, approved wave by wave.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonSpec, ResourceStatus};
use super::maintenance::{Blackout, RecurringWindow};
use super::ota::OtaType;

/// Rolls an update out in waves: a canary first, each wave only once the one before it has
/// succeeded and soaked (and been promoted, where a person must), never more than
/// `maxUnavailable` of a wave at once, and it stops by itself when too many fail. An
/// approval cannot be taken back in the cloud, so each target is approved just in time, for
/// the version the rollout pinned when it started. One target per rollout: App Streaming
/// delivery groups (`ota`) or the image update of cloud computers (`fota`).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ops.alicloud.dev",
    version = "v1alpha1",
    kind = "UpdateRollout",
    doc = "An update rolled out in waves, stopping by itself on failures",
    namespaced,
    status = "UpdateRolloutStatus",
    shortname = "uro",
    category = "alicloud-ops",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Wave", type_ = "string", json_path = ".status.currentWave"),
    printcolumn(name = "Version", type_ = "string", json_path = ".status.pinnedVersion"),
    printcolumn(name = "Progress", type_ = "string", json_path = ".status.progress"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self.waves.all(w, self.waves.filter(v, v.name == w.name).size() == 1)").message("waves: each wave needs a name of its own"))]
#[x_kube(validation = Rule::new("!has(self.failurePolicy) || !has(self.failurePolicy.maxFailures) || !string(self.failurePolicy.maxFailures).matches('^[0-9]+$') || self.waves.all(w, (!has(w.selector.appInstanceGroupIds) || size(w.selector.appInstanceGroupIds) == 0 || int(string(self.failurePolicy.maxFailures)) <= size(w.selector.appInstanceGroupIds)) && (!has(w.selector.desktopIds) || size(w.selector.desktopIds) == 0 || int(string(self.failurePolicy.maxFailures)) <= size(w.selector.desktopIds)))").message("failurePolicy.maxFailures is more than a wave's appInstanceGroupIds or desktopIds: that wave could never stop"))]
#[x_kube(validation = Rule::new("has(self.ota) != has(self.fota)").message("give exactly one target: ota (App Streaming delivery groups) or fota (cloud computers' image update)"))]
#[x_kube(validation = Rule::new("!has(self.ota) || self.waves.all(w, !has(w.selector.desktopIds) && !has(w.selector.officeSiteId) && !has(w.selector.desktopGroupIds) && !has(w.selector.policyGroupIds) && !has(w.selector.endUserIds))").message("waves[].selector: an ota rollout selects delivery groups, by appInstanceGroupIds or tags"))]
#[x_kube(validation = Rule::new("!has(self.fota) || self.waves.all(w, !has(w.selector.appInstanceGroupIds))").message("waves[].selector: a fota rollout selects cloud computers; appInstanceGroupIds is for ota"))]
#[serde(rename_all = "camelCase")]
pub struct UpdateRolloutSpec {
    /// The OTA update of a region's App Streaming delivery groups. Give this or `fota`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ota: Option<OtaTarget>,
    /// The image update (FOTA) of a region's cloud computers, desktop by desktop. Give this
    /// or `ota`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fota: Option<FotaTarget>,
    /// The waves, in order. A target (delivery group or cloud computer) belongs to the first
    /// wave that selects it (overlaps are reported in status); a wave's targets are approved
    /// only once every wave before it has succeeded, soaked and, where manual, been promoted.
    #[schemars(length(min = 1, max = 20))]
    pub waves: Vec<RolloutWave>,
    /// What counts as failure, and what happens then.
    #[serde(default)]
    pub failure_policy: RolloutFailurePolicy,
    /// While true, nothing more is approved (what was approved goes on in the cloud: an
    /// approval cannot be withdrawn). `kubectl alicloud-ops pause` and `resume` set it.
    #[serde(default)]
    pub paused: bool,
    /// When approvals may start: a recurring window. Without it, at any time. Groups approved
    /// in a window finish after it as the cloud runs them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<RecurringWindow>,
    /// Periods in which nothing is approved, at most 50.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub blackouts: Vec<Blackout>,
    /// How far after its approval a group's upgrade starts (the approval's `StartTime`),
    /// e.g. `1m` (the default) or `0s`: from `0s` to `24h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(s|m|h))+$"), length(max = 16))]
    #[x_kube(validation = Rule::new("duration(self) <= duration('24h')").message("startDelay must be at most 24h"))]
    pub start_delay: Option<String>,
    #[serde(flatten)]
    pub common: CommonSpec,
}

impl UpdateRolloutSpec {
    /// The region of the rollout's one target.
    pub fn region(&self) -> &str {
        match (&self.ota, &self.fota) {
            (Some(o), _) => &o.biz_region_id,
            (None, Some(f)) => &f.region_id,
            (None, None) => "",
        }
    }
}

/// The OTA update of App Streaming delivery groups in one region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OtaTarget {
    /// Region of the delivery groups, e.g. `cn-hangzhou`.
    #[schemars(regex(pattern = r"^[a-z]{2}-[a-z0-9-]+$"), length(max = 64))]
    pub biz_region_id: String,
    /// The OTA type. Only `Fota` (system component update) exists today.
    #[serde(default)]
    pub ota_type: OtaType,
}

/// The image update of cloud computers in one region, approved desktop by desktop
/// (ApproveFotaUpdate). While the rollout runs, it holds the task's `UserStatus` at
/// `Pending`, so users do not update by themselves outside it. The cloud updates only a
/// computer that is Running with nobody connected; the others wait (see `drain`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("!has(self.drain) || !has(self.drain.policy) || self.drain.policy == 'Wait' || self.drain.policy == 'SkipBusy'").message("fota.drain.policy: a rollout disconnects nobody; give Wait or SkipBusy"))]
#[x_kube(validation = Rule::new("!has(self.drain) || !has(self.drain.idleAfter)").message("fota.drain.idleAfter: the cloud updates only computers nobody is connected to, idle or not"))]
#[serde(rename_all = "camelCase")]
pub struct FotaTarget {
    /// Region of the cloud computers, e.g. `cn-hangzhou`.
    #[schemars(regex(pattern = r"^[a-z]{2}-[a-z0-9-]+$"), length(max = 64))]
    pub region_id: String,
    /// The image version to roll out: an image-update task's `AppVersion`. Without it, the
    /// version of the region's newest task when the rollout starts. The version is pinned in
    /// `status.pinnedVersion` either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub app_version: Option<String>,
    /// People working on a computer: its update waits until they have left. `Wait`
    /// (default): a busy computer is looked at again at every look while approvals may start.
    /// `SkipBusy`: every `retryEvery`, and not once less than `minMaintenance` of the window
    /// is left (an update takes 10-15 minutes). Nobody is ever disconnected by a rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<super::maintenance::Drain>,
}

/// One wave: which targets, how many at once, and how it gives way to the next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutWave {
    /// The wave's name, e.g. `canary`: what `kubectl alicloud-ops promote` names.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(min = 1, max = 63))]
    pub name: String,
    pub selector: RolloutSelector,
    /// At most this many of the wave's targets approved and not done at once: a number (at
    /// least 1) or a percentage of the wave (`25%`, at least one target). Default 1.
    #[serde(default = "one")]
    #[schemars(schema_with = "int_or_percent")]
    #[x_kube(validation = Rule::new("string(self).matches('^([1-9][0-9]*|([1-9][0-9]?|100)%)$')").message("maxUnavailable is a number of at least 1 or a percentage from 1% to 100%"))]
    pub max_unavailable: IntOrPercent,
    /// How long the wave must stay healthy after its last group is done before the next
    /// wave starts, e.g. `30m`: at most `720h` (30 days). Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(s|m|h))+$"), length(max = 16))]
    #[x_kube(validation = Rule::new("duration(self) <= duration('720h')").message("soak must be at most 720h (30 days)"))]
    pub soak: Option<String>,
    /// `Auto` (default): the next wave starts after the soak. `Manual`: it also waits for
    /// `kubectl alicloud-ops promote ROLLOUT` (the annotation `ops.alicloud.dev/promote`
    /// naming this wave).
    #[serde(default)]
    pub promotion: Promotion,
}

fn one() -> IntOrPercent {
    IntOrPercent::Int(1)
}

/// Which targets a wave takes: those that meet every criterion given (a criterion that lists
/// several values takes a target that has any of them). An ota rollout selects delivery
/// groups by `appInstanceGroupIds` and `tags`; a fota rollout selects cloud computers by
/// `desktopIds`, `officeSiteId`, `tags`, `desktopGroupIds`, `policyGroupIds` and `endUserIds`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("(has(self.appInstanceGroupIds) && size(self.appInstanceGroupIds) > 0) || (has(self.tags) && size(self.tags) > 0) || (has(self.desktopIds) && size(self.desktopIds) > 0) || has(self.officeSiteId) || (has(self.desktopGroupIds) && size(self.desktopGroupIds) > 0) || (has(self.policyGroupIds) && size(self.policyGroupIds) > 0) || (has(self.endUserIds) && size(self.endUserIds) > 0)").message("selector: give appInstanceGroupIds or tags (ota), or desktopIds, officeSiteId, tags, desktopGroupIds, policyGroupIds or endUserIds (fota)"))]
#[serde(rename_all = "camelCase")]
pub struct RolloutSelector {
    /// ota: these delivery groups (`aig-...`), at most 100.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), extend("x-kubernetes-list-type" = "set"))]
    pub app_instance_group_ids: Vec<GroupId>,
    /// The targets that carry every one of these tags (key: value), at most 20.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 20))]
    pub tags: BTreeMap<String, String>,
    /// fota: these cloud computers (`ecd-...`), at most 1000.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), extend("x-kubernetes-list-type" = "set"))]
    pub desktop_ids: Vec<super::maintenance::DesktopId>,
    /// fota: the cloud computers of this office site, e.g. `cn-hangzhou+dir-363353****`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub office_site_id: Option<String>,
    /// fota: the cloud computers of any of these pools (desktop groups, `dg-...`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), extend("x-kubernetes-list-type" = "set"))]
    pub desktop_group_ids: Vec<super::maintenance::ShortId>,
    /// fota: the cloud computers under any of these policies (`pg-...`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), extend("x-kubernetes-list-type" = "set"))]
    pub policy_group_ids: Vec<super::maintenance::ShortId>,
    /// fota: the cloud computers assigned to any of these end users.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), extend("x-kubernetes-list-type" = "set"))]
    pub end_user_ids: Vec<super::maintenance::ShortId>,
}

/// A delivery group id, such as `aig-9ciijz60n4xsv****`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct GroupId(#[schemars(regex(pattern = r"^aig-[A-Za-z0-9*]+$"), length(max = 64))] pub String);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Promotion {
    /// The next wave starts once this one has succeeded and soaked.
    #[default]
    Auto,
    /// The next wave also waits for a person to promote this one.
    Manual,
}

/// A number, or a percentage such as `25%`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrPercent {
    Int(i64),
    Percent(String),
}

impl IntOrPercent {
    pub fn as_text(&self) -> String {
        match self {
            IntOrPercent::Int(n) => n.to_string(),
            IntOrPercent::Percent(p) => p.clone(),
        }
    }
}

/// An integer or a string, as Kubernetes marks `intstr.IntOrString` (the CEL rule on each
/// field says which strings).
fn int_or_percent(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    // maxLength bounds the cost the apiserver estimates for the field's CEL rule.
    schemars::json_schema!({ "x-kubernetes-int-or-string": true, "maxLength": 8 })
}

/// What counts as failure, and what happens then.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutFailurePolicy {
    /// More failed targets than this in one wave stop the rollout (or, with `action:
    /// Continue`, are reported and passed over): a number or a percentage of the wave
    /// (`0%` to `100%`). Default 0: the first failure.
    #[serde(default = "zero")]
    #[schemars(schema_with = "int_or_percent")]
    #[x_kube(validation = Rule::new("string(self).matches('^([0-9]+|([0-9]|[1-9][0-9]|100)%)$')").message("maxFailures is a number of at least 0 or a percentage from 0% to 100%"))]
    pub max_failures: IntOrPercent,
    /// A target not done this long after its approval's start time (ota) or its approval
    /// (fota) has failed, e.g. `2h` (the default): from `1m` to `168h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(s|m|h))+$"), length(max = 16))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m') && duration(self) <= duration('168h')").message("progressDeadline must be between 1m and 168h"))]
    pub progress_deadline: Option<String>,
    /// ota: whether an upgrade the cloud reports `PART_FINISHED` counts as success. Default
    /// false: what a partial finish leaves behind is not documented.
    #[serde(default)]
    pub part_finished_succeeds: bool,
    /// `Pause` (default): no further approvals until a person resumes the rollout
    /// (`kubectl alicloud-ops resume`). `Continue`: the failures are reported and the wave
    /// counts as done.
    #[serde(default)]
    pub action: FailureAction,
}

fn zero() -> IntOrPercent {
    IntOrPercent::Int(0)
}

impl Default for RolloutFailurePolicy {
    fn default() -> Self {
        RolloutFailurePolicy {
            max_failures: zero(),
            progress_deadline: None,
            part_finished_succeeds: false,
            action: FailureAction::Pause,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FailureAction {
    /// Stop every further approval until a person resumes.
    #[default]
    Pause,
    /// Report the failures and go on.
    Continue,
}

/// Where a rollout is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RolloutPhase {
    /// The current wave has targets to approve, but the window is closed (or blacked out).
    WaitingForWindow,
    /// Targets of the current wave are approved or updating, or wait to be.
    Progressing,
    /// The current wave is done and must stay healthy until its `soakUntil`.
    Soaking,
    /// The current wave is done and soaked, and waits for `kubectl alicloud-ops promote`.
    WaitingForPromotion,
    /// Nothing is approved: `spec.paused`, or too many failures (`pausedReason`).
    Paused,
    /// Every wave is done.
    Completed,
}

/// Observed state of an UpdateRollout.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRolloutStatus {
    #[serde(flatten)]
    pub common: ResourceStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RolloutPhase>,
    /// The version this rollout approves, and only it. ota: the version the first wave's
    /// groups offered when the rollout started (a group offered another version waits).
    /// fota: `spec.fota.appVersion`, or the newest task's version when it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_version: Option<String>,
    /// The wave that acts now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_wave: Option<String>,
    /// Succeeded of all targets, e.g. `7/20`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Each wave, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<WaveStatus>,
    /// Every approval this rollout made, recorded before it was sent: a group is approved once
    /// per version, across restarts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<GroupApproval>,
    /// fota: every ApproveFotaUpdate this rollout made that has not succeeded yet (updating,
    /// or failed), recorded before it was sent: a computer is approved once per version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub desktop_approvals: Vec<DesktopApproval>,
    /// fota: the image-update task of the pinned version, whose `UserStatus` the rollout
    /// holds at `Pending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fota_task_uid: Option<String>,
    /// fota: when the rollout last set the task's `UserStatus` to `Pending` (RFC 3339). A task
    /// still `Running` after that is held by the region's global auto-update switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_status_written_at: Option<String>,
    /// The targets that failed, with the cloud's own status (at most 50, the earliest kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<TargetFailure>,
    /// Why nothing is approved, while paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_reason: Option<String>,
    /// Stopped by too many failures: it stays stopped, across restarts, until resumed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused_by_failures: bool,
    /// The last value of the `ops.alicloud.dev/resume` annotation acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_with: Option<String>,
    /// Targets that more than one wave selects (each belongs to its first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overlapping: Vec<String>,
    /// Older resources that act on the same targets (OtaSchedules, FotaTaskPolicies that push
    /// the task, or rollouts); while there is one, those targets are left to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
}

/// What one wave has come to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaveStatus {
    pub name: String,
    pub targets: i32,
    /// Not approved yet (including groups that offer another version and wait, and computers
    /// that wait for their users).
    pub pending: i32,
    /// fota: of the pending, the computers that cannot be updated now: someone is connected,
    /// or the computer is not Running.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub busy: i32,
    /// Approved and not done.
    pub updating: i32,
    pub succeeded: i32,
    pub failed: i32,
    /// Failures a person accepted by resuming (they do not stop the wave again).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub accepted_failures: i32,
    /// When its first approval was made (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When its last group was done (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// When the next wave may start (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak_until: Option<String>,
    /// When a person promoted it (RFC 3339), for `promotion: Manual`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_at: Option<String>,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// One ApproveOtaTask this rollout made.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupApproval {
    pub app_instance_group_id: String,
    pub version: String,
    /// The TaskId it was sent with: the cloud gives the group a new one once it is accepted.
    pub task_id: String,
    /// The approved start time (RFC 3339).
    pub start_time: String,
    /// False from when it is recorded until the cloud's answer (or a new TaskId) shows it
    /// was accepted; an unconfirmed approval whose TaskId is still current was not accepted
    /// and is sent again.
    #[serde(default)]
    pub confirmed: bool,
}

/// One ApproveFotaUpdate this rollout made (for `status.pinnedVersion`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DesktopApproval {
    pub desktop_id: String,
    /// When it was recorded (RFC 3339): the progress deadline counts from here.
    pub approved_at: String,
    /// False from when it is recorded until the cloud's answer (or the computer's state)
    /// shows it was accepted; one that the computer's state shows was not is sent again.
    #[serde(default)]
    pub confirmed: bool,
}

/// A target that failed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetFailure {
    pub target: String,
    pub wave: String,
    /// The cloud's own words: the task's TaskDisplayStatus and the group's Status and
    /// ResourceStatus.
    pub detail: String,
}
