//! OtaSchedule: OTA updates of App Streaming delivery groups, approved for a start time.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonSpec, ResourceStatus};

/// Approves the over-the-air (OTA) update of an App Streaming delivery group for a chosen
/// start time: once (`startTime`), or for the next window each time a new version appears
/// (`window`). A version is never approved twice for the same start time.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ops.alicloud.dev",
    version = "v1alpha1",
    kind = "OtaSchedule",
    doc = "Approval of App Streaming delivery-group OTA updates for a start time",
    namespaced,
    status = "OtaScheduleStatus",
    shortname = "ota",
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
    printcolumn(name = "Group", type_ = "string", json_path = ".spec.appInstanceGroupId"),
    printcolumn(name = "Current", type_ = "string", json_path = ".status.currentVersion"),
    printcolumn(name = "Pending", type_ = "string", json_path = ".status.pendingVersion"),
    printcolumn(name = "Start", type_ = "string", json_path = ".status.scheduledStart"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("has(self.startTime) != has(self.window)").message("set exactly one of startTime or window"))]
#[serde(rename_all = "camelCase")]
pub struct OtaScheduleSpec {
    /// Region of the delivery group, e.g. `cn-hangzhou`.
    #[schemars(regex(pattern = r"^[a-z]{2}-[a-z0-9-]+$"), length(max = 64))]
    pub biz_region_id: String,
    /// The delivery group (`aig-...`).
    #[schemars(regex(pattern = r"^aig-[A-Za-z0-9*]+$"), length(max = 64))]
    pub app_instance_group_id: String,
    /// The OTA type. Only `Fota` (system component update) exists today.
    #[serde(default)]
    pub ota_type: OtaType,
    /// Approve for this one start time (RFC 3339). A version that appears after it has
    /// passed is not approved: the resource reports `StartTimeInPast`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"), length(max = 64))]
    pub start_time: Option<String>,
    /// Approve every new version for the next start of this recurring window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<OtaWindow>,
    #[serde(flatten)]
    pub common: CommonSpec,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OtaType {
    /// Update of the Wuying system components.
    #[default]
    Fota,
}

impl OtaType {
    pub fn as_str(self) -> &'static str {
        match self {
            OtaType::Fota => "Fota",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OtaWindow {
    /// When windows start: a 5-field cron expression read in `timeZone`, e.g. `0 3 * * 0`.
    #[schemars(regex(pattern = r"^\S+( \S+){4}$"), length(max = 128))]
    #[x_kube(validation = super::schedule::cron_field(0))]
    #[x_kube(validation = super::schedule::cron_field(1))]
    #[x_kube(validation = super::schedule::cron_field(2))]
    #[x_kube(validation = super::schedule::cron_field(3))]
    #[x_kube(validation = super::schedule::cron_field(4))]
    pub cron: String,
    /// IANA time zone of `cron`, e.g. `Asia/Shanghai`. Default `UTC`.
    #[serde(default = "super::maintenance::utc")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = super::schedule::not_an_offset())]
    #[x_kube(validation = super::schedule::known_time_zone())]
    pub time_zone: String,
}

/// An approval the operator sent (or is about to send).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// The version approved.
    pub version: String,
    /// The TaskId the approval was sent with (it changes after every approval).
    pub task_id: String,
    /// The approved start time (RFC 3339).
    pub start_time: String,
    /// Who approved it, as the cloud's task list shows: `Operator` (this resource: the
    /// TaskId, version and start time it sent), `Elsewhere` (someone else, such as the
    /// console, with the start time shown), or `Unconfirmed` (the TaskId changed but the
    /// task list does not show the task; the version is not approved again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ApprovalSource>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ApprovalSource {
    Operator,
    Elsewhere,
    Unconfirmed,
}

/// Observed state of an OtaSchedule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OtaScheduleStatus {
    #[serde(flatten)]
    pub common: ResourceStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    /// The new version waiting, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_version: Option<String>,
    /// The last approval the cloud accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved: Option<Approval>,
    /// An approval about to be sent. Recorded first, so that after a restart the operator
    /// can tell from the TaskId whether it went through, and never sends it twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<Approval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_start: Option<String>,
    /// When the last approval was accepted (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_approval_time: Option<String>,
    /// Older OtaSchedules of the same delivery group; while there is one, this one stands
    /// back and reports `Conflict`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
}
