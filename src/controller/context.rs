//! What every reconcile of every kind shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::runtime::events::Recorder;

use super::kind::{ClaimsTargets, KindEnv, ObjectKey, Recaller, account_key};
use super::metrics::Metrics;
use super::runner::CloudSides;
use crate::api::common::CredentialsRef;
use crate::cloud::retry::RetryPolicy;
use crate::cloud::snapshot::SnapshotCache;
use crate::cloud::{CloudClient, CredentialSource, Credentials};
use crate::ttl_cache::TtlCache;

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "alicloud-ops-operator";
/// The finalizer on resources whose deletion has cloud work to do.
pub const FINALIZER: &str = "ops.alicloud.dev/cleanup";
/// `"true"` lets a resource go without its cloud cleanup.
pub const SKIP_CLEANUP: &str = "ops.alicloud.dev/skip-cleanup";
/// The label that marks a Secret as cloud credentials. Such Secrets are watched (metadata
/// only), so a rotated key re-reconciles the resources that name it at once; others are
/// read again within [`SECRET_CACHE_TTL`] and seen at the next resync.
pub const CREDENTIALS_LABEL: &str = "ops.alicloud.dev/credentials";
/// How long a Secret read by name answers again (a labelled Secret's change ends it early).
pub const SECRET_CACHE_TTL: Duration = Duration::from_secs(10);
/// Any new value forces a reconcile with fresh cloud reads.
pub const RECONCILE_REQUESTED_AT: &str = "ops.alicloud.dev/reconcile-requested-at";

/// Reconciles running at once per kind, unless `--concurrency` says otherwise.
pub const DEFAULT_CONCURRENCY: u16 = 8;

/// Which namespaces may use the operator's own credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DefaultCredentials {
    /// None: every resource names a Secret (the default).
    #[default]
    Nowhere,
    Everywhere,
    In(std::collections::BTreeSet<String>),
}

impl DefaultCredentials {
    /// From `--default-credentials-namespaces`: names, or `*` for all.
    pub fn from_list(names: &[String]) -> Self {
        let names: std::collections::BTreeSet<String> = names
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        if names.contains("*") {
            DefaultCredentials::Everywhere
        } else if names.is_empty() {
            DefaultCredentials::Nowhere
        } else {
            DefaultCredentials::In(names)
        }
    }

