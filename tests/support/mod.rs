//! Helpers shared by the integration tests: an in-process emulator and clients for it,
//! and (in `cluster`) the real kube-apiserver harness.
#![allow(dead_code)]

pub mod cluster;
pub mod memory;

use std::sync::Arc;
use std::time::Duration;

use alicloud_ops_operator::cloud::client::ClientSettings;
use alicloud_ops_operator::cloud::endpoint::{Endpoints, parse_endpoint};
use alicloud_ops_operator::cloud::metrics::CloudMetrics;
use alicloud_ops_operator::cloud::ratelimit::RateLimitConfig;
use alicloud_ops_operator::cloud::retry::RetryPolicy;
use alicloud_ops_operator::cloud::transport::TransportConfig;
use alicloud_ops_operator::cloud::{CloudClient, CredentialSource, Credentials, SignatureVersion};
use alicloud_ops_operator::emulator::{
    CloudState, DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, Emulator, EmulatorConfig,
};

pub async fn emulator() -> Emulator {
    emulator_with(CloudState::default_dataset()).await
}

pub async fn emulator_with(state: CloudState) -> Emulator {
    Emulator::start(EmulatorConfig {
        state,
        ..Default::default()
    })
    .await
    .expect("emulator starts")
}

/// A key the emulator accepts besides the default one: id, secret, and the account it
/// belongs to (`None`: the default account's, as another RAM user of it).
pub struct ExtraKey<'a>(pub &'a str, pub &'a str, pub Option<&'a str>);

/// An emulator of `state` that accepts the default key and `extra`.
pub async fn emulator_with_keys(state: CloudState, extra: &[ExtraKey<'_>]) -> Emulator {
    let mut access_keys = vec![(DEFAULT_ACCESS_KEY_ID.to_string(), DEFAULT_ACCESS_KEY_SECRET.to_string())];
    access_keys.extend(extra.iter().map(|k| (k.0.to_string(), k.1.to_string())));
    let accounts = extra
        .iter()
        .filter_map(|k| Some((k.0.to_string(), k.2?.to_string())))
        .collect();
    Emulator::start(EmulatorConfig {
        access_keys,
        accounts,
        state,
        ..Default::default()
    })
    .await
    .expect("emulator starts")
}

pub fn default_key() -> CredentialSource {
    CredentialSource::Static {
        credentials: Credentials::new(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, None, None),
        origin: "test".into(),
    }
}

/// Fast retries, no client-side rate limit: tests count exactly what reaches the emulator.
pub fn settings(emu: &Emulator, version: SignatureVersion) -> ClientSettings {
    ClientSettings {
        transport: TransportConfig {
            endpoints: Endpoints::with_override(parse_endpoint(&emu.url()).unwrap()),
            signature_version: version,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
        },
        limits: RateLimitConfig {
            qps: 0.0,
            burst: 1,
            action_quotas: vec![],
        },
        retry: RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
            max_elapsed: Duration::from_secs(5),
        },
    }
}

pub fn client(emu: &Emulator, version: SignatureVersion) -> CloudClient {
    client_with(emu, version, default_key())
}

pub fn client_with(emu: &Emulator, version: SignatureVersion, source: CredentialSource) -> CloudClient {
    CloudClient::build(settings(emu, version), source, Arc::new(CloudMetrics::default())).unwrap()
}

pub const BOTH: [SignatureVersion; 2] = [SignatureVersion::V2, SignatureVersion::V3];

/// The emulator's default access key in a command's environment, and no endpoint but the
/// one the command is given.
pub fn with_emulator_key(cmd: &mut std::process::Command) -> &mut std::process::Command {
    cmd.env(
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        alicloud_ops_operator::emulator::DEFAULT_ACCESS_KEY_ID,
    )
    .env(
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        alicloud_ops_operator::emulator::DEFAULT_ACCESS_KEY_SECRET,
    )
    .env_remove("ALICLOUD_OPS_ENDPOINT")
}

/// deploy/ram/`file` (`operator.json` or `read-only.json`), as the emulator enforces it.
pub fn project_policy(file: &str) -> alicloud_ops_operator::emulator::ram::Policy {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/ram")
        .join(file);
    alicloud_ops_operator::emulator::ram::Policy::parse(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// [`project_policy`] `file` on `emu`'s default key: what the key may call is what the policy
/// allows, as RAM would.
pub fn under_project_policy(emu: &Emulator, file: &str) {
    emu.world()
        .attach_policy(DEFAULT_ACCESS_KEY_ID, Some(project_policy(file)));
}
