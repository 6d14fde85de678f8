//! The Kubernetes glue: controllers, status, finalizers, events, metrics.

pub mod context;
pub mod events;
pub mod http;
pub mod kind;
pub mod kinds;
pub mod leadership;
pub mod metrics;
pub mod next_step;
pub mod object;
pub mod registry;
pub mod runner;
pub mod wiring;