    pub fn allows(&self, namespace: &str) -> bool {
        match self {
            DefaultCredentials::Nowhere => false,
            DefaultCredentials::Everywhere => true,
            DefaultCredentials::In(names) => names.contains(namespace),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub resync: Duration,
    pub concurrency: u16,
    /// Watch one namespace, or all when `None`.
    pub namespace: Option<String>,
    /// Where a resource without `credentialsRef` may use the operator's own credentials.
    pub default_credentials: DefaultCredentials,
    /// The per-object backoff after a failed reconcile: exponential with full jitter, never
    /// less than its base (its attempt and time bounds do not apply: an object is retried
    /// until it succeeds).
    pub error_backoff: RetryPolicy,
}

pub struct Context {
    pub client: kube::Client,
    /// The operator's own credentials (the default chain).
    pub cloud: CloudClient,
    pub snapshots: Arc<SnapshotCache>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub config: RunConfig,
    /// Consecutive failures per object, for exponential backoff.
    failures: Mutex<HashMap<ObjectKey, u32>>,
    /// Account keys by (namespace, Secret name), with when they were read.
    accounts: TtlCache<CredentialsKey, Option<String>>,
    /// The credential values of Secrets read by name, with when they were read. Only the
    /// three keys the operator uses are kept, as redacting strings.
    secrets: TtlCache<(String, String), SecretKeys>,
    /// Where the resources of each kind that approves OTA updates of delivery groups are
    /// read (their watch caches), for conflicts between kinds.
    claim_sources: Mutex<Vec<(&'static str, ClaimSource)>>,
    /// Per kind: how its controller is asked to reconcile an object again.
    requeuers: Mutex<HashMap<&'static str, Requeuer>>,
}

/// Asks the controller of one kind to reconcile an object again, soon.
pub type Requeuer = Arc<dyn Fn(&ObjectKey) + Send + Sync>;

/// The resources of one kind that approve OTA updates of delivery groups, as its watch
/// cache holds them now.
pub type ClaimSource = Arc<dyn Fn() -> Vec<Arc<dyn ClaimsTargets>> + Send + Sync>;

/// The values the operator takes from a credentials Secret.
#[derive(Clone)]
struct SecretKeys {
    access_key_id: Option<String>,
    access_key_secret: Option<crate::cloud::SecretString>,
    security_token: Option<crate::cloud::SecretString>,
}

/// (namespace, Secret name), `None` for the operator's own credentials.
type CredentialsKey = (String, Option<String>);

const ACCOUNT_CACHE_TTL: Duration = Duration::from_secs(30);
/// The most Secrets (and accounts) the caches hold; the least recently read goes first.
const CACHE_CAPACITY: usize = 10_000;

/// Why the credentials of a resource cannot be used. Never holds a secret value.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("Secret {0} not found in the resource's namespace")]
    Missing(String),
    #[error("Secret {0} has no {1} key")]
    MissingKey(String, &'static str),
    #[error(
        "spec.credentialsRef is not set, and resources in namespace {0} may not use the operator's own \
         credentials (the operator's --default-credentials-namespaces does not list it); name a Secret of \
         this namespace in spec.credentialsRef"
    )]
    DefaultNotAllowed(String),
    #[error("cannot read Secret {0}: {1}")]
    Read(String, #[source] kube::Error),
}

impl CredentialsError {
    /// A failure of Kubernetes rather than of the Secret (too many requests, a server error,
    /// no answer): backed off and retried, never reported as bad credentials.
    pub fn is_transient(&self) -> bool {
        match self {
            CredentialsError::Read(_, kube::Error::Api(status)) => status.code == 429 || status.code >= 500,
            // Not an answer of the apiserver: the connection, a timeout, a body cut short.
            CredentialsError::Read(_, _) => true,
            _ => false,
        }
    }
}

impl Context {
    pub fn new(
        client: kube::Client,
        cloud: CloudClient,
        snapshots: Arc<SnapshotCache>,
        metrics: Arc<Metrics>,
        recorder: Recorder,
        config: RunConfig,
    ) -> Self {
        Context {
            client,
            cloud,
            snapshots,
            metrics,
            recorder,
            config,
            failures: Mutex::new(HashMap::new()),
            accounts: TtlCache::new(ACCOUNT_CACHE_TTL, CACHE_CAPACITY),
            secrets: TtlCache::new(SECRET_CACHE_TTL, CACHE_CAPACITY),
            claim_sources: Mutex::default(),
            requeuers: Mutex::default(),
        }
    }

    /// The credential values of a Secret, read by name (never listed), cached briefly.
    async fn secret_keys(&self, namespace: &str, name: &str, full: &str) -> Result<SecretKeys, CredentialsError> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(keys) = self.secrets.get(&key) {
            return Ok(keys);
        }
        let secret = Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| CredentialsError::Read(full.to_string(), e))?
            .ok_or_else(|| CredentialsError::Missing(full.to_string()))?;
        let value = |k: &str| -> Option<String> {
            let from_data = secret
                .data
                .as_ref()
                .and_then(|d| d.get(k))
                .map(|b| String::from_utf8_lossy(&b.0).into_owned());
            let from_string = secret.string_data.as_ref().and_then(|d| d.get(k)).cloned();
            from_data
                .or(from_string)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let keys = SecretKeys {
            access_key_id: value("accessKeyId"),
            access_key_secret: value("accessKeySecret").map(crate::cloud::SecretString::new),
            security_token: value("securityToken").map(crate::cloud::SecretString::new),
        };
        self.secrets.insert(key, keys.clone());
        Ok(keys)
    }

    /// A watched Secret changed or went away: read it again next time.
    pub fn forget_secret(&self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        self.secrets.remove(&key);
        self.accounts.remove(&(key.0, Some(key.1)));
    }

    /// Records a failure and returns how long to wait: exponential with full jitter,
    /// never less than the base.
    pub fn next_backoff(&self, key: &ObjectKey) -> Duration {
        let mut failures = self.failures.lock().expect("failures lock");
        let n = failures.entry(key.clone()).or_default();
        *n = n.saturating_add(1);
        let policy = &self.config.error_backoff;
        policy.delay(*n, &mut rand::rng()).max(policy.base_delay)
    }

    pub fn reset_backoff(&self, key: &ObjectKey) {
        self.failures.lock().expect("failures lock").remove(key);
    }

    /// Registers where the resources of `kind`, a kind that approves OTA updates of delivery
    /// groups, are read.
    /// Registers how the controller of `kind` is asked to reconcile an object again.
    pub fn add_requeuer(&self, kind: &'static str, requeuer: Requeuer) {
        self.requeuers.lock().expect("requeuers lock").insert(kind, requeuer);
    }

    pub fn add_claim_source(&self, kind: &'static str, source: ClaimSource) {
        self.claim_sources
            .lock()
            .expect("claim sources lock")
            .push((kind, source));
    }

    /// Forgets the backoff of every object of `kind` whose key `exists` denies (the watch
    /// re-listed and it is gone).
    pub fn forget_backoffs_of(&self, kind: &str, exists: impl Fn(&ObjectKey) -> bool) {
        self.failures
            .lock()
            .expect("failures lock")
            .retain(|key, _| key.kind != kind || exists(key));
    }
}

impl CloudSides for Context {
    fn recaller(&self, key: &ObjectKey) -> Option<Recaller> {
        let requeue = self.requeuers.lock().expect("requeuers lock").get(key.kind).cloned()?;
        let key = key.clone();
        Some(Arc::new(move || requeue(&key)))
    }

