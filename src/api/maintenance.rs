//! DesktopMaintenanceWindow: cloud computers in maintenance mode during a window.

use std::collections::BTreeMap;

use kube::core::Rule;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonSpec, ResourceStatus};

/// Puts cloud computers into maintenance mode (users cannot connect) during a window and
/// takes them out after it. Only computers this resource put into maintenance are taken
/// out; one someone else put into maintenance stays as it was.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ops.alicloud.dev",
    version = "v1alpha1",
    kind = "DesktopMaintenanceWindow",
    doc = "Cloud computers in maintenance mode during a window",
    namespaced,
    status = "DesktopMaintenanceWindowStatus",
    shortname = "dmw",
    category = "alicloud-ops",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Synced",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Synced\")].status"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "In-Maintenance",
        type_ = "integer",
        json_path = ".status.desktopsInMaintenanceCount"
    ),
    printcolumn(name = "Draining", type_ = "integer", json_path = ".status.desktopsDrainingCount"),
    printcolumn(name = "Next-Window", type_ = "string", json_path = ".status.nextWindow.start"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("has(self.window) != has(self.recurring)").message("set exactly one of window or recurring"))]
#[x_kube(validation = Rule::new("has(self.desktopIds) != has(self.selector)").message("set exactly one of desktopIds or selector"))]
#[serde(rename_all = "camelCase")]
pub struct DesktopMaintenanceWindowSpec {
    /// Region of the cloud computers, e.g. `cn-hangzhou`. Cannot be changed: the computers
    /// put into maintenance must be taken out in the region that has them.
    #[schemars(regex(pattern = r"^[a-z]{2}-[a-z0-9-]+$"), length(max = 64))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("regionId cannot be changed; create another DesktopMaintenanceWindow"))]
    pub region_id: String,
    /// The cloud computers (`ecd-...`), any number. Set this or `selector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 5000), extend("x-kubernetes-list-type" = "set"))]
    pub desktop_ids: Option<Vec<DesktopId>>,
    /// Selects the cloud computers by office site, tags, pools, policies or end users
    /// instead of by id. Set this or `desktopIds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<DesktopSelector>,
    /// A one-off window. Set this or `recurring`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<FixedWindow>,
    /// A window that repeats. Set this or `window`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurring: Option<RecurringWindow>,
    /// Cloud computers never touched, whatever `desktopIds` or `selector` says. A computer
    /// that becomes excluded while the window is open is taken out of maintenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<DesktopExclusion>,
    /// What happens to people still connected when the window opens. Default: `Wait`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<Drain>,
    /// Warnings to the people on the computers: Kubernetes Events on this resource and,
    /// with `consoleMessageId`, a message in the Workspace client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
    /// Periods (change freezes, holidays) in which no window opens: an occurrence that would
    /// open inside one is skipped. A window already open is not cut short. At most 50, none
    /// overlapping.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    #[x_kube(validation = Rule::new("self.all(a, self.all(b, a == b || timestamp(a.end) <= timestamp(b.start) || timestamp(b.end) <= timestamp(a.start)))").message("blackouts must not overlap"))]
    pub blackouts: Vec<Blackout>,
    #[serde(flatten)]
    pub common: CommonSpec,
}

/// When, and how, people are told.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Notify {
    /// Lead times before the window opens, and before the sessions left are disconnected
    /// (`drain`), e.g. `[1h, 15m]`: each at most `168h`, at most 10. A notice goes out once
    /// per lead time and occurrence, across restarts; after a long outage only the nearest
    /// lead still ahead is sent, never one that would announce a time already past. Nobody
    /// is disconnected before the longest lead has passed since the first notice about the
    /// disconnect went: a deadline reached unannounced is announced then, and waits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10), inner(regex(pattern = r"^([0-9]+(s|m|h))+$"), length(max = 16)))]
    #[x_kube(validation = Rule::new("self.all(d, duration(d) > duration('0s') && duration(d) <= duration('168h'))").message("notify.before: each lead time is a duration such as 1h or 15m, longer than 0 and at most 168h"))]
    pub before: Vec<String>,
    /// A message made and published in the Workspace console (its text and its targets are
    /// set there); each notice sends it with SendConsoleMessage. A message the cloud does
    /// not know, or that is not published, gives a Warning and never holds up the
    /// maintenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub console_message_id: Option<String>,
}

