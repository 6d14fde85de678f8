//! ImageShare: a Simple Application Server custom image shared to ECS, or not.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonSpec, ResourceStatus};

/// Keeps a Simple Application Server custom image shared to Elastic Compute Service (ECS)
/// in the same region, or not shared.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ops.alicloud.dev",
    version = "v1alpha1",
    kind = "ImageShare",
    doc = "A Simple Application Server custom image shared to ECS, or not",
    namespaced,
    status = "ImageShareStatus",
    shortname = "ishare",
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
    printcolumn(name = "Image", type_ = "string", json_path = ".spec.imageId"),
    printcolumn(name = "Shared", type_ = "boolean", json_path = ".status.inShare"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ImageShareSpec {
    /// Region of the custom image, e.g. `cn-hangzhou`. Cannot be changed.
    #[schemars(regex(pattern = r"^[a-z]{2}-[a-z0-9-]+$"), length(max = 64))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("regionId cannot be changed; create another ImageShare"))]
    pub region_id: String,
    /// The custom image id (`m-...`). Cannot be changed.
    #[schemars(regex(pattern = r"^m-[A-Za-z0-9*]+$"), length(max = 64))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("imageId cannot be changed; create another ImageShare"))]
    pub image_id: String,
    /// `true` (default) shares the image to ECS; `false` stops sharing it.
    #[serde(default = "default_true")]
    pub shared: bool,
    /// What deleting this resource does in the cloud: `Retain` (default) leaves the image as
    /// it is; `UnShare` stops sharing it to ECS first.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    #[serde(flatten)]
    pub common: CommonSpec,
}

fn default_true() -> bool {
    true
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Leave the image shared or not, as it is.
    #[default]
    Retain,
    /// Stop sharing the image to ECS before the resource goes away.
    UnShare,
}

/// Observed state of an ImageShare.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageShareStatus {
    #[serde(flatten)]
    pub common: ResourceStatus,
    /// Whether the image is shared to ECS, as last read from the cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_share: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_name: Option<String>,
    /// The image status code: `0` copying, `1` available, `2` unavailable, `3` creation
    /// failed, `4` creating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_status: Option<String>,
    /// ModifyImageShareStatus calls made for the observed generation; part of each call's
    /// ClientToken, so a retried call never acts twice and a drift repair gets a new one.
    #[serde(default)]
    pub share_operations: i32,
    /// The last ModifyImageShareStatus the operator recorded before sending it. Until the
    /// cloud answers it with success it is sent again with the same ClientToken (which the
    /// cloud applies at most once); once answered, a share can take a while to show in the
    /// cloud, and until it does (for 5 minutes at most) the operator waits for it instead of
    /// sending another call with a new ClientToken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_write: Option<ShareWrite>,
}

/// A ModifyImageShareStatus call the operator sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShareWrite {
    /// `Share` or `UnShare`.
    pub operation: String,
    /// When it was recorded, before the call (RFC 3339).
    pub at: String,
    /// The generation of the spec it was sent for.
    pub generation: i64,
    /// The call's ClientToken.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_token: String,
    /// When the cloud answered it with success (RFC 3339). Absent while its outcome is
    /// unknown: the call failed, its answer was lost, or the operator stopped first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<String>,
}
