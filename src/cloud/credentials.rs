//! Where the AccessKey comes from, and keeping temporary credentials fresh.
//!
//! The chain, first match wins:
//! 1. an explicit pair (from a Kubernetes Secret: `accessKeyId`, `accessKeySecret`,
//!    optional `securityToken`);
//! 2. `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`, optional
//!    `ALIBABA_CLOUD_SECURITY_TOKEN`;
//! 3. RRSA: `ALIBABA_CLOUD_ROLE_ARN`, `ALIBABA_CLOUD_OIDC_PROVIDER_ARN`,
//!    `ALIBABA_CLOUD_OIDC_TOKEN_FILE`, through STS AssumeRoleWithOIDC;
//! 4. the ECS RAM role from instance metadata (IMDSv2 token first).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::Mutex;
use url::Url;

use super::error::CloudError;
use super::ops::sts::{AssumeRoleWithOidc, assume_role_with_oidc};
use super::secret::SecretString;
use super::transport::Transport;

/// Refresh temporary credentials this long before they expire (as credentials-go does).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(180);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: SecretString,
    pub security_token: Option<SecretString>,
    /// When temporary credentials stop working; `None` for a long-term key.
    pub expiration: Option<DateTime<Utc>>,
}

impl Credentials {
    pub fn new(
        access_key_id: impl Into<String>,
        access_key_secret: impl Into<SecretString>,
        security_token: Option<String>,
        expiration: Option<DateTime<Utc>>,
    ) -> Self {
        Credentials {
            access_key_id: access_key_id.into(),
            access_key_secret: access_key_secret.into(),
            security_token: security_token.filter(|t| !t.is_empty()).map(SecretString::new),
            expiration,
        }
    }

    /// The credential set as a key: the AccessKeyId plus a digest of the secret. Two sets
    /// with the same id and another secret never share a snapshot or a rate-limit bucket,
    /// so naming another tenant's AccessKeyId with a wrong secret reaches neither.
    pub fn account_key(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.access_key_secret.expose().as_bytes());
        format!("{}#{}", self.access_key_id, hex::encode(&digest[..8]))
    }

    fn needs_refresh(&self, now: DateTime<Utc>) -> bool {
        self.expiration
            .is_some_and(|exp| exp - chrono::Duration::from_std(REFRESH_MARGIN).expect("small") <= now)
    }
}

/// RRSA (OIDC) settings, as ACK's pod-identity webhook injects them.
#[derive(Clone, Debug)]
pub struct RrsaConfig {
    pub role_arn: String,
    pub oidc_provider_arn: String,
    /// Re-read on every refresh: the projected token rotates.
    pub token_file: PathBuf,
    pub session_name: String,
    pub duration_seconds: u32,
}

/// ECS instance-metadata settings.
#[derive(Clone, Debug)]
pub struct EcsRoleConfig {
    pub role_name: Option<String>,
    pub metadata_base: Url,
    /// When true, a failed IMDSv2 token request is fatal instead of falling back to IMDSv1.
    pub imdsv1_disabled: bool,
}

#[derive(Clone, Debug)]
pub enum CredentialSource {
    Static { credentials: Credentials, origin: String },
    Rrsa(RrsaConfig),
    EcsRamRole(EcsRoleConfig),
}