/// A period in which no window opens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("timestamp(self.end) > timestamp(self.start)").message("a blackout's end must be after its start"))]
#[serde(rename_all = "camelCase")]
pub struct Blackout {
    /// RFC 3339, e.g. `2026-12-24T00:00:00+08:00`.
    #[schemars(extend("format" = "date-time"), length(max = 64))]
    pub start: String,
    /// RFC 3339; after `start`.
    #[schemars(extend("format" = "date-time"), length(max = 64))]
    pub end: String,
}

/// What happens to people still connected to a computer when the window opens. Every
/// target is entered at the start whatever the policy: Alibaba's maintenance mode lets
/// nobody new connect and keeps a computer "entering maintenance" until its last user
/// leaves. The policy says whether the operator ends the sessions still there, and when.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("(has(self.policy) && self.policy == 'WaitThenForce') == has(self.forceAfter)").message("drain.forceAfter is required with policy WaitThenForce, and allowed with no other policy"))]
#[x_kube(validation = Rule::new("(has(self.policy) && self.policy == 'SkipBusy') || !(has(self.idleAfter) || has(self.retryEvery) || has(self.minMaintenance))").message("drain.idleAfter, drain.retryEvery and drain.minMaintenance are allowed only with policy SkipBusy"))]
#[serde(rename_all = "camelCase")]
pub struct Drain {
    /// `Wait` (default): nobody is disconnected; a computer is in maintenance once its users
    /// leave. `SkipBusy`: only computers nobody works on are entered. `WaitThenForce`: the sessions still connected `forceAfter` after the window
    /// opened are disconnected. `Immediate`: the sessions are disconnected as the window
    /// opens. Either waits for the warning `notify.before` promises. A disconnect is not a logoff, but unsaved work may be lost if maintenance
    /// restarts the computer.
    #[serde(default)]
    pub policy: DrainPolicy,
    /// WaitThenForce: how long after the window opens the remaining sessions are
    /// disconnected, e.g. `2h` or `30m`: at most `168h`. A deadline at or after the window's
    /// end never comes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(s|m|h))+$"), length(max = 16))]
    #[x_kube(validation = Rule::new("duration(self) <= duration('168h')").message("drain.forceAfter is at most 168h (7 days)"))]
    pub force_after: Option<String>,
    /// SkipBusy: a session idle at least this long (as the cloud's `SessionIdleTime` says)
    /// does not make its computer busy, e.g. `30m`. Without it, anyone connected does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(s|m|h))+$"), length(max = 16))]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s') && duration(self) <= duration('168h')").message("drain.idleAfter is longer than 0 and at most 168h"))]
    pub idle_after: Option<String>,
    /// SkipBusy: how often busy computers are looked at again. Default `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(s|m|h))+$"), length(max = 16))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('10s') && duration(self) <= duration('24h')").message("drain.retryEvery is between 10s and 24h"))]
    pub retry_every: Option<String>,
    /// SkipBusy: a busy computer is entered only while at least this much of the window is
    /// left; after that it is skipped for this window. Default `30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(s|m|h))+$"), length(max = 16))]
    #[x_kube(validation = Rule::new("duration(self) <= duration('168h')").message("drain.minMaintenance is at most 168h"))]
    pub min_maintenance: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DrainPolicy {
    /// Nobody is disconnected.
    #[default]
    Wait,
    /// The sessions still connected at `forceAfter` are disconnected.
    WaitThenForce,
    /// The sessions are disconnected as the window opens.
    Immediate,
    /// Only computers nobody is working on are entered; busy ones are looked at again
    /// every `retryEvery` until too little of the window is left (`minMaintenance`), then
    /// skipped for this window. Nobody is disconnected.
    SkipBusy,
}

/// A cloud computer id, such as `ecd-dzeotbgawdnfo****`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct DesktopId(#[schemars(regex(pattern = r"^ecd-[A-Za-z0-9*]+$"), length(max = 64))] pub String);

/// Which cloud computers a window takes: those that meet every criterion given (a
/// criterion that lists several values takes a computer that has any of them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.officeSiteId) || (has(self.tags) && size(self.tags) > 0) || (has(self.desktopGroupIds) && size(self.desktopGroupIds) > 0) || (has(self.policyGroupIds) && size(self.policyGroupIds) > 0) || (has(self.endUserIds) && size(self.endUserIds) > 0)").message("selector: give at least one of officeSiteId, tags, desktopGroupIds, policyGroupIds, endUserIds"))]
#[serde(rename_all = "camelCase")]
pub struct DesktopSelector {
    /// The cloud computers of this office site, e.g. `cn-hangzhou+dir-363353****`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub office_site_id: Option<String>,
    /// The cloud computers that carry every one of these tags (key: value), at most 20.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 20))]
    #[x_kube(validation = tag_keys("selector.tags"))]
    pub tags: BTreeMap<String, String>,
    /// The cloud computers of any of these pools (desktop groups, `dg-...`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), extend("x-kubernetes-list-type" = "set"))]
    pub desktop_group_ids: Vec<ShortId>,
    /// The cloud computers under any of these policies (`pg-...`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), extend("x-kubernetes-list-type" = "set"))]
    pub policy_group_ids: Vec<ShortId>,
    /// The cloud computers assigned to any of these end users.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), extend("x-kubernetes-list-type" = "set"))]
    pub end_user_ids: Vec<ShortId>,
}

/// An id of a pool, a policy or an end user.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct ShortId(#[schemars(length(min = 1, max = 128))] pub String);

/// Cloud computers a window never touches, whatever its selection says.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DesktopExclusion {
    /// These cloud computers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5000), extend("x-kubernetes-list-type" = "set"))]
    pub desktop_ids: Vec<DesktopId>,
    /// The cloud computers that carry every one of these tags, at most 20.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 20))]
    #[x_kube(validation = tag_keys("exclude.tags"))]
    pub tags: BTreeMap<String, String>,
}

