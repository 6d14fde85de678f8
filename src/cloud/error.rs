//! The cloud layer's one error type, and how each failure is classified.

use std::time::Duration;

/// What a caller should do about a failed call. Classified by the `Code` in the body, not
/// by HTTP status: the status used for throttling differs between products.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Flow control (`Throttling*`): retry later, slower.
    Throttled,
    /// 5xx, timeouts, connection failures: retry with backoff.
    Transient,
    /// The key, secret or STS token is wrong, expired or not allowed: fix credentials.
    Credentials,
    /// The named cloud object does not exist (`*.NotFound`).
    NotFound,
    /// Any other 4xx: the request itself is wrong and retrying will not help.
    Invalid,
    /// Not the cloud's answer: a bug of ours (a shared list panicked or was cancelled).
    /// Retried with backoff, and never reported as the cloud refusing anything.
    Internal,
}

impl ErrorClass {
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorClass::Throttled | ErrorClass::Transient | ErrorClass::Internal
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Throttled => "Throttled",
            ErrorClass::Transient => "Transient",
            ErrorClass::Credentials => "Credentials",
            ErrorClass::NotFound => "NotFound",
            ErrorClass::Invalid => "Invalid",
            ErrorClass::Internal => "Internal",
        }
    }
}

/// Classifies an Alibaba Cloud error code (with the HTTP status as a fallback).
pub fn classify(code: &str, status: u16) -> ErrorClass {
    if code.starts_with("Throttling") || code == "Rejected.Throttling" {
        return ErrorClass::Throttled;
    }
    if code == "SignatureDoesNotMatch"
        || code == "IncompleteSignature"
        || code.starts_with("InvalidAccessKeyId")
        || code.starts_with("InvalidSecurityToken")
        || code.starts_with("InvalidTimeStamp")
        || code == "Forbidden.RAM"
        || code == "InvalidCredentials"
    {
        return ErrorClass::Credentials;
    }
    // A reused nonce means our request collided with an earlier one: a fresh nonce fixes it.
    if code == "SignatureNonceUsed" || code == "ServiceUnavailable" || code == "InternalError" {
        return ErrorClass::Transient;
    }
    if code.ends_with(".NotFound") || code == "NotFound" {
        return ErrorClass::NotFound;
    }
    if status >= 500 {
        ErrorClass::Transient
    } else {
        ErrorClass::Invalid
    }
}

/// An error answer from the cloud: HTTP status, `Code`, `Message` and `RequestId`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub action: String,
    pub status: u16,
    pub code: String,
    pub message: String,
    pub request_id: String,
    /// The `TimeLeft` hint of `x-ratelimit-user-api` / `x-ratelimit-user`, if present.
    pub retry_after: Option<Duration>,
}

