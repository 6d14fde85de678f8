//! FotaTaskPolicy: whether EDS image-update (FOTA) tasks are pushed automatically.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonSpec, ResourceStatus};

/// Keeps the auto-push switch of Elastic Desktop Service image-update tasks as wanted:
/// `autoPush: true` sets UserStatus `Running` (pushed automatically), `false` sets `Pending`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ops.alicloud.dev",
    version = "v1alpha1",
    kind = "FotaTaskPolicy",
    doc = "Auto-push policy of Elastic Desktop Service image-update (FOTA) tasks",
    namespaced,
    status = "FotaTaskPolicyStatus",
    shortname = "ftp",
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
    printcolumn(name = "Region", type_ = "string", json_path = ".spec.regionId"),
    printcolumn(name = "AutoPush", type_ = "boolean", json_path = ".spec.autoPush"),
    printcolumn(name = "Tasks", type_ = "integer", json_path = ".status.matchedTasks"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct FotaTaskPolicySpec {
    /// Region of the Elastic Desktop Service tasks, e.g. `cn-hangzhou`.
    #[schemars(regex(pattern = r"^[a-z]{2}-[a-z0-9-]+$"), length(max = 64))]
    pub region_id: String,
    /// `true`: push the image update automatically (UserStatus `Running`); `false`: do not
    /// (UserStatus `Pending`). Only effective while the region's global auto-update switch,
    /// in the console, is off.
    pub auto_push: bool,
    /// The task ids (`aot-...`) this policy covers. Leave it out to cover every task in the
    /// region, including tasks published later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 500), extend("x-kubernetes-list-type" = "set"))]
    pub task_uids: Option<Vec<TaskUid>>,
    #[serde(flatten)]
    pub common: CommonSpec,
}

/// An image-update task id, such as `aot-c4khwrp9ocml4****`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct TaskUid(#[schemars(regex(pattern = r"^aot-[A-Za-z0-9*]+$"), length(max = 64))] pub String);

/// A task this policy covers, as last read from the cloud.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedTask {
    pub task_uid: String,
    pub app_version: String,
    pub publish_time: String,
    /// The task's push state as the cloud reports it (`Running` or `Pending`).
    pub status: String,
    /// The UserStatus this policy last wrote to the task, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<WrittenStatus>,
}

/// A UserStatus write this policy made.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WrittenStatus {
    /// `Running` or `Pending`.
    pub user_status: String,
    /// When it was written (RFC 3339).
    pub at: String,
}

/// Observed state of a FotaTaskPolicy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FotaTaskPolicyStatus {
    #[serde(flatten)]
    pub common: ResourceStatus,
    /// How many tasks this policy covers.
    #[serde(default)]
    pub matched_tasks: i32,
    /// The tasks this policy covers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<ObservedTask>,
    /// Tasks left to an older policy that wants the opposite (as `namespace/name`), or to an
    /// older FOTA UpdateRollout that holds the task `Pending` (as `UpdateRollout namespace/name`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
}