/// Tag keys as the cloud takes them: 1 to 128 characters, not starting with `aliyun` or
/// `acs:` (the cloud's own).
fn tag_keys(field: &str) -> Rule {
    Rule::new("self.all(k, size(k) >= 1 && size(k) <= 128 && !k.startsWith('aliyun') && !k.startsWith('acs:'))")
        .message(kube::core::Message::Message(format!(
            "{field}: a tag key is 1 to 128 characters and does not start with aliyun or acs:"
        )))
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("self.end > self.start").message("window.end must be after window.start"))]
#[x_kube(validation = Rule::new("self.end - self.start <= duration('168h')").message("a window lasts at most 7 days (168h)"))]
#[serde(rename_all = "camelCase")]
pub struct FixedWindow {
    /// When maintenance starts (RFC 3339, e.g. `2026-11-28T22:00:00+08:00`).
    #[schemars(extend("format" = "date-time"), length(max = 64))]
    pub start: String,
    /// When maintenance ends (RFC 3339): after `start`, and at most 7 days after it.
    #[schemars(extend("format" = "date-time"), length(max = 64))]
    pub end: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecurringWindow {
    /// When each window starts: a 5-field cron expression (minute hour day-of-month month
    /// day-of-week), read in `timeZone`, e.g. `0 22 * * 6` for Saturdays at 22:00.
    #[schemars(regex(pattern = r"^\S+( \S+){4}$"), length(max = 128))]
    #[x_kube(validation = super::schedule::cron_field(0))]
    #[x_kube(validation = super::schedule::cron_field(1))]
    #[x_kube(validation = super::schedule::cron_field(2))]
    #[x_kube(validation = super::schedule::cron_field(3))]
    #[x_kube(validation = super::schedule::cron_field(4))]
    pub cron: String,
    /// How long each window lasts, e.g. `4h` or `90m`: at most `168h` (7 days).
    #[schemars(regex(pattern = r"^([0-9]+(s|m|h))+$"), length(max = 16))]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s') && duration(self) <= duration('168h')").message("recurring.duration must be longer than 0 and at most 168h (7 days)"))]
    pub duration: String,
    /// IANA time zone of `cron`, e.g. `Asia/Shanghai`. Windows follow daylight-saving
    /// changes of the zone. Default `UTC`.
    #[serde(default = "utc")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = super::schedule::not_an_offset())]
    #[x_kube(validation = super::schedule::known_time_zone())]
    pub time_zone: String,
}

pub(crate) fn utc() -> String {
    "UTC".to_string()
}

/// Which credentials made a write.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnteredWith {
    /// The Secret used; absent when the operator's own credentials were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<super::common::CredentialsRef>,
}

