//! Credential sources that need a server: the ECS instance-metadata role (served here by a
//! small loopback stand-in for 100.100.100.200) and concurrent STS refreshes.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use alicloud_ops_operator::cloud::credentials::{CredentialProvider, CredentialSource, EcsRoleConfig, RrsaConfig};
use alicloud_ops_operator::cloud::metrics::CloudMetrics;
use alicloud_ops_operator::cloud::transport::Transport;
use alicloud_ops_operator::cloud::{ErrorClass, SignatureVersion};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use support::*;

/// Instance metadata as ECS serves it: IMDSv2 token first, then the role and its keys.
async fn metadata_server(token_required: bool, code: &'static str) -> (String, Arc<AtomicU32>) {
    let hits = Arc::new(AtomicU32::new(0));
    let h = hits.clone();
    let check = move |headers: &HeaderMap| {
        !token_required
            || headers
                .get("x-aliyun-ecs-metadata-token")
                .is_some_and(|v| v == "imds-token")
    };
    let c1 = check;
    let app = axum::Router::new()
        .route(
            "/latest/api/token",
            put(|headers: HeaderMap| async move {
                if headers.get("X-aliyun-ecs-metadata-token-ttl-seconds").is_some() { (StatusCode::OK, "imds-token") } else { (StatusCode::BAD_REQUEST, "") }
            }),
        )
        .route(
            "/latest/meta-data/ram/security-credentials/",
            get(move |headers: HeaderMap| async move { if c1(&headers) { (StatusCode::OK, "ops-role\n") } else { (StatusCode::UNAUTHORIZED, "") } }),
        )
        .route(
            "/latest/meta-data/ram/security-credentials/ops-role",
            get(move |headers: HeaderMap| {
                h.fetch_add(1, Ordering::SeqCst);
                async move {
                    if !check(&headers) {
                        return (StatusCode::UNAUTHORIZED, String::new());
                    }
                    let exp = (chrono::Utc::now() + chrono::Duration::hours(6)).format("%Y-%m-%dT%H:%M:%SZ");
                    (
                        StatusCode::OK,
                        format!(r#"{{"Code":"{code}","AccessKeyId":"STS.ecs","AccessKeySecret":"ecs-secret","SecurityToken":"ecs-token","Expiration":"{exp}","LastUpdated":"2026-11-22T00:00:00Z"}}"#),
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, hits)
}

fn transport() -> Arc<Transport> {
    Arc::new(Transport::new(Default::default(), Arc::new(CloudMetrics::default())).unwrap())
}

#[tokio::test]
async fn ecs_ram_role_with_imdsv2_token() {
    let (url, hits) = metadata_server(true, "Success").await;
    let source = CredentialSource::EcsRamRole(EcsRoleConfig {
        role_name: None,
        metadata_base: url.parse().unwrap(),
        imdsv1_disabled: true,
    });
    let p = CredentialProvider::new(source, transport());
    let c = p.get().await.unwrap();
    assert_eq!(c.access_key_id, "STS.ecs");
    assert_eq!(c.security_token.as_ref().unwrap().expose(), "ecs-token");
    assert!(c.expiration.is_some());
    p.get().await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1, "cached until near expiry");
}

#[tokio::test]
async fn ecs_metadata_failures_are_credentials_errors() {
    let (url, _) = metadata_server(true, "Failed").await;
    let source = CredentialSource::EcsRamRole(EcsRoleConfig {
        role_name: Some("ops-role".into()),
        metadata_base: url.parse().unwrap(),
        imdsv1_disabled: false,
    });
    let err = CredentialProvider::new(source, transport()).get().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Credentials);
    assert!(err.to_string().contains("Code Failed"), "{err}");
    let nowhere = CredentialSource::EcsRamRole(EcsRoleConfig {
        role_name: None,
        metadata_base: "http://127.0.0.1:9/".parse().unwrap(),
        imdsv1_disabled: true,
    });
    let err = CredentialProvider::new(nowhere, transport()).get().await.unwrap_err();
    assert!(err.to_string().contains("IMDSv2 token (IMDSv1 is disabled)"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_callers_share_one_sts_refresh() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "oidc-token-value").unwrap();
    let c = client_with(
        &emu,
        SignatureVersion::V3,
        CredentialSource::Rrsa(RrsaConfig {
            role_arn: "acs:ram::1:role/r".into(),
            oidc_provider_arn: "acs:ram::1:oidc-provider/p".into(),
            token_file: token,
            session_name: "s1".into(),
            duration_seconds: 3600,
        }),
    );
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.credentials().get().await.unwrap().access_key_id
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap());
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(c.credentials().fetch_count(), 1);
    assert_eq!(emu.world().counters().count("AssumeRoleWithOIDC"), 1);
}
