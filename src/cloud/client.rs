//! The client the operator uses: credentials, client-side limits and retries around
//! the transport.

use std::sync::Arc;
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::credentials::{CredentialProvider, CredentialSource};
use super::error::CloudError;
use super::metrics::CloudMetrics;
use super::ratelimit::{RateLimitConfig, RateLimiter};
use super::request::RpcRequest;
use super::retry::RetryPolicy;
use super::transport::check_body_code;
use super::transport::{Transport, TransportConfig};

/// Everything that shapes a client, apart from its credentials.
#[derive(Clone, Debug, Default)]
pub struct ClientSettings {
    pub transport: TransportConfig,
    pub limits: RateLimitConfig,
    pub retry: RetryPolicy,
}

/// A cloud client for one credential set. Clones share the HTTP pool, the rate limiter
/// and the metrics; [`CloudClient::with_credentials`] makes one for another account.
#[derive(Clone, Debug)]
pub struct CloudClient {
    transport: Arc<Transport>,
    credentials: Arc<CredentialProvider>,
    limiter: Arc<RateLimiter>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RateLimiter")
    }
}

impl CloudClient {
    pub fn new(
        transport: Arc<Transport>,
        source: CredentialSource,
        limiter: Arc<RateLimiter>,
        retry: RetryPolicy,
    ) -> Self {
        let credentials = Arc::new(CredentialProvider::new(source, transport.clone()));
        CloudClient {
            transport,
            credentials,
            limiter,
            retry,
        }
    }

    /// Builds the shared transport and limiter from `settings`.
    pub fn build(
        settings: ClientSettings,
        source: CredentialSource,
        metrics: Arc<CloudMetrics>,
    ) -> Result<Self, CloudError> {
        let transport = Arc::new(Transport::new(settings.transport, metrics)?);
        Ok(CloudClient::new(
            transport,
            source,
            Arc::new(RateLimiter::new(settings.limits)),
            settings.retry,
        ))
    }

    /// The same transport, limits and retries, with other credentials.
    pub fn with_credentials(&self, source: CredentialSource) -> Self {
        CloudClient {
            credentials: Arc::new(CredentialProvider::new(source, self.transport.clone())),
            ..self.clone()
        }
    }

    pub fn credentials(&self) -> &Arc<CredentialProvider> {
        &self.credentials
    }

    pub fn transport(&self) -> &Arc<Transport> {
        &self.transport
    }

    /// Calls and decodes the response into `T`.
    /// As [`CloudClient::call`], decoded into `T`. An answer that cannot be decoded is read
    /// once more (an idempotent call only: a garbled answer may be a proxy's hiccup), then
    /// it is a `Decode` error, which is terminal: retrying will not change the cloud's shape.
    pub async fn call_typed<T: DeserializeOwned>(&self, req: &RpcRequest) -> Result<T, CloudError> {
        let mut tries = if req.idempotent { 2 } else { 1 };
        loop {
            let json = self.call(req).await?;
            match serde_json::from_value(json) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    tries -= 1;
                    if tries == 0 {
                        return Err(CloudError::Decode {
                            action: req.action.to_string(),
                            message: e.to_string(),
                        });
                    }
                    tracing::debug!(action = req.action, error = %e, "cannot decode the answer; reading it again");
                }
            }
        }
    }

    /// Sends `req`, retrying throttled and transient failures with jittered exponential
    /// backoff. A non-idempotent request is resent only when the server certainly did not
    /// act on it. An expired STS token is refreshed once.
    #[tracing::instrument(level = "debug", skip_all, fields(product = %req.product, action = req.action, region = %req.region))]
    pub async fn call(&self, req: &RpcRequest) -> Result<Value, CloudError> {
        let started = Instant::now();
        let mut attempts = 0u32;
        let mut refreshed = false;
        loop {
            let creds = self.credentials.get().await?;
            self.limiter
                .acquire(&creds.account_key(), req.product, &req.region, req.action)
                .await;
            // Some answers carry an error `Code` inside an HTTP 200: it is an error all the same.
            let err = match self
                .transport
                .send_once(req, Some(&creds))
                .await
                .and_then(|v| check_body_code(req.action, &v).map(|()| v))
            {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            attempts += 1;
            if err.code().starts_with("InvalidSecurityToken") && self.credentials.is_refreshable() && !refreshed {
                tracing::info!(code = err.code(), "STS token rejected; refreshing credentials once");
                refreshed = true;
                self.credentials.invalidate(&creds).await;
                continue;
            }
            let may_resend = req.idempotent || err.certainly_not_applied();
            if !err.class().is_retryable() || !may_resend || attempts >= self.retry.max_attempts {
                return Err(err);
            }
            let mut delay = self.retry.delay(attempts, &mut rand::rng());
            if let Some(hint) = err.api_error().and_then(|a| a.retry_after) {
                delay = delay.max(hint.min(self.retry.max_delay));
            }
            if started.elapsed() + delay > self.retry.max_elapsed {
                return Err(err);
            }
            tracing::debug!(
                code = err.code(),
                attempt = attempts,
                delay_ms = delay.as_millis() as u64,
                "retrying cloud call"
            );
            tokio::time::sleep(delay).await;
        }
    }
}
