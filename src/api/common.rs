//! Fields and status every kind shares.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Secret in the same namespace as the resource.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsRef {
    /// Name of a Secret in this resource's namespace, with keys `accessKeyId`,
    /// `accessKeySecret` and optionally `securityToken`. A Secret in another namespace can
    /// never be used.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,
}

/// What the operator may do in the cloud.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ManagementPolicy {
    /// Read the cloud and change it to match the spec.
    #[default]
    Manage,
    /// Read the cloud and report drift in status; never write.
    ObserveOnly,
}

/// The fields every kind accepts, besides its own.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonSpec {
    /// Secret with the AccessKey to use. Without it, the operator's own credentials apply
    /// (environment, RRSA or the ECS RAM role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<CredentialsRef>,
    /// While true, nothing is read from or written to the cloud.
    #[serde(default)]
    pub suspend: bool,
    /// `Manage` (default) changes the cloud to match the spec; `ObserveOnly` only reports drift.
    #[serde(default)]
    pub management_policy: ManagementPolicy,
    /// How often the cloud is read again to find drift, e.g. `10m` or `1h30m`: from `10s`
    /// to `24h`. Defaults to the operator's `--resync-interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(s|m|h))+$"), length(max = 16))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('10s') && duration(self) <= duration('24h')").message("resyncInterval must be between 10s and 24h"))]
    pub resync_interval: Option<String>,
}

/// A condition in the usual Kubernetes shape.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready` (the cloud matches the spec) or `Synced` (the last reconcile succeeded).
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase word. Terminal: `InvalidSpec`, `StartTimeInPast` (they wait for a change
    /// of the spec). Retried at the resync, but a person must act: `NotFound`, `Conflict`,
    /// `CredentialsInvalid`, `CloudRejected`; `PartiallyMaintained` (a maintenance window
    /// ended with computers skipped) until the next window; `UpgradeFailed` (an approved OTA
    /// upgrade failed); `PausedByFailures` (a rollout stopped by failures, until resumed). The
    /// others are retried or mean progress.
    pub reason: String,
    pub message: String,
    /// The generation of the spec this condition describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
}

/// The status fields every kind has.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// The generation of the spec the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The last value of the `ops.alicloud.dev/reconcile-requested-at` annotation that was
    /// honoured with fresh cloud reads: each value is honoured once, across restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile_requested_at: Option<String>,
}

impl ResourceStatus {
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}
