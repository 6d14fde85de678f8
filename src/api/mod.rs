// kube-derive takes one printcolumn(...) per column, which clippy mistakes for repeated attributes.
#![allow(clippy::duplicated_attributes)]

//! The custom resources of group `ops.alicloud.dev`, version `v1alpha1`.
//!
//! Doc comments on fields are what `kubectl explain` shows, so they are written for the
//! people who write the YAML.

pub mod common;
pub mod fota;
pub mod image_share;
pub mod maintenance;
pub mod ota;
pub mod rollout;
pub mod schedule;
pub mod validate;

pub use common::{Condition, CredentialsRef, ManagementPolicy, ResourceStatus};
pub use fota::{FotaTaskPolicy, FotaTaskPolicySpec, FotaTaskPolicyStatus};
pub use image_share::{DeletionPolicy, ImageShare, ImageShareSpec, ImageShareStatus};
pub use maintenance::{DesktopMaintenanceWindow, DesktopMaintenanceWindowSpec, DesktopMaintenanceWindowStatus};
pub use ota::{OtaSchedule, OtaScheduleSpec, OtaScheduleStatus};
pub use rollout::{UpdateRollout, UpdateRolloutSpec, UpdateRolloutStatus};

pub const GROUP: &str = "ops.alicloud.dev";
pub const VERSION: &str = "v1alpha1";
