//! Error answers in the cloud's shape: `{RequestId, HostId, Code, Message, Recommend}`.

use axum::http::StatusCode;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiFailure {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// `AccessDeniedDetail`, on a call RAM refused (see [`super::ram::denied`]).
    pub access_denied: Option<serde_json::Value>,
}

impl ApiFailure {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiFailure {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            code: code.to_string(),
            message: message.into(),
            access_denied: None,
        }
    }

    pub fn with_detail(mut self, access_denied: serde_json::Value) -> Self {
        self.access_denied = Some(access_denied);
        self
    }

    pub fn missing(name: &str) -> Self {
        ApiFailure::new(
            400,
            "MissingParameter",
            format!("The input parameter \"{name}\" that is mandatory for processing this request is not supplied."),
        )
    }

    pub fn invalid(name: &str, why: impl std::fmt::Display) -> Self {
        ApiFailure::new(
            400,
            &format!("InvalidParameter.{name}"),
            format!("The parameter {name} is invalid: {why}"),
        )
    }

    pub fn throttled() -> Self {
        ApiFailure::new(400, "Throttling.User", "Request was denied due to user flow control.")
    }

    pub fn body(&self, request_id: &str, host: &str, product: &str) -> serde_json::Value {
        let mut body = serde_json::json!({
            "RequestId": request_id,
            "HostId": host,
            "Code": self.code,
            "Message": self.message,
            "Recommend": format!(
                "https://api.aliyun.com/troubleshoot?q={}&product={}&requestId={}",
                self.code, product, request_id
            ),
        });
        if let Some(detail) = &self.access_denied {
            body["AccessDeniedDetail"] = detail.clone();
        }
        body
    }
}

pub type ApiResult<T> = Result<T, ApiFailure>;
