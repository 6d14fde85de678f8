//! Command implementations behind `src/main.rs`, kept in the library so tests can run them.

pub mod call;
pub mod cloud_args;
pub mod crd;
pub mod doctor;
pub mod emulator;
pub mod kube_args;
pub mod kubectl;
pub mod plan;
pub mod run;
