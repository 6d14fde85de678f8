//! The Kubernetes glue: controllers, status, finalizers, events, metrics.

pub mod kind;
pub mod kinds;
pub mod runner;
pub mod snapshot;
