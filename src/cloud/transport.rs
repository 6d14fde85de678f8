//! One attempt on the wire: sign, send, time, and turn the answer into JSON or an error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::credentials::Credentials;
use super::endpoint::Endpoints;
use super::error::{ApiError, CloudError, TransportFailure, throttling_time_left};
use super::metrics::CloudMetrics;
use super::request::{Attempt, RpcRequest, sign};
use super::signer::SignatureVersion;

#[derive(Clone, Debug)]
pub struct TransportConfig {
    pub endpoints: Endpoints,
    pub signature_version: SignatureVersion,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            endpoints: Endpoints::default(),
            signature_version: SignatureVersion::default(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

pub fn user_agent() -> String {
    format!("alicloud-ops-operator/{}", env!("CARGO_PKG_VERSION"))
}

/// A pooled HTTP client plus where and how to sign. Shared by every credential set.
#[derive(Debug)]
pub struct Transport {
    http: reqwest::Client,
    config: TransportConfig,
    user_agent: String,
    metrics: Arc<CloudMetrics>,
}

impl Transport {
    pub fn new(config: TransportConfig, metrics: Arc<CloudMetrics>) -> Result<Self, CloudError> {
        let http = reqwest::Client::builder()
            // A redirect would resend signed parameters (and the V2 token) to another host.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| CloudError::InvalidRequest(format!("cannot build the HTTP client: {e}")))?;
        Ok(Transport {
            http,
            config,
            user_agent: user_agent(),
            metrics,
        })
    }

    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    pub fn metrics(&self) -> &Arc<CloudMetrics> {
        &self.metrics
    }

    /// Sends `req` once, with a fresh nonce and timestamp. `creds` is `None` only for
    /// anonymous actions (AssumeRoleWithOIDC).
    pub async fn send_once(&self, req: &RpcRequest, creds: Option<&Credentials>) -> Result<Value, CloudError> {
        let wire = sign(
            req,
            &self.config.endpoints,
            self.config.signature_version,
            creds,
            &Attempt::fresh(),
            &self.user_agent,
        );
        let endpoint = format!("{}://{}", wire.url.scheme(), super::endpoint::host_header(&wire.url));
        let mut builder = self.http.post(wire.url);
        for (k, v) in &wire.headers {
            builder = builder.header(k, v);
        }
        if let Some(body) = wire.body {
            builder = builder.body(body);
        }
        let started = Instant::now();
        let result = self
            .read(req.action, &endpoint, builder)
            .await
            .map_err(|e| redact_error(e, creds));
        let code = match &result {
            Ok(_) => "success",
            Err(e) => e.code(),
        };
        self.metrics
            .observe(req.product.code(), req.action, code, started.elapsed());
        result
    }

    async fn read(&self, action: &str, endpoint: &str, builder: reqwest::RequestBuilder) -> Result<Value, CloudError> {
        let transport_error = |e: reqwest::Error| CloudError::Transport {
            action: action.to_string(),
            endpoint: endpoint.to_string(),
            failure: if e.is_connect() {
                TransportFailure::Connect
            } else if e.is_timeout() {
                TransportFailure::Timeout
            } else {
                TransportFailure::Other
            },
            // The URL carries the STS token under V2 signing: never show it.
            message: e.without_url().to_string(),
        };
        let resp = builder.send().await.map_err(transport_error)?;
        let status = resp.status().as_u16();
        let retry_after = throttling_time_left(
            resp.headers()
                .iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))),
        );
        let text = read_bounded(resp, action).await.map_err(|e| match e {
            BodyError::Transport(e) => transport_error(e),
            BodyError::TooLarge(e) => e,
        })?;
        let json: Option<Value> = serde_json::from_str(&text).ok();
        if status >= 400 {
            return Err(api_error(action, status, json.as_ref(), &text, retry_after));
        }
        json.ok_or_else(|| CloudError::Decode {
            action: action.to_string(),
            message: format!("HTTP {status} with a body that is not JSON: {}", truncate(&text, 200)),
        })
    }
}

/// What the cloud says back may quote the request: the V2 `SignatureDoesNotMatch` message
/// carries the server's string-to-sign, with the STS token in it. Cut the string-to-sign,
/// and blank out any credential value, plain or percent-encoded, before the error leaves
/// the cloud layer.
fn redact_error(err: CloudError, creds: Option<&Credentials>) -> CloudError {
    let clean = |text: String| redact(&text, creds);
    match err {
        CloudError::Api(mut e) => {
            e.message = clean(std::mem::take(&mut e.message));
            CloudError::Api(e)
        }
        CloudError::Transport {
            action,
            endpoint,
            failure,
            message,
        } => CloudError::Transport {
            action,
            endpoint,
            failure,
            message: clean(message),
        },
        CloudError::Decode { action, message } => CloudError::Decode {
            action,
            message: clean(message),
        },
        other => other,
    }
}

