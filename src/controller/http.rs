//! `/metrics`, `/healthz` and `/readyz`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::metrics::Metrics;

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

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    auth: MetricsAuth,
    /// Token digest → (allowed, when decided).
    decisions: Arc<Mutex<HashMap<String, (StatusCode, Instant)>>>,
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
        let verdict = authorize(client, token, &s.decisions).await;
        if verdict != StatusCode::OK {
            let text = if verdict == StatusCode::FORBIDDEN {
                "not allowed to get /metrics"
            } else {
                "the token was not accepted"
            };
            return (verdict, text).into_response();
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        s.metrics.render(),
    )
        .into_response()
}

/// 200 when `token` belongs to someone allowed to `get /metrics`, 401 when Kubernetes
/// does not know it, 403 when it does but RBAC says no (or cannot be asked).
async fn authorize(
    client: &kube::Client,
    token: &str,
    decisions: &Mutex<HashMap<String, (StatusCode, Instant)>>,
) -> StatusCode {
    use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
    use k8s_openapi::api::authorization::v1::{NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
    use kube::api::{Api, PostParams};
    use sha2::{Digest, Sha256};
    let key = hex::encode(Sha256::digest(token.as_bytes()));
    if let Some((verdict, at)) = decisions.lock().expect("decisions lock").get(&key)
        && at.elapsed() < AUTH_CACHE_TTL
    {
        return *verdict;
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
    let mut d = decisions.lock().expect("decisions lock");
    // A flood of distinct tokens cannot grow the cache without bound.
    if d.len() > 1000 {
        d.retain(|_, (_, at)| at.elapsed() < AUTH_CACHE_TTL);
    }
    d.insert(key, (verdict, Instant::now()));
    verdict
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.readiness.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    }
}

/// Binds and serves in the background; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    auth: MetricsAuth,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(AppState {
            metrics,
            readiness,
            auth,
            decisions: Arc::default(),
        });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(bound)
}
