//! Verifies requests as the cloud does, with the client's own canonicalisation and signer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use chrono::{DateTime, NaiveDateTime, Utc};

use super::error::{ApiFailure, ApiResult};
use super::params::Params;
use crate::cloud::signer::{
    V3_ALGORITHM, constant_time_eq, parse_v3_authorization, sha256_hex, v2_signature, v2_string_to_sign,
    v3_canonical_request, v3_signature, v3_string_to_sign,
};

/// How far a request's timestamp may be from the server's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// Who sent a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    Key { access_key_id: String },
    Anonymous,
}

impl Caller {
    pub fn access_key_id(&self) -> &str {
        match self {
            Caller::Key { access_key_id } => access_key_id,
            Caller::Anonymous => "",
        }
    }
}

#[derive(Clone, Debug)]
struct StsKey {
    secret: String,
    token: String,
    expiration: DateTime<Utc>,
    identity: Identity,
}

/// Who a key acts as, as STS GetCallerIdentity answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub account_id: String,
    /// `RAMUser` for a long-term key, `AssumedRoleUser` for an STS one.
    pub identity_type: String,
    pub arn: String,
    pub user_id: String,
    pub principal_id: String,
    pub role_id: String,
}

/// Known keys: the long-term pairs given on the command line and the temporary ones
/// handed out by AssumeRoleWithOIDC.
#[derive(Debug, Default)]
pub struct KeyStore {
    keys: HashMap<String, String>,
    /// The account of each long-term key; a key not listed is the default account's.
    accounts: HashMap<String, String>,
    sts: HashMap<String, StsKey>,
}

impl KeyStore {
    pub fn new(pairs: &[(String, String)]) -> Self {
        KeyStore {
            keys: pairs.iter().cloned().collect(),
            accounts: HashMap::new(),
            sts: HashMap::new(),
        }
    }

    /// Places long-term keys in accounts: `(AccessKeyId, AccountId)`.
    pub fn with_accounts(mut self, accounts: &[(String, String)]) -> Self {
        self.accounts = accounts.iter().cloned().collect();
        self
    }

    pub fn add_sts(
        &mut self,
        id: String,
        secret: String,
        token: String,
        expiration: DateTime<Utc>,
        identity: Identity,
    ) {
        self.sts.insert(
            id,
            StsKey {
                secret,
                token,
                expiration,
                identity,
            },
        );
    }

    /// Whom `id` acts as (a key the store does not know acts as nobody).
    pub fn identity(&self, id: &str) -> Option<Identity> {
        if let Some(k) = self.sts.get(id) {
            return Some(k.identity.clone());
        }
        self.keys.contains_key(id).then(|| {
            let account = self
                .accounts
                .get(id)
                .cloned()
                .unwrap_or_else(|| super::DEFAULT_ACCOUNT_ID.to_string());
            // One RAM user per key, named after it, with a stable numeric id.
            let user_id: String = id
                .bytes()
                .fold(1u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
                .to_string()
                .chars()
                .take(15)
                .collect();
            Identity {
                arn: format!("acs:ram::{account}:user/{}", id.to_ascii_lowercase()),
                account_id: account,
                identity_type: "RAMUser".into(),
                principal_id: user_id.clone(),
                user_id,
                role_id: String::new(),
            }
        })
    }

    /// The account `id` belongs to; quotas are the account's, whichever key spends them.
    pub fn account_of(&self, id: &str) -> String {
        self.identity(id)
            .map(|i| i.account_id)
            .unwrap_or_else(|| id.to_string())
    }

    /// The secret of `id`, after checking its STS token (if it is a temporary key).
    fn secret(&self, id: &str, token: Option<&str>, now: DateTime<Utc>) -> ApiResult<String> {
        if let Some(secret) = self.keys.get(id) {
            if token.is_some() {
                return Err(ApiFailure::new(
                    400,
                    "InvalidSecurityToken.MismatchWithAccessKey",
                    "The SecurityToken does not belong to this AccessKeyId.",
                ));
            }
            return Ok(secret.clone());
        }
        if let Some(k) = self.sts.get(id) {
            match token {
                None => return Err(ApiFailure::missing("SecurityToken")),
                Some(t) if !constant_time_eq(t, &k.token) => {
                    return Err(ApiFailure::new(
                        400,
                        "InvalidSecurityToken.MismatchWithAccessKey",
                        "The SecurityToken does not belong to this AccessKeyId.",
                    ));
                }
                Some(_) if now >= k.expiration => {
                    return Err(ApiFailure::new(
                        403,
                        "InvalidSecurityToken.Expired",
                        "Specified SecurityToken is expired.",
                    ));
                }
                Some(_) => return Ok(k.secret.clone()),
            }
        }
        if token.is_some() {
            return Err(ApiFailure::new(
                403,
                "InvalidSecurityToken.Malformed",
                "Specified SecurityToken is not issued by this service.",
            ));
        }
        Err(ApiFailure::new(
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        ))
    }
}

/// Nonces seen in the last 15 minutes.
#[derive(Debug)]
pub struct NonceCache {
    seen: HashMap<String, Instant>,
    last_prune: Instant,
}

impl Default for NonceCache {
    fn default() -> Self {
        NonceCache {
            seen: HashMap::new(),
            last_prune: Instant::now(),
        }
    }
}

impl NonceCache {
    /// Records `nonce`; false if it was already used within the window.
    pub fn check_and_record(&mut self, nonce: &str) -> bool {
        let now = Instant::now();
        if now.duration_since(self.last_prune) > Duration::from_secs(60) {
            self.seen.retain(|_, t| now.duration_since(*t) < MAX_SKEW);
            self.last_prune = now;
        }
        match self.seen.get(nonce) {
            Some(t) if now.duration_since(*t) < MAX_SKEW => false,
            _ => {
                self.seen.insert(nonce.to_string(), now);
                true
            }
        }
    }
}

/// What verification needs from the HTTP request.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub headers: &'a HeaderMap,
    pub query: &'a [(String, String)],
    /// Query and form-body parameters together.
    pub params: &'a Params,
    pub body: &'a [u8],
}