/// How a request failed before a cloud answer could be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportFailure {
    /// The connection was never made: the request cannot have reached the server.
    Connect,
    /// The request may have reached the server, but no answer came in time.
    Timeout,
    /// Anything else on the wire (reset, bad TLS, ...): it may have reached the server.
    Other,
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum CloudError {
    #[error("{}: {} (HTTP {}): {} [RequestId {}]", .0.action, .0.code, .0.status, .0.message, .0.request_id)]
    Api(Box<ApiError>),
    #[error("{action}: {failure:?} error talking to {endpoint}: {message}")]
    Transport {
        action: String,
        endpoint: String,
        failure: TransportFailure,
        message: String,
    },
    #[error("{action}: cannot decode the response: {message}")]
    Decode { action: String, message: String },
    #[error("credentials: {0}")]
    Credentials(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Not sent: the client-side limits have no room for it now (see `ratelimit`).
    #[error("{}", .0.reason)]
    Deferred(super::ratelimit::Deferral),
    /// Not sent: this process may not write now (it is not, or no longer, the leader).
    #[error("{0}: not sent, this replica is not the leader (any more)")]
    NotLeading(String),
    /// A failure of ours, not of the cloud (see [`ErrorClass::Internal`]).
    #[error("{0} (a bug of the operator, not an answer of the cloud)")]
    Internal(String),
    /// Not read yet: the shared list in flight has not reached the item, and the resource is
    /// recalled when it has ([`crate::cloud::snapshot::Lookup::Later`]). Nothing failed.
    #[error("{0}: the shared list has not read this item yet")]
    NotListedYet(&'static str),
}

impl CloudError {
    pub fn api(action: &str, status: u16, code: &str, message: &str, request_id: &str) -> Self {
        CloudError::Api(Box::new(ApiError {
            action: action.to_string(),
            status,
            code: code.to_string(),
            message: message.to_string(),
            request_id: request_id.to_string(),
            retry_after: None,
        }))
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            CloudError::Api(e) => classify(&e.code, e.status),
            CloudError::Transport { .. } => ErrorClass::Transient,
            // Read twice already (`call_typed`): the answer's shape is not what we know.
            CloudError::Decode { .. } => ErrorClass::Invalid,
            CloudError::Credentials(_) => ErrorClass::Credentials,
            CloudError::InvalidRequest(_) => ErrorClass::Invalid,
            CloudError::Deferred(_) => ErrorClass::Throttled,
            CloudError::NotLeading(_) => ErrorClass::Transient,
            CloudError::Internal(_) => ErrorClass::Internal,
            CloudError::NotListedYet(_) => ErrorClass::Throttled,
        }
    }

    /// The cloud's error code, or a stable label for local failures (used in metrics).
    pub fn code(&self) -> &str {
        match self {
            CloudError::Api(e) => &e.code,
            CloudError::Transport { .. } => "TransportError",
            CloudError::Decode { .. } => "DecodeError",
            CloudError::Credentials(_) => "InvalidCredentials",
            CloudError::InvalidRequest(_) => "InvalidRequest",
            CloudError::Deferred(_) => "Deferred",
            CloudError::NotLeading(_) => "NotLeading",
            CloudError::Internal(_) => "Internal",
            CloudError::NotListedYet(_) => "NotListedYet",
        }
    }

    /// A description that stays the same when the same failure happens again: no request
    /// id, nonce or server string-to-sign. Status conditions use it, so a failure repeated at
    /// every resync does not rewrite the status (and trigger another reconcile) each time.
    pub fn summary(&self) -> String {
        match self {
            CloudError::Api(e) => {
                let first = e.message.split(['.', '\n']).next().unwrap_or("").trim();
                if first.is_empty() {
                    format!("{}: {} (HTTP {})", e.action, e.code, e.status)
                } else {
                    format!("{}: {} (HTTP {}): {first}", e.action, e.code, e.status)
                }
            }
            CloudError::Transport {
                action,
                endpoint,
                failure,
                ..
            } => {
                format!("{action}: {failure:?} error talking to {endpoint}")
            }
            CloudError::Decode { action, .. } => format!("{action}: the response could not be decoded"),
            CloudError::Credentials(_)
            | CloudError::InvalidRequest(_)
            | CloudError::Deferred(_)
            | CloudError::NotLeading(_)
            | CloudError::Internal(_)
            | CloudError::NotListedYet(_) => self.to_string(),
        }
    }

    /// When a call that the client-side limits held back may be tried again.
    pub fn deferred_for(&self) -> Option<Duration> {
        match self {
            CloudError::Deferred(d) => Some(d.retry_after),
            _ => None,
        }
    }

    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            CloudError::Api(e) => Some(e),
            _ => None,
        }
    }

    /// True when the cloud answered and refused the request (a 4xx, or an error `Code` in a
    /// 200 body): it was not applied.
    pub fn refused(&self) -> bool {
        matches!(self, CloudError::Api(e) if e.status < 500)
    }

    /// True when the request certainly never reached the server, or the server refused it
    /// before acting (throttling, authentication). Only then may a non-idempotent call be
    /// sent again.
    pub fn certainly_not_applied(&self) -> bool {
        match self {
            CloudError::Transport { failure, .. } => *failure == TransportFailure::Connect,
            CloudError::Api(_) => {
                matches!(self.class(), ErrorClass::Throttled | ErrorClass::Credentials)
                    || self.code() == "SignatureNonceUsed"
            }
            CloudError::Credentials(_)
            | CloudError::InvalidRequest(_)
            | CloudError::Deferred(_)
            | CloudError::NotLeading(_)
            | CloudError::NotListedYet(_) => true,
            // Reads only: shared lists.
            CloudError::Internal(_) => true,
            CloudError::Decode { .. } => false,
        }
    }
}

