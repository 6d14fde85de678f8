//! The client the operator uses: credentials, client-side limits and retries around
//! the transport.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::accounts::AccountBook;
use super::credentials::{CredentialProvider, CredentialSource};
use super::endpoint::Product;
use super::error::CloudError;
use super::gate::WriteGate;
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

/// What the calls made inside [`measure`] cost: attempts sent, and time spent waiting for
/// the client-side limits.
#[derive(Debug, Default)]
struct CallCost {
    calls: AtomicU64,
    limiter_wait_us: AtomicU64,
}

/// The cost of a piece of work, as [`measure`] counted it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    pub calls: u64,
    pub limiter_wait: Duration,
}

tokio::task_local! {
    static COST: Arc<CallCost>;
}

/// Runs `work`, counting the cloud calls it makes (every attempt) and the time they waited
/// for the client-side limits.
pub async fn measure<F: Future>(work: F) -> (F::Output, Cost) {
    let cost = Arc::new(CallCost::default());
    let out = COST.scope(cost.clone(), work).await;
    let summary = Cost {
        calls: cost.calls.load(Ordering::Relaxed),
        limiter_wait: Duration::from_micros(cost.limiter_wait_us.load(Ordering::Relaxed)),
    };
    (out, summary)
}

/// A cloud client for one credential set. Clones share the HTTP pool, the rate limiter
/// and the metrics; [`CloudClient::with_credentials`] makes one for another account.
#[derive(Clone, Debug)]
pub struct CloudClient {
    transport: Arc<Transport>,
    credentials: Arc<CredentialProvider>,
    limiter: Arc<RateLimiter>,
    retry: RetryPolicy,
    /// Who the calls are for (the operator names the resource): such calls never wait long
    /// for the client-side limits; see [`crate::cloud::ratelimit`].
    holder: Option<Arc<str>>,
    /// The cloud account of each credential set, shared by every client made from this one.
    accounts: Arc<AccountBook>,
    /// Writes go only while it is open (none: always).
    gate: Option<Arc<WriteGate>>,
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
            holder: None,
            accounts: Arc::default(),
            gate: None,
        }
    }

    /// The same client, and every one made from it, writing only while `gate` is open.
    pub fn with_gate(self, gate: Arc<WriteGate>) -> Self {
        CloudClient {
            gate: Some(gate),
            ..self
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

    /// The same client, acting for `holder`: a call the limits cannot send at once fails
    /// with [`CloudError::Deferred`] instead of waiting, and the holder keeps its turn.
    pub fn for_holder(&self, holder: &str) -> Self {
        CloudClient {
            holder: Some(Arc::from(holder)),
            ..self.clone()
        }
    }

    /// The same client, acting for nobody in particular (a list shared by many readers
    /// waits for the limits in place).
    pub fn shared(&self) -> Self {
        CloudClient {
            holder: None,
            ..self.clone()
        }
    }

    /// Whether this client's holder may send `action` now; when it may, a quota slot is
    /// kept for it. A client without a holder is always admitted (it waits in the call).
    pub async fn admit(&self, product: Product, region: &str, action: &'static str) -> Result<(), CloudError> {
        let Some(holder) = &self.holder else { return Ok(()) };
        let creds = self.credentials.get().await?;
        self.limiter
            .admit(holder, &self.lane(&creds), product, region, action)
            .map_err(CloudError::Deferred)
    }

    /// The cloud account these credentials act in (STS GetCallerIdentity, asked once per
    /// credential set and kept in the shared book).
    pub async fn account(&self) -> Result<String, CloudError> {
        let creds = self.credentials.get().await?;
        let key = creds.account_key();
        if let Some(account) = self.accounts.get(&key) {
            return Ok(account);
        }
        let identity = super::ops::sts::get_caller_identity(&self.shared()).await?;
        self.accounts.insert(key, identity.account_id.clone());
        Ok(identity.account_id)
    }

    /// The key of the rate-limit buckets and quota lanes: the cloud account once it is
    /// known, so every key of one account shares its quotas; the credential set until then.
    fn lane(&self, creds: &super::Credentials) -> String {
        let key = creds.account_key();
        match self.accounts.get(&key) {
            Some(account) => format!("account:{account}"),
            None => key,
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
            // Checked before every attempt, so a retry after the Lease is lost is not sent.
            if req.is_write && self.gate.as_ref().is_some_and(|g| !g.is_open()) {
                return Err(CloudError::NotLeading(req.action.to_string()));
            }
            let creds = self.credentials.get().await?;
            let account = self.lane(&creds);
            let queued = Instant::now();
            let ticket = self
                .limiter
                .acquire(self.holder.as_deref(), &account, req.product, &req.region, req.action)
                .await
                .map_err(CloudError::Deferred)?;
            let _ = COST.try_with(|c| {
                c.calls.fetch_add(1, Ordering::Relaxed);
                c.limiter_wait_us
                    .fetch_add(queued.elapsed().as_micros() as u64, Ordering::Relaxed);
            });
            // Some answers carry an error `Code` inside an HTTP 200: it is an error all the same.
            let answer = self.transport.send_once(req, Some(&creds)).await;
            if let Some(ticket) = ticket {
                self.limiter.answered(&account, ticket);
            }
            let err = match answer.and_then(|v| check_body_code(req.action, &v).map(|()| v)) {
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