impl SignedRequest<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn is_v3(&self) -> bool {
        self.header("authorization")
            .is_some_and(|a| a.starts_with(V3_ALGORITHM))
    }

    /// True when the request carries no signature at all.
    pub fn is_unsigned(&self) -> bool {
        self.header("authorization").is_none() && self.params.get("Signature").is_none()
    }

    /// The action and version, from the V3 headers or the V2 parameters.
    pub fn action_and_version(&self) -> (Option<&str>, Option<&str>) {
        let (ha, hv) = (self.header("x-acs-action"), self.header("x-acs-version"));
        (
            self.params.optional("Action").or(ha),
            self.params.optional("Version").or(hv),
        )
    }
}

fn parse_timestamp(name: &str, value: &str) -> ApiResult<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%SZ")
        .map(|n| n.and_utc())
        .or_else(|_| DateTime::parse_from_rfc3339(value).map(|d| d.with_timezone(&Utc)))
        .map_err(|_| {
            ApiFailure::new(
                400,
                "InvalidTimeStamp.Format",
                format!("Specified {name} {value:?} is not in the format yyyy-MM-ddTHH:mm:ssZ."),
            )
        })
}

fn check_fresh(name: &str, value: &str) -> ApiResult<()> {
    let ts = parse_timestamp(name, value)?;
    let skew = (Utc::now() - ts).num_seconds().unsigned_abs();
    if skew > MAX_SKEW.as_secs() {
        return Err(ApiFailure::new(
            400,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        ));
    }
    Ok(())
}