/// Reads the SDK's throttling hint: headers `x-ratelimit-user-api` and `x-ratelimit-user`
/// hold `key:value` pairs separated by commas; the larger `TimeLeft` wins. The unit is not
/// documented; milliseconds is what the SDKs' backoff assumes.
pub fn throttling_time_left<'a, I>(headers: I) -> Option<Duration>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    headers
        .into_iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("x-ratelimit-user-api") || k.eq_ignore_ascii_case("x-ratelimit-user"))
        .flat_map(|(_, v)| v.split(','))
        .filter_map(|pair| {
            let (k, v) = pair.split_once(':')?;
            (k.trim() == "TimeLeft").then(|| v.trim().parse::<u64>().ok()).flatten()
        })
        .max()
        .map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_code_not_status() {
        assert_eq!(classify("Throttling.User", 400), ErrorClass::Throttled);
        assert_eq!(classify("Throttling.Api", 429), ErrorClass::Throttled);
        assert_eq!(classify("Throttling", 403), ErrorClass::Throttled);
        assert_eq!(classify("Throttling.System", 400), ErrorClass::Throttled);
        assert_eq!(classify("SignatureDoesNotMatch", 400), ErrorClass::Credentials);
        assert_eq!(classify("InvalidAccessKeyId.NotFound", 404), ErrorClass::Credentials);
        assert_eq!(classify("InvalidAccessKeyId.Inactive", 400), ErrorClass::Credentials);
        assert_eq!(classify("InvalidSecurityToken.Expired", 403), ErrorClass::Credentials);
        assert_eq!(classify("InvalidImageId.NotFound", 404), ErrorClass::NotFound);
        assert_eq!(classify("InvalidParam.OperationIllegal", 400), ErrorClass::Invalid);
        assert_eq!(classify("OtaTask.Running", 200), ErrorClass::Invalid);
        assert_eq!(classify("InternalError", 500), ErrorClass::Transient);
        assert_eq!(classify("ServiceUnavailable", 503), ErrorClass::Transient);
        assert_eq!(classify("Whatever", 502), ErrorClass::Transient);
        assert_eq!(classify("SignatureNonceUsed", 400), ErrorClass::Transient);
    }

    #[test]
    fn only_refused_requests_count_as_not_applied() {
        let throttled = CloudError::api("A", 400, "Throttling.User", "m", "r");
        assert!(throttled.certainly_not_applied());
        let server = CloudError::api("A", 500, "InternalError", "m", "r");
        assert!(!server.certainly_not_applied());
        let timeout = CloudError::Transport {
            action: "A".into(),
            endpoint: "e".into(),
            failure: TransportFailure::Timeout,
            message: "t".into(),
        };
        assert!(!timeout.certainly_not_applied());
        assert!(timeout.class().is_retryable());
    }

    #[test]
    fn reads_the_larger_time_left_hint() {
        let h = [
            ("x-ratelimit-user-api", "Limit:10,Remain:0,TimeLeft:1500,Reset:1"),
            ("X-RateLimit-User", "TimeLeft:2500"),
        ];
        assert_eq!(throttling_time_left(h), Some(Duration::from_millis(2500)));
        assert_eq!(throttling_time_left([("x-other", "TimeLeft:5")]), None);
    }

    #[test]
    fn summaries_leave_out_what_changes_between_attempts() {
        let a = CloudError::api(
            "A",
            400,
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation. server string to sign is:POST&%2F&x",
            "RID-1",
        );
        let b = CloudError::api(
            "A",
            400,
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation. server string to sign is:POST&%2F&y",
            "RID-2",
        );
        assert_eq!(a.summary(), b.summary());
        assert_eq!(
            a.summary(),
            "A: SignatureDoesNotMatch (HTTP 400): Specified signature is not matched with our calculation"
        );
        assert!(!a.summary().contains("RID"));
    }

    #[test]
    fn error_display_names_code_status_and_request_id() {
        let e = CloudError::api(
            "UpdateFotaTask",
            404,
            "InvalidTaskUid.NotFound",
            "no such task",
            "RID-1",
        );
        assert_eq!(
            e.to_string(),
            "UpdateFotaTask: InvalidTaskUid.NotFound (HTTP 404): no such task [RequestId RID-1]"
        );
    }
}