/// A window as resolved to instants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WindowTimes {
    pub start: String,
    pub end: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Waiting for the next window.
    #[default]
    Scheduled,
    /// A window is open: targeted computers are in maintenance.
    Active,
    /// The one-off window has ended and maintenance was exited.
    Completed,
}

/// Observed state of a DesktopMaintenanceWindow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DesktopMaintenanceWindowStatus {
    #[serde(flatten)]
    pub common: ResourceStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The window open now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_window: Option<WindowTimes>,
    /// The next window to open, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_window: Option<WindowTimes>,
    /// Computers this resource put into maintenance (and will take out). Recorded before
    /// the cloud call, so a restart part-way never leaves one behind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub desktops_in_maintenance: Vec<String>,
    #[serde(default)]
    pub desktops_in_maintenance_count: i32,
    /// The credentials that put `desktopsInMaintenance` into maintenance; they take them out
    /// too. When `credentialsRef` changes, the computers are first taken out with these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entered_with: Option<EnteredWith>,
    /// Targeted computers in maintenance because someone else put them there; left alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub foreign_maintenance: Vec<String>,
    /// Ids in `desktopIds` that the cloud does not know.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown_desktop_ids: Vec<String>,
    /// The computers the selection takes now (after `exclude`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub desktops_targeted_count: i32,
    /// The computers the selection would take but `exclude` keeps out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub desktops_excluded_count: i32,
    /// Sessions disconnected at the drain's deadline in the window open now (or the last).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sessions_disconnected_count: i32,
    /// Of `desktopsInMaintenance`, those that still have users connected (the cloud shows
    /// `EnterMaintenance`, or sessions): they are in maintenance only once the users leave.
    #[serde(default)]
    pub desktops_draining_count: i32,
    /// Some of the computers still draining, with who is connected (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub busy_desktops: Vec<BusyDesktop>,
    /// SkipBusy: targeted computers not entered because someone works on them, looked at
    /// again every `retryEvery`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub desktops_waiting_busy_count: i32,
    /// Computers never maintained in the window open now (or the last one), because people
    /// were working on them: skipped (SkipBusy, too little of the window left), or exited
    /// at the end while still draining.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5000))]
    pub skipped_desktops: Vec<String>,
    /// The window `skippedDesktops` belongs to (its start, RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_in: Option<String>,
    /// The notices sent (or being sent) for the coming occurrences: recorded before they go,
    /// so each goes once. Kept for a week after what they announce.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<NoticeRecord>,
    /// The blackout in force now, or the next one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_blackout: Option<WindowTimes>,
    /// When the sessions still connected to the computers in maintenance are disconnected
    /// (`drain.policy` WaitThenForce or Immediate), for the window open now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_at: Option<String>,
}

/// A notice recorded as sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NoticeRecord {
    /// What it announced: `WindowOpens` or `SessionsDisconnected`.
    pub about: String,
    /// When that happens (RFC 3339).
    pub at: String,
    /// The lead time it was for, as in `notify.before`.
    pub lead: String,
    /// When it went (RFC 3339); absent for a lead recorded as passed. A forced disconnect
    /// comes no sooner than the longest lead after the first notice about it went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
}

/// A computer someone is still working on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BusyDesktop {
    pub desktop_id: String,
    /// The end users connected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub end_user_ids: Vec<String>,
    /// When the earliest of their sessions was established, as the cloud reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_since: Option<String>,
}

/// How many busy computers `status.busyDesktops` shows.
pub const BUSY_SAMPLE: usize = 10;

fn is_zero(n: &i32) -> bool {
    *n == 0
}