fn nonce_used() -> ApiFailure {
    ApiFailure::new(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
}

/// Verifies a V2 or V3 signature. `now` is the emulator clock (for STS expiry).
pub fn verify(
    req: &SignedRequest<'_>,
    keys: &KeyStore,
    nonces: &mut NonceCache,
    now: DateTime<Utc>,
) -> ApiResult<Caller> {
    if req.is_v3() {
        verify_v3(req, keys, nonces, now)
    } else {
        verify_v2(req, keys, nonces, now)
    }
}

fn verify_v2(
    req: &SignedRequest<'_>,
    keys: &KeyStore,
    nonces: &mut NonceCache,
    now: DateTime<Utc>,
) -> ApiResult<Caller> {
    let p = req.params;
    let access_key_id = p.required("AccessKeyId")?;
    let signature = p.required("Signature")?;
    if p.required("SignatureMethod")? != "HMAC-SHA1" {
        return Err(ApiFailure::invalid(
            "SignatureMethod",
            "only HMAC-SHA1 is supported with SignatureVersion 1.0",
        ));
    }
    if p.required("SignatureVersion")? != "1.0" {
        return Err(ApiFailure::invalid("SignatureVersion", "must be 1.0"));
    }
    let nonce = p.required("SignatureNonce")?;
    check_fresh("Timestamp", p.required("Timestamp")?)?;
    let secret = keys.secret(access_key_id, p.optional("SecurityToken"), now)?;
    let string_to_sign = v2_string_to_sign(req.method, p.pairs().iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if !constant_time_eq(&v2_signature(&secret, &string_to_sign), signature) {
        return Err(ApiFailure::new(
            400,
            "SignatureDoesNotMatch",
            format!(
                "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
            ),
        ));
    }
    if !nonces.check_and_record(nonce) {
        return Err(nonce_used());
    }
    Ok(Caller::Key {
        access_key_id: access_key_id.to_string(),
    })
}

fn verify_v3(
    req: &SignedRequest<'_>,
    keys: &KeyStore,
    nonces: &mut NonceCache,
    now: DateTime<Utc>,
) -> ApiResult<Caller> {
    let auth = req
        .header("authorization")
        .and_then(parse_v3_authorization)
        .ok_or_else(|| {
            ApiFailure::new(
                400,
                "IncompleteSignature",
                "The request signature does not conform to Alibaba Cloud standards.",
            )
        })?;
    for required in [
        "host",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-content-sha256",
        "x-acs-action",
        "x-acs-version",
    ] {
        if req.header(required).is_none() {
            return Err(ApiFailure::missing(required));
        }
        if !auth.signed_headers.iter().any(|h| h == required) {
            return Err(ApiFailure::new(
                400,
                "IncompleteSignature",
                format!("The header {required} must be signed."),
            ));
        }
    }
    let token = req.header("x-acs-security-token");
    if token.is_some() && !auth.signed_headers.iter().any(|h| h == "x-acs-security-token") {
        return Err(ApiFailure::new(
            400,
            "IncompleteSignature",
            "The header x-acs-security-token must be signed.",
        ));
    }
    check_fresh("x-acs-date", req.header("x-acs-date").unwrap_or_default())?;
    let hashed = req.header("x-acs-content-sha256").unwrap_or_default();
    if hashed != sha256_hex(req.body) {
        return Err(ApiFailure::new(
            400,
            "SignatureDoesNotMatch",
            "The x-acs-content-sha256 header does not match the request body.",
        ));
    }
    let secret = keys.secret(&auth.access_key_id, token, now)?;
    let mut signed: Vec<(&str, &str)> = Vec::new();
    for name in &auth.signed_headers {
        for value in req.headers.get_all(name.as_str()) {
            signed.push((name.as_str(), value.to_str().unwrap_or_default()));
        }
    }
    let (canonical, _) = v3_canonical_request(
        req.method,
        req.query.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        signed,
        hashed,
    );
    let string_to_sign = v3_string_to_sign(&canonical);
    if !constant_time_eq(&v3_signature(&secret, &string_to_sign), &auth.signature) {
        return Err(ApiFailure::new(
            400,
            "SignatureDoesNotMatch",
            format!(
                "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
            ),
        ));
    }
    if !nonces.check_and_record(req.header("x-acs-signature-nonce").unwrap_or_default()) {
        return Err(nonce_used());
    }
    Ok(Caller::Key {
        access_key_id: auth.access_key_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_single_use() {
        let mut n = NonceCache::default();
        assert!(n.check_and_record("a"));
        assert!(!n.check_and_record("a"));
        assert!(n.check_and_record("b"));
    }

    #[test]
    fn sts_keys_expire_by_the_emulator_clock() {
        let mut ks = KeyStore::new(&[("ak".into(), "sk".into())]);
        let now = Utc::now();
        ks.add_sts(
            "STS.a".into(),
            "s".into(),
            "tok".into(),
            now + chrono::Duration::minutes(5),
            ks.identity("ak").unwrap(),
        );
        assert_eq!(ks.secret("STS.a", Some("tok"), now).unwrap(), "s");
        assert_eq!(
            ks.secret("STS.a", Some("tok"), now + chrono::Duration::minutes(6))
                .unwrap_err()
                .code,
            "InvalidSecurityToken.Expired"
        );
        assert_eq!(
            ks.secret("STS.a", Some("nope"), now).unwrap_err().code,
            "InvalidSecurityToken.MismatchWithAccessKey"
        );
        assert_eq!(
            ks.secret("STS.never", Some("tok"), now).unwrap_err().code,
            "InvalidSecurityToken.Malformed"
        );
        assert_eq!(
            ks.secret("unknown", None, now).unwrap_err().code,
            "InvalidAccessKeyId.NotFound"
        );
        assert_eq!(ks.secret("ak", None, now).unwrap(), "sk");
    }

    #[test]
    fn timestamps_must_be_recent_and_well_formed() {
        assert_eq!(
            check_fresh("Timestamp", "2016-02-23T12:46:24Z").unwrap_err().code,
            "InvalidTimeStamp.Expired"
        );
        assert_eq!(
            check_fresh("Timestamp", "yesterday").unwrap_err().code,
            "InvalidTimeStamp.Format"
        );
        assert!(check_fresh("Timestamp", &crate::cloud::canonical::timestamp(Utc::now())).is_ok());
    }
}