    fn claimants(&self, kind: &str) -> Vec<Arc<dyn ClaimsTargets>> {
        let sources: Vec<ClaimSource> = self
            .claim_sources
            .lock()
            .expect("claim sources lock")
            .iter()
            .filter(|(k, _)| *k != kind)
            .map(|(_, s)| s.clone())
            .collect();
        sources.iter().flat_map(|s| s()).collect()
    }

    /// The cloud side for a resource: its Secret (same namespace only) or the default chain.
    async fn env_for(
        &self,
        namespace: &str,
        credentials_ref: Option<&CredentialsRef>,
    ) -> Result<(KindEnv, String), CredentialsError> {
        let Some(r) = credentials_ref else {
            if !self.config.default_credentials.allows(namespace) {
                return Err(CredentialsError::DefaultNotAllowed(namespace.to_string()));
            }
            let account = account_key(&self.cloud, "default".into()).await;
            let env = KindEnv::new(self.cloud.clone(), account, self.snapshots.clone());
            return Ok((env, "the operator's credentials".into()));
        };
        let full = format!("{namespace}/{}", r.name);
        let keys = self.secret_keys(namespace, &r.name, &full).await?;
        let id = keys
            .access_key_id
            .ok_or_else(|| CredentialsError::MissingKey(full.clone(), "accessKeyId"))?;
        let key_secret = keys
            .access_key_secret
            .ok_or_else(|| CredentialsError::MissingKey(full.clone(), "accessKeySecret"))?;
        let creds = Credentials {
            access_key_id: id,
            access_key_secret: key_secret,
            security_token: keys.security_token,
            expiration: None,
        };
        let fallback = creds.account_key();
        let origin = format!("Secret {full}");
        let cloud = self.cloud.with_credentials(CredentialSource::Static {
            credentials: creds,
            origin: origin.clone(),
        });
        let account = account_key(&cloud, fallback).await;
        Ok((KindEnv::new(cloud, account, self.snapshots.clone()), origin))
    }

    /// The cloud account a resource's credentials act in (`None`: they cannot be read, or
    /// the cloud cannot say). Cached briefly: conflicts between peers are decided on it at
    /// every reconcile.
    async fn account_of(&self, namespace: &str, credentials_ref: Option<&CredentialsRef>) -> Option<String> {
        let key = (namespace.to_string(), credentials_ref.map(|r| r.name.clone()));
        if let Some(account) = self.accounts.get(&key) {
            return account;
        }
        // A failure is kept as long as an answer: a missing Secret is not read again at every
        // reconcile of every peer (a change of a labelled Secret forgets it at once).
        let account = self.resolve_account(namespace, credentials_ref).await;
        self.accounts.insert(key, account.clone());
        account
    }
}

#[cfg(test)]
mod tests {
    use super::DefaultCredentials;

    /// A Secret that Kubernetes could not read for a moment is not a bad Secret.
    #[test]
    fn only_kubernetes_failures_of_a_secret_read_are_transient() {
        use super::CredentialsError;
        let api = |code: u16| {
            CredentialsError::Read(
                "ns/creds".into(),
                kube::Error::Api(kube::core::Status::failure("m", "r").with_code(code).boxed()),
            )
        };
        for code in [429, 500, 503, 504] {
            assert!(api(code).is_transient(), "{code}");
        }
        for code in [401, 403] {
            assert!(!api(code).is_transient(), "{code}: RBAC or the token, not a hiccup");
        }
        assert!(!CredentialsError::Missing("ns/creds".into()).is_transient());
        assert!(!CredentialsError::MissingKey("ns/creds".into(), "accessKeyId").is_transient());
    }

    #[test]
    fn default_credentials_are_an_explicit_choice() {
        let list = |v: &[&str]| DefaultCredentials::from_list(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(!list(&[]).allows("team-a"), "nobody by default");
        assert!(!list(&[" ", ""]).allows("team-a"));
        assert!(list(&["*"]).allows("team-a"));
        let some = list(&["ops", " platform "]);
        assert!(some.allows("ops") && some.allows("platform") && !some.allows("team-a"));
    }
}