impl CredentialSource {
    /// Chooses the first source that is configured, in the documented order. `env` reads
    /// an environment variable (injected for tests).
    pub fn from_chain(
        explicit: Option<(Credentials, String)>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> CredentialSource {
        if let Some((credentials, origin)) = explicit {
            return CredentialSource::Static { credentials, origin };
        }
        let var = |k: &str| env(k).filter(|v| !v.is_empty());
        if let (Some(id), Some(secret)) = (
            var("ALIBABA_CLOUD_ACCESS_KEY_ID"),
            var("ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
        ) {
            return CredentialSource::Static {
                credentials: Credentials::new(id, secret, var("ALIBABA_CLOUD_SECURITY_TOKEN"), None),
                origin: "environment variables ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET".into(),
            };
        }
        if let (Some(role_arn), Some(oidc_provider_arn), Some(token_file)) = (
            var("ALIBABA_CLOUD_ROLE_ARN"),
            var("ALIBABA_CLOUD_OIDC_PROVIDER_ARN"),
            var("ALIBABA_CLOUD_OIDC_TOKEN_FILE"),
        ) {
            return CredentialSource::Rrsa(RrsaConfig {
                role_arn,
                oidc_provider_arn,
                token_file: token_file.into(),
                session_name: var("ALIBABA_CLOUD_ROLE_SESSION_NAME")
                    .unwrap_or_else(|| format!("alicloud-ops-operator-{}", Utc::now().timestamp())),
                duration_seconds: 3600,
            });
        }
        CredentialSource::EcsRamRole(EcsRoleConfig {
            role_name: var("ALIBABA_CLOUD_ECS_METADATA"),
            metadata_base: Url::parse("http://100.100.100.200/").expect("static URL"),
            imdsv1_disabled: var("ALIBABA_CLOUD_IMDSV1_DISABLED").is_some_and(|v| v == "true"),
        })
    }

    /// A description for people: never contains a secret.
    pub fn describe(&self) -> String {
        match self {
            CredentialSource::Static { credentials, origin } => {
                format!("{origin} (AccessKeyId {})", credentials.access_key_id)
            }
            CredentialSource::Rrsa(c) => format!("RRSA role {} via AssumeRoleWithOIDC", c.role_arn),
            CredentialSource::EcsRamRole(c) => match &c.role_name {
                Some(r) => format!("ECS RAM role {r} from instance metadata"),
                None => "ECS RAM role from instance metadata".into(),
            },
        }
    }
}

/// Hands out credentials, caching temporary ones and refreshing them before they expire.
/// Callers that need a refresh at the same moment wait for one fetch.
pub struct CredentialProvider {
    source: CredentialSource,
    cache: Mutex<Option<Credentials>>,
    transport: Arc<Transport>,
    fetches: AtomicU64,
}

impl std::fmt::Debug for CredentialProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialProvider")
            .field("source", &self.source.describe())
            .finish()
    }
}

impl CredentialProvider {
    pub fn new(source: CredentialSource, transport: Arc<Transport>) -> Self {
        CredentialProvider {
            source,
            cache: Mutex::new(None),
            transport,
            fetches: AtomicU64::new(0),
        }
    }

    pub fn describe(&self) -> String {
        self.source.describe()
    }

    /// How many times temporary credentials were fetched (for tests and diagnostics).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Whether these credentials can be fetched again (temporary ones can).
    pub fn is_refreshable(&self) -> bool {
        !matches!(self.source, CredentialSource::Static { .. })
    }

    pub async fn get(&self) -> Result<Credentials, CloudError> {
        if let CredentialSource::Static { credentials, .. } = &self.source {
            return Ok(credentials.clone());
        }
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref().filter(|c| !c.needs_refresh(Utc::now())) {
            return Ok(c.clone());
        }
        let fresh = self.fetch().await?;
        *cache = Some(fresh.clone());
        Ok(fresh)
    }

    /// Drops `stale` from the cache (after the cloud called it expired), unless another
    /// caller already replaced it.
    pub async fn invalidate(&self, stale: &Credentials) {
        let mut cache = self.cache.lock().await;
        if cache.as_ref() == Some(stale) {
            *cache = None;
        }
    }