/// The marker after which Alibaba Cloud quotes the server's string-to-sign.
const STRING_TO_SIGN: &str = "string to sign is:";

pub fn redact(text: &str, creds: Option<&Credentials>) -> String {
    let mut out = match text.find(STRING_TO_SIGN) {
        Some(i) => format!("{}{STRING_TO_SIGN} [redacted]", &text[..i]),
        None => text.to_string(),
    };
    if let Some(c) = creds {
        let mut values = vec![c.access_key_secret.expose().to_string()];
        if let Some(t) = &c.security_token {
            values.push(t.expose().to_string());
        }
        for v in values.into_iter().filter(|v| v.len() >= 4) {
            for form in [
                v.clone(),
                super::canonical::percent_encode(&v),
                super::canonical::percent_encode(&super::canonical::percent_encode(&v)),
            ] {
                out = out.replace(&form, "[REDACTED]");
            }
        }
    }
    out
}

/// The largest answer read: far above any page of the four APIs (100 items), far below
/// what would hurt the operator's memory.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

enum BodyError {
    Transport(reqwest::Error),
    TooLarge(CloudError),
}

async fn read_bounded(mut resp: reqwest::Response, action: &str) -> Result<String, BodyError> {
    let too_large = || {
        BodyError::TooLarge(CloudError::Decode {
            action: action.to_string(),
            message: format!("the response is larger than {MAX_RESPONSE_BYTES} bytes"),
        })
    };
    if resp.content_length().is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn field<'a>(json: Option<&'a Value>, names: &[&str]) -> Option<&'a str> {
    let obj = json?.as_object()?;
    names.iter().find_map(|n| obj.get(*n)?.as_str())
}

fn api_error(action: &str, status: u16, json: Option<&Value>, text: &str, retry_after: Option<Duration>) -> CloudError {
    let code = field(json, &["Code", "code"])
        .map(str::to_string)
        .unwrap_or_else(|| format!("HTTP{status}"));
    let mut message = field(json, &["Message", "message"])
        .map(str::to_string)
        .unwrap_or_else(|| truncate(text, 200));
    // A refusal by RAM names the permission it missed; say it, so that the fix is plain.
    let denied = json.and_then(|j| j.get("AccessDeniedDetail").or_else(|| j.get("accessDeniedDetail")));
    if let Some(action) = denied.and_then(|d| d.get("AuthAction")).and_then(Value::as_str) {
        let kind = denied
            .and_then(|d| d.get("NoPermissionType"))
            .and_then(Value::as_str)
            .unwrap_or("denied");
        message.push_str(&format!(" (RAM action {action}: {kind})"));
    }
    CloudError::Api(Box::new(ApiError {
        action: action.to_string(),
        status,
        code,
        message,
        request_id: field(json, &["RequestId", "requestId"]).unwrap_or("").to_string(),
        retry_after,
    }))
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// Checks the `Code` an HTTP 200 body may carry: anything but success is an error
/// (ApproveOtaTask answers `OtaTask.Running` this way). Every answer is checked.
pub fn check_body_code(action: &str, json: &Value) -> Result<(), CloudError> {
    match field(Some(json), &["Code", "code"]) {
        None => Ok(()),
        // `success` is documented; `200` and `OK` are what other Alibaba APIs answer.
        Some(code) if ["success", "200", "ok"].iter().any(|c| code.eq_ignore_ascii_case(c)) => Ok(()),
        Some(code) => Err(CloudError::api(
            action,
            200,
            code,
            field(Some(json), &["Message", "message"]).unwrap_or(""),
            field(Some(json), &["RequestId"]).unwrap_or(""),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_bodies_are_read_in_either_case() {
        let e = api_error(
            "A",
            403,
            Some(&json!({"code": "Forbidden.RAM", "message": "no", "requestId": "r"})),
            "",
            None,
        );
        assert_eq!(e.code(), "Forbidden.RAM");
        assert_eq!(e.api_error().unwrap().request_id, "r");
        let e = api_error("A", 502, None, "<html>bad gateway</html>", None);
        assert_eq!(e.code(), "HTTP502");
        assert!(e.to_string().contains("bad gateway"));
    }

    #[test]
    fn body_code_other_than_success_is_an_error() {
        assert!(check_body_code("A", &json!({"Code": "success"})).is_ok());
        assert!(check_body_code("A", &json!({"RequestId": "x"})).is_ok());
        let e = check_body_code(
            "ApproveOtaTask",
            &json!({"Code": "OtaTask.Running", "Message": "running", "RequestId": "r"}),
        )
        .unwrap_err();
        assert_eq!(e.code(), "OtaTask.Running");
        assert_eq!(e.api_error().unwrap().status, 200);
    }
}
