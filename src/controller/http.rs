//! `/metrics` over HTTPS (a bearer token that Kubernetes allows to read it, as
//! controller-runtime serves it), and `/healthz` and `/readyz` over HTTP on a port of their
//! own, for the kubelet's probes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::metrics::Metrics;
use crate::ttl_cache::TtlCache;

/// Readiness: true once this replica is either a standby waiting for the Lease, or the
/// leader and able to list every kind (the CRDs are installed and RBAC allows it).
#[derive(Default)]
pub struct Readiness {
    pub ready: AtomicBool,
}

/// Who may read `/metrics`.
#[derive(Clone)]
pub enum MetricsAuth {
    /// Anyone who can reach the port.
    None,
    /// A bearer token that Kubernetes authenticates (TokenReview) and authorises for
    /// `get` on the non-resource URL `/metrics` (SubjectAccessReview), as
    /// controller-runtime's secure metrics serving does. Answers are cached for a minute.
    Kubernetes(kube::Client),
}

/// How long an authentication and authorisation answer is reused.
const AUTH_CACHE_TTL: Duration = Duration::from_secs(60);
/// The most answers kept; the oldest goes first.
const AUTH_CACHE_MAX: usize = 1000;
/// TokenReviews for tokens not in the cache: at most this many a second (and a burst of
/// [`REVIEW_BURST`]); past it, an unknown token is answered 429 without asking Kubernetes,
/// so a flood of made-up tokens costs the apiserver nothing.
const REVIEWS_PER_SECOND: f64 = 5.0;
const REVIEW_BURST: f64 = 20.0;

/// The token bucket of TokenReviews.
struct ReviewBudget {
    tokens: f64,
    updated: Instant,
}

impl Default for ReviewBudget {
    fn default() -> Self {
        ReviewBudget {
            tokens: REVIEW_BURST,
            updated: Instant::now(),
        }
    }
}

impl ReviewBudget {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.updated).as_secs_f64() * REVIEWS_PER_SECOND).min(REVIEW_BURST);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    auth: MetricsAuth,
    /// Token digest → (allowed, when decided).
    decisions: Arc<TtlCache<String, StatusCode>>,
    reviews: Arc<Mutex<ReviewBudget>>,
}

async fn render_metrics(State(s): State<AppState>, headers: HeaderMap) -> axum::response::Response {
    if let MetricsAuth::Kubernetes(client) = &s.auth {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return (StatusCode::UNAUTHORIZED, "a bearer token is required").into_response();
        };
        let verdict = authorize(client, token, &s.decisions, &s.reviews).await;
        if verdict != StatusCode::OK {
            let text = match verdict {
                StatusCode::FORBIDDEN => "not allowed to get /metrics",
                StatusCode::TOO_MANY_REQUESTS => "too many unknown tokens; try again shortly",
                _ => "the token was not accepted",
            };
            return (verdict, text).into_response();
        }
    }
    // Rendering walks every resource: off the reconcilers' threads.
    let metrics = s.metrics.clone();
    match tokio::task::spawn_blocking(move || metrics.render()).await {
        Ok(text) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            text,
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "rendering the metrics failed").into_response(),
    }
}

/// 200 when `token` belongs to someone allowed to `get /metrics`, 401 when Kubernetes
/// does not know it, 403 when it does but RBAC says no (or cannot be asked).
async fn authorize(
    client: &kube::Client,
    token: &str,
    decisions: &TtlCache<String, StatusCode>,
    reviews: &Mutex<ReviewBudget>,
) -> StatusCode {
    use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
    use k8s_openapi::api::authorization::v1::{NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
    use kube::api::{Api, PostParams};
    use sha2::{Digest, Sha256};
    let key = hex::encode(Sha256::digest(token.as_bytes()));
    if let Some(verdict) = decisions.get(&key) {
        return verdict;
    }
    if !reviews.lock().expect("reviews lock").take() {
        return StatusCode::TOO_MANY_REQUESTS;
    }
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: token.to_string(),
            ..Default::default()
        },
        ..Default::default()
    };
    let verdict = match Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
    {
        Err(e) => {
            tracing::warn!(error = %e, "TokenReview for /metrics failed");
            return StatusCode::FORBIDDEN;
        }
        Ok(r) => match r
            .status
            .filter(|st| st.authenticated == Some(true))
            .and_then(|st| st.user)
        {
            None => StatusCode::UNAUTHORIZED,
            Some(user) => {
                let sar = SubjectAccessReview {
                    spec: SubjectAccessReviewSpec {
                        user: user.username,
                        groups: user.groups,
                        uid: user.uid,
                        extra: user.extra,
                        non_resource_attributes: Some(NonResourceAttributes {
                            path: Some("/metrics".into()),
                            verb: Some("get".into()),
                        }),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                match Api::<SubjectAccessReview>::all(client.clone())
                    .create(&PostParams::default(), &sar)
                    .await
                {
                    Ok(r) if r.status.as_ref().is_some_and(|st| st.allowed) => StatusCode::OK,
                    Ok(_) => StatusCode::FORBIDDEN,
                    Err(e) => {
                        tracing::warn!(error = %e, "SubjectAccessReview for /metrics failed");
                        return StatusCode::FORBIDDEN;
                    }
                }
            }
        },
    };
    // Bounded: a flood of distinct tokens cannot grow the cache.
    decisions.insert(key, verdict);
    verdict
}

async fn readyz(State(readiness): State<Arc<Readiness>>) -> impl IntoResponse {
    if readiness.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    }
}