    async fn fetch(&self) -> Result<Credentials, CloudError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match &self.source {
            CredentialSource::Static { credentials, .. } => Ok(credentials.clone()),
            CredentialSource::Rrsa(cfg) => {
                let token = tokio::fs::read_to_string(&cfg.token_file).await.map_err(|e| {
                    CloudError::Credentials(format!("cannot read OIDC token file {}: {e}", cfg.token_file.display()))
                })?;
                let resp = assume_role_with_oidc(
                    &self.transport,
                    &AssumeRoleWithOidc {
                        role_arn: cfg.role_arn.clone(),
                        oidc_provider_arn: cfg.oidc_provider_arn.clone(),
                        oidc_token: SecretString::new(token.trim().to_string()),
                        role_session_name: cfg.session_name.clone(),
                        duration_seconds: cfg.duration_seconds,
                    },
                )
                .await?;
                Ok(resp.into_credentials())
            }
            CredentialSource::EcsRamRole(cfg) => fetch_ecs_role(cfg).await,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EcsCredentialsDoc {
    code: String,
    access_key_id: String,
    access_key_secret: String,
    security_token: String,
    expiration: DateTime<Utc>,
}

async fn fetch_ecs_role(cfg: &EcsRoleConfig) -> Result<Credentials, CloudError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| CloudError::Credentials(format!("ECS metadata: {what}: {e}"));
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| fail("client", &e))?;
    let url = |path: &str| cfg.metadata_base.join(path).map_err(|e| fail("url", &e));
    let token = match http
        .put(url("latest/api/token")?)
        .header("X-aliyun-ecs-metadata-token-ttl-seconds", "21600")
        .send()
        .await
        .and_then(|r| r.error_for_status())
    {
        Ok(r) => Some(r.text().await.map_err(|e| fail("IMDSv2 token", &e))?),
        Err(e) if cfg.imdsv1_disabled => return Err(fail("IMDSv2 token (IMDSv1 is disabled)", &e)),
        Err(_) => None,
    };
    let get = |u: Url| {
        let mut r = http.get(u);
        if let Some(t) = &token {
            r = r.header("x-aliyun-ecs-metadata-token", t);
        }
        r
    };
    let role = match &cfg.role_name {
        Some(r) => r.clone(),
        None => get(url("latest/meta-data/ram/security-credentials/")?)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| fail("role name", &e))?
            .text()
            .await
            .map_err(|e| fail("role name", &e))?
            .trim()
            .to_string(),
    };
    let doc: EcsCredentialsDoc = get(url(&format!("latest/meta-data/ram/security-credentials/{role}"))?)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| fail("credentials", &e))?
        .json()
        .await
        .map_err(|e| fail("credentials", &e))?;
    if doc.code != "Success" {
        return Err(CloudError::Credentials(format!(
            "ECS metadata answered Code {}",
            doc.code
        )));
    }
    Ok(Credentials::new(
        doc.access_key_id,
        doc.access_key_secret,
        Some(doc.security_token),
        Some(doc.expiration),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn chain_order_explicit_then_env_then_rrsa_then_ecs() {
        let all = env(&[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "envid"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "envsecret"),
            ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/r"),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", "acs:ram::1:oidc-provider/p"),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", "/tmp/t"),
        ]);
        let explicit = Credentials::new("secretid", "s", None, None);
        match CredentialSource::from_chain(Some((explicit, "Secret ns/creds".into())), &all) {
            CredentialSource::Static { credentials, origin } => {
                assert_eq!(credentials.access_key_id, "secretid");
                assert_eq!(origin, "Secret ns/creds");
            }
            other => panic!("{other:?}"),
        }
        match CredentialSource::from_chain(None, &all) {
            CredentialSource::Static { credentials, .. } => assert_eq!(credentials.access_key_id, "envid"),
            other => panic!("{other:?}"),
        }
        let rrsa = env(&[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "only-id-no-secret"),
            ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/r"),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", "acs:ram::1:oidc-provider/p"),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", "/tmp/t"),
        ]);
        assert!(
            matches!(CredentialSource::from_chain(None, &rrsa), CredentialSource::Rrsa(c) if c.role_arn == "acs:ram::1:role/r")
        );
        assert!(matches!(
            CredentialSource::from_chain(None, &env(&[])),
            CredentialSource::EcsRamRole(_)
        ));
    }

    #[test]
    fn env_security_token_is_optional_and_descriptions_hide_secrets() {
        let src = CredentialSource::from_chain(
            None,
            &env(&[
                ("ALIBABA_CLOUD_ACCESS_KEY_ID", "id"),
                ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "topsecret"),
                ("ALIBABA_CLOUD_SECURITY_TOKEN", "tok3n"),
            ]),
        );
        let CredentialSource::Static { credentials, .. } = &src else {
            panic!()
        };
        assert_eq!(credentials.security_token.as_ref().unwrap().expose(), "tok3n");
        let shown = format!("{} {:?}", src.describe(), src);
        assert!(!shown.contains("topsecret") && !shown.contains("tok3n"), "{shown}");
    }

    #[test]
    fn refresh_happens_inside_the_margin() {
        let now = Utc::now();
        let c = |secs| Credentials::new("a", "b", Some("t".into()), Some(now + chrono::Duration::seconds(secs)));
        assert!(c(60).needs_refresh(now));
        assert!(!c(600).needs_refresh(now));
        assert!(!Credentials::new("a", "b", None, None).needs_refresh(now));
    }
}
