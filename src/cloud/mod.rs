//! Everything the operator needs to talk to Alibaba Cloud: signing, credentials, HTTP,
//! retries, client-side limits and the typed calls. Nothing here knows about Kubernetes.

pub mod accounts;
pub mod canonical;
pub mod client;
pub mod credentials;
pub mod endpoint;
pub mod error;
pub mod gate;
pub mod metrics;
pub mod ops;
pub mod ram;
pub mod ratelimit;
pub mod request;
pub mod retry;
pub mod secret;
pub mod signer;
pub mod snapshot;
pub mod transport;

pub use client::{CloudClient, Cost, measure};
pub use credentials::{CredentialSource, Credentials};
pub use endpoint::{Endpoints, Product};
pub use error::{CloudError, ErrorClass};
pub use secret::SecretString;
pub use signer::SignatureVersion;