/// Where /metrics gets its certificate.
#[derive(Clone, Debug)]
pub enum MetricsTls {
    /// Made at start-up, for `localhost` and the Service's names; Prometheus scrapes it
    /// with `insecureSkipVerify` (the bearer token is what is checked).
    SelfSigned,
    /// `tls.crt` and `tls.key` in this directory (a `kubernetes.io/tls` Secret, mounted).
    Dir(std::path::PathBuf),
}

impl MetricsTls {
    fn server_config(&self) -> Result<tokio_rustls::rustls::ServerConfig, String> {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let (certs, key) = match self {
            MetricsTls::SelfSigned => {
                let names = vec![
                    "localhost".to_string(),
                    "alicloud-ops-operator-metrics".to_string(),
                    "127.0.0.1".to_string(),
                ];
                let cert =
                    rcgen::generate_simple_self_signed(names).map_err(|e| format!("a self-signed certificate: {e}"))?;
                let key = PrivateKeyDer::from_pem_slice(cert.signing_key.serialize_pem().as_bytes())
                    .map_err(|e| format!("the self-signed key: {e}"))?;
                (vec![cert.cert.der().clone()], key)
            }
            MetricsTls::Dir(dir) => {
                let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&crt)
                    .and_then(|i| i.collect::<Result<_, _>>())
                    .map_err(|e| format!("{}: {e}", crt.display()))?;
                if certs.is_empty() {
                    return Err(format!("{}: no certificate", crt.display()));
                }
                let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| format!("{}: {e}", key.display()))?;
                (certs, key)
            }
        };
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| format!("the metrics certificate: {e}"))
    }
}

/// Serves /metrics over HTTPS in the background; returns the bound address.
pub async fn serve_metrics(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    auth: MetricsAuth,
    tls: &MetricsTls,
) -> Result<SocketAddr, String> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls.server_config()?));
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| e.to_string())?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let app = axum::Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(AppState {
            metrics,
            auth,
            decisions: Arc::new(TtlCache::new(AUTH_CACHE_TTL, AUTH_CACHE_MAX)),
            reviews: Arc::default(),
        });
    tokio::spawn(async move {
        loop {
            let (tcp, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a metrics connection");
                    continue;
                }
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                // A client that does not finish its handshake is let go.
                let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    _ => return,
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

/// Serves /healthz and /readyz over HTTP in the background; returns the bound address.
pub async fn serve_health(addr: SocketAddr, readiness: Arc<Readiness>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(readiness);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "health server stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_tokens_are_reviewed_at_a_bounded_rate() {
        let mut budget = ReviewBudget::default();
        let granted = (0..100).filter(|_| budget.take()).count();
        assert_eq!(
            granted, REVIEW_BURST as usize,
            "a burst, then nothing until the bucket refills"
        );
    }

    #[test]
    fn a_self_signed_certificate_is_made_and_a_missing_one_is_named() {
        assert!(MetricsTls::SelfSigned.server_config().is_ok());
        let err = MetricsTls::Dir("/nonexistent-dir".into()).server_config().unwrap_err();
        assert!(err.contains("/nonexistent-dir/tls.crt"), "{err}");
    }
}
