//! The kinds' cloud reads and writes.

mod fota;
mod image_share;
mod maintenance;
mod ota;
mod update_rollout;
