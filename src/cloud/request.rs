//! An RPC request as the SDKs lay it out, and how it is signed for the wire.

use chrono::{DateTime, Utc};
use url::Url;

use super::canonical::{canonical_query, form_body, push_repeated, timestamp};
use super::credentials::Credentials;
use super::endpoint::{Endpoints, Product, host_header};
use super::signer::{
    SignatureVersion, sha256_hex, v2_signature, v2_string_to_sign, v3_authorization, v3_canonical_request,
    v3_signature, v3_string_to_sign,
};

pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// Parameters and headers whose values are never shown: credentials and what proves them.
const SENSITIVE: &[&str] = &[
    "SecurityToken",
    "OIDCToken",
    "AccessKeySecret",
    "Signature",
    "x-acs-security-token",
    "authorization",
];

fn shown<'a>(name: &str, value: &'a str) -> &'a str {
    if SENSITIVE.iter().any(|s| s.eq_ignore_ascii_case(name)) {
        "[REDACTED]"
    } else {
        value
    }
}

fn shown_pairs<'a, I: IntoIterator<Item = (&'a str, &'a str)>>(pairs: I) -> Vec<(&'a str, &'a str)> {
    pairs.into_iter().map(|(k, v)| (k, shown(k, v))).collect()
}

/// One RPC call: product, action and parameters, each in the query or the form body
/// exactly where the official SDK puts it.
#[derive(Clone)]
pub struct RpcRequest {
    pub product: Product,
    pub action: &'static str,
    /// Selects the endpoint and the rate-limit bucket. For appstream-center it is the
    /// delivery group's `BizRegionId`.
    pub region: String,
    pub query: Vec<(String, String)>,
    pub body: Vec<(String, String)>,
    /// Whether sending the request twice is harmless. A non-idempotent request is only
    /// sent again when the server certainly did not act on it.
    pub idempotent: bool,
    /// Whether it changes the cloud: a write is refused while the client's write gate is
    /// closed (the process lost leadership; see [`crate::cloud::gate`]).
    pub is_write: bool,
}

impl std::fmt::Debug for RpcRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn pairs(v: &[(String, String)]) -> Vec<(&str, &str)> {
            shown_pairs(v.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        }
        f.debug_struct("RpcRequest")
            .field("product", &self.product)
            .field("action", &self.action)
            .field("region", &self.region)
            .field("query", &pairs(&self.query))
            .field("body", &pairs(&self.body))
            .field("idempotent", &self.idempotent)
            .field("is_write", &self.is_write)
            .finish()
    }
}

impl RpcRequest {
    pub fn new(product: Product, action: &'static str, region: impl Into<String>) -> Self {
        RpcRequest {
            product,
            action,
            region: region.into(),
            query: Vec::new(),
            body: Vec::new(),
            idempotent: true,
            is_write: false,
        }
    }

    /// Marks the request as a write (see [`RpcRequest::is_write`]).
    pub fn write(mut self) -> Self {
        self.is_write = true;
        self
    }

    pub fn query(mut self, name: &str, value: impl Into<String>) -> Self {
        self.query.push((name.to_string(), value.into()));
        self
    }

    pub fn query_opt(self, name: &str, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(v) => self.query(name, v),
            None => self,
        }
    }

    pub fn query_list(mut self, name: &str, values: &[String]) -> Self {
        push_repeated(&mut self.query, name, values);
        self
    }

    pub fn body(mut self, name: &str, value: impl Into<String>) -> Self {
        self.body.push((name.to_string(), value.into()));
        self
    }

    pub fn not_idempotent(mut self) -> Self {
        self.idempotent = false;
        self
    }
}

/// A signed request ready for the wire.
#[derive(Clone)]
pub struct WireRequest {
    pub url: Url,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

impl std::fmt::Debug for WireRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let query: Vec<(String, String)> = self.url.query_pairs().into_owned().collect();
        let body: Option<Vec<(String, String)>> = self
            .body
            .as_ref()
            .map(|b| form_urlencoded::parse(b.as_bytes()).into_owned().collect());
        let owned = |v: &[(String, String)]| {
            v.iter()
                .map(|(k, v)| (k.clone(), shown(k, v).to_string()))
                .collect::<Vec<_>>()
        };
        f.debug_struct("WireRequest")
            .field(
                "url",
                &format_args!("{}://{}{}", self.url.scheme(), self.url.authority(), self.url.path()),
            )
            .field("query", &owned(&query))
            .field("headers", &owned(&self.headers))
            .field("body", &body.as_deref().map(owned))
            .finish()
    }
}

