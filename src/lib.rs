//! alicloud-ops-operator: a Kubernetes operator for Alibaba Cloud end-user-computing
//! maintenance, and the local cloud emulator it is tested against.

pub mod api;
pub mod cli;
pub mod cloud;
pub mod controller;
pub mod emulator;
pub mod reconcile;
pub mod ttl_cache;