/// Per-attempt values: every attempt gets a fresh nonce and timestamp.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub nonce: String,
    pub now: DateTime<Utc>,
}

impl Attempt {
    pub fn fresh() -> Self {
        Attempt {
            nonce: uuid::Uuid::new_v4().to_string(),
            now: Utc::now(),
        }
    }
}

/// Signs `req` with `creds` (or leaves it unsigned for anonymous calls such as
/// AssumeRoleWithOIDC) using the chosen method.
pub fn sign(
    req: &RpcRequest,
    endpoints: &Endpoints,
    version: SignatureVersion,
    creds: Option<&Credentials>,
    attempt: &Attempt,
    user_agent: &str,
) -> WireRequest {
    let mut url = endpoints.base_url(req.product, &req.region);
    url.set_path("/");
    let host = host_header(&url);
    let body = (!req.body.is_empty()).then(|| form_body(&req.body));
    let mut headers = vec![("user-agent".to_string(), user_agent.to_string())];
    if body.is_some() {
        headers.push(("content-type".to_string(), FORM_CONTENT_TYPE.to_string()));
    }
    // An anonymous call (AssumeRoleWithOIDC) goes the RPC way under either method, as
    // Alibaba's credential clients send it: Action, Version, Format, Timestamp and a nonce in
    // the query. Without Format=JSON the answer would be XML.
    let version = if creds.is_none() { SignatureVersion::V2 } else { version };
    match version {
        SignatureVersion::V2 => {
            let ts = timestamp(attempt.now);
            let mut common: Vec<(&str, &str)> = vec![
                ("Action", req.action),
                ("Version", req.product.version()),
                ("Format", "JSON"),
                ("Timestamp", &ts),
            ];
            if creds.is_none() {
                common.push(("SignatureNonce", attempt.nonce.as_str()));
            }
            if let Some(c) = creds {
                common.extend([
                    ("SignatureMethod", "HMAC-SHA1"),
                    ("SignatureVersion", "1.0"),
                    ("SignatureNonce", attempt.nonce.as_str()),
                    ("AccessKeyId", c.access_key_id.as_str()),
                ]);
                if let Some(token) = &c.security_token {
                    common.push(("SecurityToken", token.expose()));
                }
            }
            let query_params = common
                .iter()
                .copied()
                .chain(req.query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let mut query = canonical_query(query_params.clone());
            if let Some(c) = creds {
                let signed = query_params.chain(req.body.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                let signature = v2_signature(c.access_key_secret.expose(), &v2_string_to_sign("POST", signed));
                query.push_str("&Signature=");
                query.push_str(&super::canonical::percent_encode(&signature));
            }
            url.set_query(Some(&query));
            headers.push(("x-acs-action".to_string(), req.action.to_string()));
            headers.push(("x-acs-version".to_string(), req.product.version().to_string()));
        }
        SignatureVersion::V3 => {
            let query_pairs = req.query.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            let query = canonical_query(query_pairs.clone());
            url.set_query((!query.is_empty()).then_some(query.as_str()));
            let hashed = sha256_hex(body.as_deref().unwrap_or("").as_bytes());
            let mut signed: Vec<(String, String)> = vec![
                ("host".into(), host.clone()),
                ("x-acs-action".into(), req.action.to_string()),
                ("x-acs-version".into(), req.product.version().to_string()),
                ("x-acs-date".into(), timestamp(attempt.now)),
                ("x-acs-signature-nonce".into(), attempt.nonce.clone()),
                ("x-acs-content-sha256".into(), hashed.clone()),
            ];
            if body.is_some() {
                signed.push(("content-type".into(), FORM_CONTENT_TYPE.into()));
            }
            if let Some(c) = creds {
                if let Some(token) = &c.security_token {
                    signed.push(("x-acs-security-token".into(), token.expose().to_string()));
                }
                let (canonical, signed_names) = v3_canonical_request(
                    "POST",
                    query_pairs,
                    signed.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                    &hashed,
                );
                let signature = v3_signature(c.access_key_secret.expose(), &v3_string_to_sign(&canonical));
                headers.push((
                    "authorization".into(),
                    v3_authorization(&c.access_key_id, &signed_names, &signature),
                ));
            }
            headers.extend(signed.into_iter().filter(|(k, _)| k != "content-type"));
        }
    }
    WireRequest { url, headers, body }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::canonical::parse_pairs;
    use chrono::TimeZone;

    fn attempt() -> Attempt {
        Attempt {
            nonce: "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf".into(),
            now: Utc.with_ymd_and_hms(2016, 2, 23, 12, 46, 24).unwrap(),
        }
    }

    fn creds(token: Option<&str>) -> Credentials {
        Credentials::new("testid", "testsecret", token.map(str::to_string), None)
    }

    #[test]
    fn v2_request_reproduces_the_derived_vector_and_keeps_body_out_of_the_query() {
        let req = RpcRequest::new(Product::Ecd, "SetDesktopMaintenance", "cn-hangzhou")
            .query("RegionId", "cn-hangzhou")
            .query("Mode", "ENTER")
            .query_list("DesktopIds", &["ecd-aaaa".into(), "ecd-bbbb".into()]);
        let wire = sign(
            &req,
            &Endpoints::default(),
            SignatureVersion::V2,
            Some(&creds(None)),
            &attempt(),
            "ua",
        );
        assert_eq!(wire.url.host_str(), Some("ecd.cn-hangzhou.aliyuncs.com"));
        let q = parse_pairs(wire.url.query().unwrap());
        let sig = q.iter().find(|(k, _)| k == "Signature").unwrap();
        assert_eq!(sig.1, "5Na5wvouXQtbDPBAx+lcy/8zfbM=");
        assert!(wire.body.is_none());

        let wire = sign(
            &req,
            &Endpoints::default(),
            SignatureVersion::V2,
            Some(&creds(Some("token+/="))),
            &attempt(),
            "ua",
        );
        let q = parse_pairs(wire.url.query().unwrap());
        assert!(q.contains(&("SecurityToken".into(), "token+/=".into())));
        assert!(q.contains(&("Signature".into(), "8AeTs3ImLkVtT9kmLsF/QxKMtYs=".into())));
    }

    #[test]
    fn v3_request_puts_form_parameters_in_a_signed_body() {
        let req = RpcRequest::new(Product::AppstreamCenter, "ApproveOtaTask", "cn-hangzhou")
            .body("AppInstanceGroupId", "aig-1")
            .body("BizRegionId", "cn-hangzhou")
            .body("OtaType", "Fota")
            .body("StartTime", "2026-11-23T02:00:00Z")
            .body("TaskId", "ota-1");
        let a = Attempt {
            nonce: "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf".into(),
            now: Utc.with_ymd_and_hms(2026, 11, 22, 8, 0, 0).unwrap(),
        };
        let wire = sign(
            &req,
            &Endpoints::default(),
            SignatureVersion::V3,
            Some(&creds(None)),
            &a,
            "ua",
        );
        assert_eq!(wire.url.as_str(), "https://appstream-center.cn-shanghai.aliyuncs.com/");
        assert_eq!(
            wire.body.as_deref(),
            Some(
                "AppInstanceGroupId=aig-1&BizRegionId=cn-hangzhou&OtaType=Fota&StartTime=2026-11-23T02%3A00%3A00Z&TaskId=ota-1"
            )
        );
        let auth = wire.headers.iter().find(|(k, _)| k == "authorization").unwrap();
        assert!(
            auth.1
                .ends_with("Signature=597bf4e9a433036cfcb3ef25be34a271994ce0d5dfd03bbe5da3e2883f92ebef"),
            "{}",
            auth.1
        );
        assert!(auth.1.contains("SignedHeaders=content-type;host;x-acs-action;"));
    }

    /// Unsigned, and laid out the RPC way under either method, as Alibaba's credential
    /// clients send AssumeRoleWithOIDC.
    #[test]
    fn anonymous_requests_carry_no_signature_and_go_the_rpc_way() {
        let req = RpcRequest::new(Product::Sts, "AssumeRoleWithOIDC", "").body("RoleArn", "acs:ram::1:role/x");
        for v in [SignatureVersion::V2, SignatureVersion::V3] {
            let wire = sign(&req, &Endpoints::default(), v, None, &attempt(), "ua");
            let query: Vec<(String, String)> = wire.url.query_pairs().into_owned().collect();
            let names: Vec<&str> = query.iter().map(|(k, _)| k.as_str()).collect();
            assert!(
                !names.contains(&"Signature") && !names.contains(&"AccessKeyId"),
                "{v}: {names:?}"
            );
            assert!(!wire.headers.iter().any(|(k, _)| k == "authorization"));
            for (name, value) in [
                ("Action", "AssumeRoleWithOIDC"),
                ("Version", "2015-04-01"),
                ("Format", "JSON"),
            ] {
                assert!(
                    query.iter().any(|(k, v)| k == name && v == value),
                    "{v}: {name} in {query:?}"
                );
            }
            assert!(
                names.contains(&"Timestamp") && names.contains(&"SignatureNonce"),
                "{v}: {names:?}"
            );
        }
    }
}
