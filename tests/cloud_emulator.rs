//! The cloud layer against the emulator, over real HTTP, with both signing methods.

mod support;

use alicloud_ops_operator::cloud::credentials::{CredentialSource, Credentials, RrsaConfig};
use alicloud_ops_operator::cloud::ops::appstream::{ApproveOtaTask, approve_ota_task, list_app_instance_groups};
use alicloud_ops_operator::cloud::ops::ecd::{
    self, DesktopFilter, FotaTask, MaintenanceMode, describe_desktops, describe_fota_tasks, set_desktop_maintenance,
    set_desktop_maintenance_batched, update_fota_task,
};
use alicloud_ops_operator::cloud::ops::swas::{
    CustomImage, ShareOperation, list_custom_images, modify_image_share_status,
};
use alicloud_ops_operator::cloud::{ErrorClass, SignatureVersion};
use alicloud_ops_operator::emulator::CloudState;
use alicloud_ops_operator::emulator::faults::Fault;
use alicloud_ops_operator::emulator::state::SwasRegion;
use support::*;

fn fault(json: serde_json::Value) -> Fault {
    serde_json::from_value(json).unwrap()
}

#[tokio::test]
async fn fota_tasks_read_and_update_with_both_signatures() {
    for v in BOTH {
        let emu = emulator().await;
        let c = client(&emu, v);
        let tasks = describe_fota_tasks(&c, "cn-hangzhou", &[]).await.unwrap();
        assert_eq!(tasks.len(), 3, "{v}");
        let pending = tasks.iter().find(|t| t.status == "Pending").unwrap().task_uid.clone();
        update_fota_task(&c, "cn-hangzhou", &pending, "Running").await.unwrap();
        let after = emu.world().state();
        let t = after.ecd["cn-hangzhou"]
            .fota_tasks
            .iter()
            .find(|t| t.task_uid == pending)
            .unwrap();
        assert_eq!(t.status, "Running", "{v}");
        let one = describe_fota_tasks(&c, "cn-hangzhou", std::slice::from_ref(&pending))
            .await
            .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].status, "Running");
    }
}

#[tokio::test]
async fn fota_tasks_follow_every_next_token_page() {
    let mut state = CloudState::default_dataset();
    let region = state.ecd.get_mut("cn-hangzhou").unwrap();
    region.fota_tasks = (0..250)
        .map(|i| FotaTask {
            task_uid: format!("aot-{i:04}"),
            status: "Pending".into(),
            ..Default::default()
        })
        .collect();
    let emu = emulator_with(state).await;
    let tasks = describe_fota_tasks(&client(&emu, SignatureVersion::V3), "cn-hangzhou", &[])
        .await
        .unwrap();
    let uids: Vec<_> = tasks.iter().map(|t| t.task_uid.clone()).collect();
    let want: Vec<_> = (0..250).map(|i| format!("aot-{i:04}")).collect();
    assert_eq!(uids, want);
    assert_eq!(emu.world().counters().count_code("DescribeFotaTasks", "success"), 3);
}

#[tokio::test]
async fn global_auto_update_keeps_tasks_running() {
    let emu = emulator().await;
    emu.world()
        .update_state(|s| s.ecd.get_mut("cn-hangzhou").unwrap().global_auto_update = true);
    let c = client(&emu, SignatureVersion::V3);
    update_fota_task(&c, "cn-hangzhou", "aot-hz0002", "Pending")
        .await
        .unwrap();
    let tasks = describe_fota_tasks(&c, "cn-hangzhou", &[]).await.unwrap();
    assert!(tasks.iter().all(|t| t.status == "Running"), "{tasks:?}");
}

#[tokio::test]
async fn desktops_page_and_maintenance_batches_by_100() {
    for v in BOTH {
        let emu = emulator().await;
        let c = client(&emu, v);
        let all = describe_desktops(&c, "cn-hangzhou", &DesktopFilter::default())
            .await
            .unwrap();
        assert_eq!(all.len(), 300);
        let site = all[150].office_site_id.clone();
        let one_site = describe_desktops(
            &c,
            "cn-hangzhou",
            &DesktopFilter {
                office_site_id: Some(site.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(one_site.len(), 100);
        assert!(one_site.iter().all(|d| d.office_site_id == site));

        let ids: Vec<String> = all.iter().skip(10).take(250).map(|d| d.desktop_id.clone()).collect();
        emu.world().reset_counters();
        set_desktop_maintenance_batched(&c, "cn-hangzhou", MaintenanceMode::Enter, &ids)
            .await
            .unwrap();
        assert_eq!(
            emu.world().counters().count_code("SetDesktopMaintenance", "success"),
            3,
            "{v}"
        );
        let by_id = describe_desktops(
            &c,
            "cn-hangzhou",
            &DesktopFilter {
                desktop_ids: ids.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(by_id.len(), 250);
        assert!(by_id.iter().all(|d| d.in_maintenance()));
        set_desktop_maintenance_batched(&c, "cn-hangzhou", MaintenanceMode::Exit, &ids)
            .await
            .unwrap();
        let state = emu.world().state();
        for d in &state.ecd["cn-hangzhou"].desktops {
            if ids.contains(&d.desktop_id) {
                assert_eq!(d.management_flags, vec!["NoFlag".to_string()]);
            }
        }
    }
}

#[tokio::test]
async fn maintenance_rejects_unknown_ids_without_applying_any() {
    let emu = emulator().await;
    let c = client(&emu, SignatureVersion::V3);
    let ids = vec!["ecd-hz10011".to_string(), "ecd-does-not-exist".to_string()];
    let err = set_desktop_maintenance(&c, "cn-hangzhou", MaintenanceMode::Enter, &ids)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "InvalidDesktopId.NotFound");
    assert_eq!(err.class(), ErrorClass::NotFound);
    assert!(err.to_string().contains("ecd-does-not-exist"));
    let d = emu.world().state().ecd["cn-hangzhou"]
        .desktops
        .iter()
        .find(|d| d.desktop_id == "ecd-hz10011")
        .cloned()
        .unwrap();
    assert!(!d.in_maintenance());
    let too_many: Vec<String> = (0..101).map(|i| format!("ecd-{i}")).collect();
    let err = set_desktop_maintenance(&c, "cn-hangzhou", MaintenanceMode::Enter, &too_many)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1 to 100"), "{err}");
}

#[tokio::test]
async fn custom_images_page_and_share_with_client_token() {
    for v in BOTH {
        let mut state = CloudState::default_dataset();
        state.swas.insert(
            "eu-central-1".into(),
            SwasRegion {
                custom_images: (0..150)
                    .map(|i| CustomImage {
                        image_id: format!("m-eu{i:04}"),
                        status: "1".into(),
                        ..Default::default()
                    })
                    .collect(),
            },
        );
        let emu = emulator_with(state).await;
        let c = client(&emu, v);
        let images = list_custom_images(&c, "eu-central-1", &[]).await.unwrap();
        assert_eq!(images.len(), 150, "{v}");
        assert_eq!(emu.world().counters().count_code("ListCustomImages", "success"), 2);
        let picked = list_custom_images(&c, "cn-hangzhou", &["m-hz0003".into(), "m-hz0001".into()])
            .await
            .unwrap();
        assert_eq!(picked.len(), 2);

        modify_image_share_status(&c, "cn-hangzhou", "m-hz0003", ShareOperation::Share, "tok-1")
            .await
            .unwrap();
        let shared = |emu: &alicloud_ops_operator::emulator::Emulator| {
            emu.world().state().swas["cn-hangzhou"]
                .custom_images
                .iter()
                .find(|i| i.image_id == "m-hz0003")
                .unwrap()
                .in_share
        };
        assert!(shared(&emu));
        // Someone unshares it; a retry with the same token must not act again.
        emu.world().update_state(|s| {
            s.swas
                .get_mut("cn-hangzhou")
                .unwrap()
                .custom_images
                .iter_mut()
                .find(|i| i.image_id == "m-hz0003")
                .unwrap()
                .in_share = false
        });
        modify_image_share_status(&c, "cn-hangzhou", "m-hz0003", ShareOperation::Share, "tok-1")
            .await
            .unwrap();
        assert!(!shared(&emu), "a repeated ClientToken acted twice");
        let err = modify_image_share_status(&c, "cn-hangzhou", "m-hz0003", ShareOperation::UnShare, "tok-1")
            .await
            .unwrap_err();
        assert_eq!(err.code(), "IdempotentParameterMismatch");
        let err = modify_image_share_status(&c, "cn-hangzhou", "m-nope", ShareOperation::Share, "tok-2")
            .await
            .unwrap_err();
        assert_eq!(err.code(), "InvalidImageId.NotFound");
        assert_eq!(err.api_error().unwrap().status, 404);
    }
}

#[tokio::test]
async fn share_quota_of_ten_a_minute_answers_throttling_user() {
    let emu = emulator().await;
    let mut s = settings(&emu, SignatureVersion::V3);
    s.retry.max_attempts = 1;
    let c = alicloud_ops_operator::cloud::CloudClient::build(s, default_key(), Default::default()).unwrap();
    for i in 0..10 {
        let op = if i % 2 == 0 {
            ShareOperation::Share
        } else {
            ShareOperation::UnShare
        };
        modify_image_share_status(&c, "cn-hangzhou", "m-hz0004", op, &format!("q-{i}"))
            .await
            .unwrap();
    }
    let err = modify_image_share_status(&c, "cn-hangzhou", "m-hz0004", ShareOperation::Share, "q-10")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "Throttling.User");
    assert_eq!(err.class(), ErrorClass::Throttled);
}

#[tokio::test]
async fn ota_approval_rotates_task_id_and_completes_on_the_clock() {
    for v in BOTH {
        let emu = emulator().await;
        let c = client(&emu, v);
        let groups = list_app_instance_groups(&c, "cn-hangzhou", None).await.unwrap();
        assert_eq!(groups.len(), 4);
        let g = groups
            .iter()
            .find(|g| !g.ota_info.new_ota_version.is_empty())
            .unwrap()
            .clone();
        let start = chrono::Utc::now() + chrono::Duration::hours(1);
        let req = ApproveOtaTask {
            app_instance_group_id: g.app_instance_group_id.clone(),
            biz_region_id: "cn-hangzhou".into(),
            task_id: g.ota_info.task_id.clone(),
            ota_type: "Fota".into(),
            start_time: start.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        };
        let resp = approve_ota_task(&c, &req).await.unwrap();
        assert_eq!(resp.code, "success");
        let after = list_app_instance_groups(&c, "cn-hangzhou", Some(&g.app_instance_group_id))
            .await
            .unwrap();
        assert_eq!(after.len(), 1);
        assert_ne!(after[0].ota_info.task_id, g.ota_info.task_id, "TaskId must rotate");
        assert_eq!(after[0].ota_info.ota_version, g.ota_info.ota_version);
        // The old TaskId is refused.
        let err = approve_ota_task(&c, &req).await.unwrap_err();
        assert_eq!(err.code(), "InvalidParameter.TaskId");
        // Past the start time the upgrade is done.
        emu.world().clock.advance(chrono::Duration::hours(2)).unwrap();
        let done = list_app_instance_groups(&c, "cn-hangzhou", Some(&g.app_instance_group_id))
            .await
            .unwrap();
        assert_eq!(done[0].ota_info.ota_version, g.ota_info.new_ota_version);
        assert_eq!(done[0].ota_info.new_ota_version, "");
    }
}

#[tokio::test]
async fn approving_a_running_upgrade_is_ota_task_running_in_a_200_body() {
    let emu = emulator().await;
    emu.world().update_state(|s| {
        for g in &mut s.appstream.app_instance_groups {
            g.upgrade_duration_seconds = 3600;
        }
    });
    let c = client(&emu, SignatureVersion::V3);
    let g = list_app_instance_groups(&c, "cn-hangzhou", Some("aig-hz0001"))
        .await
        .unwrap()
        .remove(0);
    let start = chrono::Utc::now() + chrono::Duration::minutes(5);
    let mut req = ApproveOtaTask {
        app_instance_group_id: g.app_instance_group_id.clone(),
        biz_region_id: "cn-hangzhou".into(),
        task_id: g.ota_info.task_id.clone(),
        ota_type: "Fota".into(),
        start_time: start.to_rfc3339(),
    };
    approve_ota_task(&c, &req).await.unwrap();
    emu.world().clock.advance(chrono::Duration::minutes(10)).unwrap();
    req.task_id = list_app_instance_groups(&c, "cn-hangzhou", Some("aig-hz0001"))
        .await
        .unwrap()[0]
        .ota_info
        .task_id
        .clone();
    emu.world().reset_counters();
    let err = approve_ota_task(&c, &req).await.unwrap_err();
    assert_eq!(err.code(), "OtaTask.Running");
    assert_eq!(err.api_error().unwrap().status, 200);
    assert_eq!(
        emu.world().counters().count("ApproveOtaTask"),
        1,
        "a 200 body error is not retried"
    );
}

#[tokio::test]
async fn throttled_then_success_uses_a_fresh_nonce_each_try() {
    for v in BOTH {
        let emu = emulator().await;
        emu.world()
            .add_fault(fault(
                serde_json::json!({"action": "DescribeFotaTasks", "throttle": true, "count": 2}),
            ))
            .unwrap();
        let c = client(&emu, v);
        describe_fota_tasks(&c, "cn-hangzhou", &[]).await.unwrap();
        let counters = emu.world().counters();
        // A reused nonce would have been refused with SignatureNonceUsed.
        assert_eq!(counters.actions["DescribeFotaTasks"].len(), 2, "{v}: {counters:?}");
        assert_eq!(counters.count_code("DescribeFotaTasks", "Throttling.User"), 2);
        assert_eq!(counters.count_code("DescribeFotaTasks", "success"), 1);
        assert_eq!(
            c.transport()
                .metrics()
                .count("ecd", "DescribeFotaTasks", "Throttling.User"),
            2
        );
    }
}

#[tokio::test]
async fn non_idempotent_approval_is_not_resent_after_a_server_error() {
    let emu = emulator().await;
    let c = client(&emu, SignatureVersion::V3);
    emu.world()
        .add_fault(fault(
            serde_json::json!({"action": "ApproveOtaTask", "code": "InternalError", "count": 1}),
        ))
        .unwrap();
    emu.world()
        .add_fault(fault(
            serde_json::json!({"action": "DescribeDesktops", "code": "InternalError", "count": 1}),
        ))
        .unwrap();
    let g = list_app_instance_groups(&c, "cn-hangzhou", Some("aig-hz0001"))
        .await
        .unwrap()
        .remove(0);
    let err = approve_ota_task(
        &c,
        &ApproveOtaTask {
            app_instance_group_id: g.app_instance_group_id,
            biz_region_id: "cn-hangzhou".into(),
            task_id: g.ota_info.task_id,
            ota_type: "Fota".into(),
            start_time: (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "InternalError");
    assert_eq!(emu.world().counters().count("ApproveOtaTask"), 1);
    // The same failure on an idempotent read is retried.
    describe_desktops(&c, "cn-shanghai", &DesktopFilter::default())
        .await
        .unwrap();
    assert_eq!(
        emu.world().counters().count_code("DescribeDesktops", "InternalError"),
        1
    );
    assert_eq!(emu.world().counters().count_code("DescribeDesktops", "success"), 1);
}

#[tokio::test]
async fn wrong_secret_is_a_credentials_error_and_not_retried() {
    for v in BOTH {
        let emu = emulator().await;
        let bad = CredentialSource::Static {
            credentials: Credentials::new(
                alicloud_ops_operator::emulator::DEFAULT_ACCESS_KEY_ID,
                "wrong-secret",
                None,
                None,
            ),
            origin: "test".into(),
        };
        let c = client_with(&emu, v, bad);
        let err = describe_fota_tasks(&c, "cn-hangzhou", &[]).await.unwrap_err();
        assert_eq!(err.code(), "SignatureDoesNotMatch", "{v}");
        assert_eq!(err.class(), ErrorClass::Credentials);
        assert!(err.to_string().contains("server string to sign is:"), "{err}");
        assert!(!err.to_string().contains("wrong-secret"));
        assert_eq!(emu.world().counters().count("DescribeFotaTasks"), 1);

        let unknown = CredentialSource::Static {
            credentials: Credentials::new("LTAI-nobody", "x", None, None),
            origin: "t".into(),
        };
        let err = describe_fota_tasks(&client_with(&emu, v, unknown), "cn-hangzhou", &[])
            .await
            .unwrap_err();
        assert_eq!(err.code(), "InvalidAccessKeyId.NotFound");
    }
}

#[tokio::test]
async fn rrsa_credentials_from_the_emulator_are_used_and_refreshed() {
    for v in BOTH {
        let emu = emulator().await;
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "eyJhbGciOiJSUzI1NiJ9.first-token.sig").unwrap();
        let rrsa = CredentialSource::Rrsa(RrsaConfig {
            role_arn: "acs:ram::1234567890:role/ops-operator".into(),
            oidc_provider_arn: "acs:ram::1234567890:oidc-provider/ack-rrsa".into(),
            token_file: token_file.clone(),
            session_name: "test-session".into(),
            duration_seconds: 900,
        });
        let c = client_with(&emu, v, rrsa);
        describe_fota_tasks(&c, "cn-hangzhou", &[]).await.unwrap();
        assert_eq!(c.credentials().fetch_count(), 1);
        let first = c.credentials().get().await.unwrap();
        assert!(first.access_key_id.starts_with("STS."));
        assert!(first.security_token.is_some());
        // Cached: no second exchange.
        describe_desktops(&c, "cn-shanghai", &DesktopFilter::default())
            .await
            .unwrap();
        assert_eq!(c.credentials().fetch_count(), 1);

        // The token expires by the cloud's clock; the client refreshes once and succeeds.
        std::fs::write(&token_file, "eyJhbGciOiJSUzI1NiJ9.rotated-token.sig").unwrap();
        emu.world().clock.advance(chrono::Duration::hours(1)).unwrap();
        describe_fota_tasks(&c, "cn-hangzhou", &[]).await.unwrap();
        assert_eq!(c.credentials().fetch_count(), 2, "{v}");
        assert_ne!(c.credentials().get().await.unwrap().access_key_id, first.access_key_id);
        let counters = emu.world().counters();
        assert_eq!(
            counters.count_code("DescribeFotaTasks", "InvalidSecurityToken.Expired"),
            1
        );
        assert_eq!(counters.count_code("AssumeRoleWithOIDC", "success"), 2);
    }
}

#[tokio::test]
async fn rrsa_with_a_missing_token_file_names_the_file() {
    let emu = emulator().await;
    let rrsa = CredentialSource::Rrsa(RrsaConfig {
        role_arn: "acs:ram::1:role/r".into(),
        oidc_provider_arn: "acs:ram::1:oidc-provider/p".into(),
        token_file: "/nonexistent/token".into(),
        session_name: "s1".into(),
        duration_seconds: 900,
    });
    let err = describe_fota_tasks(&client_with(&emu, SignatureVersion::V3, rrsa), "cn-hangzhou", &[])
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Credentials);
    assert!(err.to_string().contains("/nonexistent/token"), "{err}");
}

#[tokio::test]
async fn unknown_region_and_bad_paging_name_the_parameter() {
    let emu = emulator().await;
    let c = client(&emu, SignatureVersion::V3);
    let err = ecd::describe_fota_tasks(&c, "xx-nowhere-1", &[]).await.unwrap_err();
    assert_eq!(err.code(), "InvalidRegionId.NotFound");
    let req = alicloud_ops_operator::cloud::request::RpcRequest::new(
        alicloud_ops_operator::cloud::Product::Ecd,
        "DescribeDesktops",
        "cn-hangzhou",
    )
    .query("RegionId", "cn-hangzhou")
    .query("MaxResults", "500");
    let err = c.call(&req).await.unwrap_err();
    assert_eq!(err.code(), "InvalidParameter.MaxResults");
    let req = alicloud_ops_operator::cloud::request::RpcRequest::new(
        alicloud_ops_operator::cloud::Product::Ecd,
        "UpdateFotaTask",
        "cn-hangzhou",
    )
    .query("RegionId", "cn-hangzhou")
    .query("TaskUid", "aot-hz0001");
    let err = c.call(&req).await.unwrap_err();
    assert_eq!(err.code(), "MissingParameter");
    assert!(err.to_string().contains("\"UserStatus\""), "{err}");
}

/// No error that leaves the cloud layer carries a secret, an STS token or the server's
/// string-to-sign, under either signing method: not a refused signature (whose message
/// is published with the string-to-sign), not a transport failure (whose text would name
/// the URL, which carries the token under V2), and not `Debug` of a request.
#[tokio::test]
async fn errors_and_debug_output_never_carry_secrets_or_tokens() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for v in BOTH {
        let emu = emulator().await;
        // Real STS credentials from the emulator (RRSA), so signed calls get past the token check.
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "eyJhbGciOiJSUzI1NiJ9.Leaky-Oidc-Token-77.sig").unwrap();
        let rrsa = CredentialSource::Rrsa(RrsaConfig {
            role_arn: "acs:ram::1234567890:role/ops-operator".into(),
            oidc_provider_arn: "acs:ram::1234567890:oidc-provider/ack-rrsa".into(),
            token_file,
            session_name: "test-session".into(),
            duration_seconds: 900,
        });
        let c = client_with(&emu, v, rrsa);
        describe_fota_tasks(&c, "cn-hangzhou", &[]).await.unwrap();
        let creds = c.credentials().get().await.unwrap();
        let token = creds.security_token.as_ref().unwrap().expose().to_string();
        let secret = creds.access_key_secret.expose().to_string();
        // The real cloud's V2 refusal quotes its string-to-sign, token and all.
        let enc = alicloud_ops_operator::cloud::canonical::percent_encode;
        emu.world()
            .add_fault(fault(serde_json::json!({"action": "DescribeFotaTasks", "code": "SignatureDoesNotMatch", "message": format!(
                "Specified signature is not matched with our calculation. server string to sign is:GET&%2F&SecurityToken%3D{}",
                enc(&enc(&token))
            )})))
            .unwrap();
        emu.world()
            .add_fault(fault(
                serde_json::json!({"action": "DescribeDesktops", "code": "InvalidParameter", "message": format!(
                    "The request echoed SecurityToken={token} and {secret}."
                )}),
            ))
            .unwrap();
        let refused = describe_fota_tasks(&c, "cn-hangzhou", &[]).await.unwrap_err();
        assert_eq!(refused.code(), "SignatureDoesNotMatch");
        let echoed = describe_desktops(&c, "cn-hangzhou", &DesktopFilter::default())
            .await
            .unwrap_err();
        let static_token = || CredentialSource::Static {
            credentials: Credentials::new("id", secret.clone(), Some(token.clone()), None),
            origin: "test".into(),
        };
        let mut s = settings(&emu, v);
        s.transport.endpoints = alicloud_ops_operator::cloud::endpoint::Endpoints::with_override(
            alicloud_ops_operator::cloud::endpoint::parse_endpoint(&format!("http://{closed}")).unwrap(),
        );
        s.retry.max_attempts = 1;
        let unreachable =
            alicloud_ops_operator::cloud::CloudClient::build(s, static_token(), Default::default()).unwrap();
        let lost = describe_fota_tasks(&unreachable, "cn-hangzhou", &[]).await.unwrap_err();
        assert_eq!(lost.class(), ErrorClass::Transient, "{lost}");
        for text in [
            refused.to_string(),
            format!("{refused:?}"),
            refused.summary(),
            echoed.to_string(),
            lost.to_string(),
            format!("{lost:?}"),
        ] {
            assert!(!text.contains(&token), "{v}: the STS token leaked: {text}");
            assert!(!text.contains(&secret), "{v}: the secret leaked: {text}");
            assert!(
                !text.contains("string to sign is:GET"),
                "{v}: the string-to-sign leaked: {text}"
            );
        }
        assert!(echoed.to_string().contains("[REDACTED]"), "{echoed}");
        let token = token.as_str();
        let secret = secret.as_str();
        let req = alicloud_ops_operator::cloud::request::RpcRequest::new(
            alicloud_ops_operator::cloud::endpoint::Product::Sts,
            "AssumeRoleWithOIDC",
            "cn-hangzhou",
        )
        .body("OIDCToken", "Leaky-Oidc-Token-77")
        .query("SecurityToken", token);
        let shown = format!("{req:?}");
        assert!(
            !shown.contains("Leaky-Oidc-Token-77") && !shown.contains(token),
            "{shown}"
        );
        let endpoints = alicloud_ops_operator::cloud::endpoint::Endpoints::with_override(
            alicloud_ops_operator::cloud::endpoint::parse_endpoint(&emu.url()).unwrap(),
        );
        let creds = Credentials::new("id", secret, Some(token.to_string()), None);
        let wire = alicloud_ops_operator::cloud::request::sign(
            &req,
            &endpoints,
            v,
            Some(&creds),
            &alicloud_ops_operator::cloud::request::Attempt::fresh(),
            "t",
        );
        let shown = format!("{wire:?}");
        assert!(
            !shown.contains(token) && !shown.contains("Leaky-Oidc-Token-77"),
            "{v}: {shown}"
        );
    }
}

/// A tenant who names another tenant's AccessKeyId with a wrong secret spends a quota of
/// their own, never the other tenant's: buckets are keyed by the credential set.
#[tokio::test]
async fn a_wrong_secret_for_a_known_key_cannot_spend_that_keys_quota() {
    let emu = emulator().await;
    let mut s = settings(&emu, SignatureVersion::V3);
    s.limits = alicloud_ops_operator::cloud::ratelimit::RateLimitConfig::default();
    s.retry.max_attempts = 1;
    let owner = alicloud_ops_operator::cloud::CloudClient::build(s, default_key(), Default::default()).unwrap();
    let intruder = owner.with_credentials(CredentialSource::Static {
        credentials: Credentials::new(
            alicloud_ops_operator::emulator::DEFAULT_ACCESS_KEY_ID,
            "garbage",
            None,
            None,
        ),
        origin: "intruder".into(),
    });
    // Ten share calls fill a window of ten a minute, if the window were the owner's.
    for i in 0..10 {
        let e = modify_image_share_status(
            &intruder,
            "cn-hangzhou",
            "m-hz0003",
            ShareOperation::Share,
            &format!("t-{i}"),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), "SignatureDoesNotMatch");
    }
    // The owner's call goes out at once (a shared window would hold it for a minute).
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        modify_image_share_status(&owner, "cn-hangzhou", "m-hz0003", ShareOperation::Share, "owner-1"),
    )
    .await
    .expect("the owner's quota is untouched")
    .unwrap();
}

/// A server on loopback that answers every request with `response` and counts requests.
async fn canned_server(response: Vec<u8>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = conn.read(&mut buf).await;
                let _ = conn.write_all(&response).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    (url, hits)
}

fn client_for_url(
    emu: &alicloud_ops_operator::emulator::Emulator,
    url: &str,
) -> alicloud_ops_operator::cloud::CloudClient {
    let mut s = settings(emu, SignatureVersion::V2);
    s.transport.endpoints = alicloud_ops_operator::cloud::endpoint::Endpoints::with_override(
        alicloud_ops_operator::cloud::endpoint::parse_endpoint(url).unwrap(),
    );
    s.retry.max_attempts = 1;
    alicloud_ops_operator::cloud::CloudClient::build(s, default_key(), Default::default()).unwrap()
}

#[tokio::test]
async fn redirects_are_not_followed_and_answers_are_bounded() {
    let emu = emulator().await;
    let (elsewhere, hits) = canned_server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_vec()).await;
    let redirect = format!("HTTP/1.1 302 Found\r\nLocation: {elsewhere}/\r\nContent-Length: 0\r\n\r\n");
    let (redirector, _) = canned_server(redirect.into_bytes()).await;
    let err = describe_fota_tasks(&client_for_url(&emu, &redirector), "cn-hangzhou", &[])
        .await
        .unwrap_err();
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "followed a redirect: {err}"
    );

    let size = alicloud_ops_operator::cloud::transport::MAX_RESPONSE_BYTES + 1;
    let mut huge =
        format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n").into_bytes();
    huge.extend(std::iter::repeat_n(b' ', size));
    let (big, _) = canned_server(huge).await;
    let err = describe_fota_tasks(&client_for_url(&emu, &big), "cn-hangzhou", &[])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
}

#[tokio::test]
async fn an_error_code_inside_http_200_is_an_error_for_every_action() {
    let emu = emulator().await;
    let c = client(&emu, SignatureVersion::V3);
    emu.world()
        .add_fault(fault(
            serde_json::json!({"action": "DescribeFotaTasks", "code": "InternalError", "status": 200}),
        ))
        .unwrap();
    let err = describe_fota_tasks(&c, "cn-hangzhou", &[]).await.unwrap_err();
    assert_eq!(
        (err.code(), err.class()),
        ("InternalError", ErrorClass::Transient),
        "{err}"
    );
    emu.world()
        .add_fault(fault(
            serde_json::json!({"action": "ListCustomImages", "code": "Forbidden.RAM", "status": 200}),
        ))
        .unwrap();
    let err = list_custom_images(&c, "cn-hangzhou", &[]).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Credentials, "{err}");
}

/// Codes the classifier does not know fall back on the HTTP status: a 4xx is terminal and
/// sent once, a 5xx is retried.
#[tokio::test]
async fn unknown_codes_are_classified_by_http_status() {
    let emu = emulator().await;
    let c = client(&emu, SignatureVersion::V3);
    let attempts = |action: &str| emu.world().request_log().iter().filter(|r| r.action == action).count();
    emu.world()
        .add_fault(fault(
            serde_json::json!({"action": "DescribeFotaTasks", "code": "Weird.Refusal", "status": 418}),
        ))
        .unwrap();
    let err = describe_fota_tasks(&c, "cn-hangzhou", &[]).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Invalid, "{err}");
    assert_eq!(attempts("DescribeFotaTasks"), 1, "a 4xx is not retried");
    emu.world()
        .add_fault(fault(
            serde_json::json!({"action": "DescribeDesktops", "code": "Weird.Outage", "status": 502}),
        ))
        .unwrap();
    let err = describe_desktops(&c, "cn-hangzhou", &DesktopFilter::default())
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient, "{err}");
    assert_eq!(
        attempts("DescribeDesktops"),
        4,
        "a 5xx is retried up to the policy's attempts"
    );
}

/// An answer that cannot be decoded is read twice, then terminal, naming the action and
/// what could not be read.
#[tokio::test]
async fn an_undecodable_answer_is_terminal_after_a_second_read() {
    let emu = emulator().await;
    let body = r#"{"RequestId":"r","FotaTasks":"not-a-list"}"#;
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (url, hits) = canned_server(answer.into_bytes()).await;
    let err = describe_fota_tasks(&client_for_url(&emu, &url), "cn-hangzhou", &[])
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Invalid, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("DescribeFotaTasks") && text.contains("invalid type"),
        "{text}"
    );
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "read twice, then given up"
    );
}

/// A cloud account is an account, not an AccessKey: two RAM users' keys of one account are
/// one account to STS, share its 10-a-minute ModifyImageShareStatus quota in the client's
/// lanes (so the cloud never has to throttle), and the emulator counts the quota per account.
#[tokio::test]
async fn two_keys_of_one_account_are_one_account_and_share_its_quota() {
    use alicloud_ops_operator::cloud::client::ClientSettings;
    use alicloud_ops_operator::cloud::ratelimit::RateLimitConfig;
    use alicloud_ops_operator::cloud::{CloudClient, Product};
    use alicloud_ops_operator::emulator::DEFAULT_ACCOUNT_ID;
    const SECOND: (&str, &str) = ("LTAI5tSecondRamUser", "second-ram-user-secret");
    const OTHER: (&str, &str) = ("LTAI5tOtherAccount", "other-account-secret");
    let emu = emulator_with_keys(
        CloudState::default_dataset(),
        &[
            ExtraKey(SECOND.0, SECOND.1, None),
            ExtraKey(OTHER.0, OTHER.1, Some("2000000000000009")),
        ],
    )
    .await;
    let with_quota = ClientSettings {
        limits: RateLimitConfig::default(),
        ..settings(&emu, SignatureVersion::V3)
    };
    let first = CloudClient::build(with_quota, default_key(), Default::default()).unwrap();
    let key = |(id, secret): (&str, &str)| CredentialSource::Static {
        credentials: Credentials::new(id, secret, None, None),
        origin: "test".into(),
    };
    let second = first.with_credentials(key(SECOND));
    let other = first.with_credentials(key(OTHER));
    assert_eq!(first.account().await.unwrap(), DEFAULT_ACCOUNT_ID);
    assert_eq!(second.account().await.unwrap(), DEFAULT_ACCOUNT_ID);
    assert_eq!(other.account().await.unwrap(), "2000000000000009");
    let admit = |c: &CloudClient, holder: &str| {
        let c = c.for_holder(holder);
        async move {
            c.admit(Product::SwasOpen, "cn-hangzhou", "ModifyImageShareStatus")
                .await
        }
    };
    for i in 0..10 {
        admit(&first, &format!("first-{i}")).await.unwrap();
    }
    assert!(
        admit(&second, "second-0").await.is_err(),
        "the second RAM user got an 11th call of the account's 10 a minute"
    );
    admit(&other, "other-0").await.unwrap();

    // The cloud counts the quota per account too, whichever key spends it.
    let unlimited =
        |source| CloudClient::build(settings(&emu, SignatureVersion::V3), source, Default::default()).unwrap();
    let (a, b) = (unlimited(default_key()), unlimited(key(SECOND)));
    for i in 0..10 {
        let token = format!("quota-a-{i}");
        modify_image_share_status(&a, "cn-hangzhou", "m-hz0001", ShareOperation::Share, &token)
            .await
            .unwrap();
    }
    let err = modify_image_share_status(&b, "cn-hangzhou", "m-hz0001", ShareOperation::Share, "quota-b-0")
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Throttled, "{err}");
}

/// A replica that is not (or no longer) the leader closes its write gate: every write
/// action is refused before it is sent, retries and later batches included; reads go on.
#[tokio::test]
async fn a_closed_write_gate_sends_no_write_and_every_read() {
    use alicloud_ops_operator::cloud::gate::WriteGate;
    use std::sync::Arc;
    let emu = emulator().await;
    let gate = Arc::new(WriteGate::new(true));
    let c = client(&emu, SignatureVersion::V3).with_gate(gate.clone());
    gate.close();
    let ids = vec!["ecd-hz10001".to_string()];
    let refused = [
        update_fota_task(&c, "cn-hangzhou", "aot-hz0001", "Running").await.err(),
        set_desktop_maintenance(&c, "cn-hangzhou", MaintenanceMode::Enter, &ids)
            .await
            .err(),
        ecd::tag_desktops(&c, "cn-hangzhou", &ids, "k", "v").await.err(),
        ecd::untag_desktops(&c, "cn-hangzhou", &ids, "k").await.err(),
        modify_image_share_status(&c, "cn-hangzhou", "m-hz0003", ShareOperation::Share, "gate-1")
            .await
            .err(),
        approve_ota_task(
            &c,
            &ApproveOtaTask {
                app_instance_group_id: "aig-hz0001".into(),
                biz_region_id: "cn-hangzhou".into(),
                task_id: "t".into(),
                ota_type: "Fota".into(),
                start_time: "2030-01-01T00:00:00Z".into(),
            },
        )
        .await
        .err(),
    ];
    for (i, e) in refused.iter().enumerate() {
        let e = e.as_ref().unwrap_or_else(|| panic!("write {i} was sent"));
        assert_eq!(e.code(), "NotLeading", "{e}");
    }
    assert_eq!(emu.world().counters().total, 0, "a write reached the cloud");
    describe_desktops(&c, "cn-hangzhou", &DesktopFilter::default())
        .await
        .unwrap();
    gate.open();
    update_fota_task(&c, "cn-hangzhou", "aot-hz0001", "Running")
        .await
        .unwrap();
}

/// An upgrade runs from its start time for the group's upgrade duration (`MAINTAINING`,
/// `UPGRADING`, `RUNNING`) and ends as scripted: a failure leaves the version where it was
/// and the group `MAINTAIN_FAILED`/`UNAVAILABLE`, and ListOtaTask says `FAILED`; the next
/// approval (of the same version, the TaskId having rotated) succeeds by default.
#[tokio::test]
async fn ota_upgrades_run_and_end_as_scripted() {
    use alicloud_ops_operator::cloud::ops::appstream::list_ota_tasks;
    let emu = emulator().await;
    emu.world().update_state(|s| {
        let g = s
            .appstream
            .app_instance_groups
            .iter_mut()
            .find(|g| g.group.app_instance_group_id == "aig-hz0001")
            .unwrap();
        g.upgrade_duration_seconds = 600;
        g.upgrade_outcomes = vec!["FAILED".into()];
    });
    let c = client(&emu, SignatureVersion::V3);
    let group = || async {
        list_app_instance_groups(&c, "cn-hangzhou", Some("aig-hz0001"))
            .await
            .unwrap()
            .remove(0)
    };
    let tasks = || async { list_ota_tasks(&c, "cn-hangzhou", "aig-hz0001").await.unwrap() };
    let g = group().await;
    assert_eq!(g.tags[0].key, "ring");
    let approve = |task_id: String, start: chrono::DateTime<chrono::Utc>| ApproveOtaTask {
        app_instance_group_id: "aig-hz0001".into(),
        biz_region_id: "cn-hangzhou".into(),
        task_id,
        ota_type: "Fota".into(),
        start_time: start.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    };
    let start = emu.world().clock.now() + chrono::Duration::minutes(5);
    approve_ota_task(&c, &approve(g.ota_info.task_id.clone(), start))
        .await
        .unwrap();
    assert_eq!(tasks().await[0].task_display_status, "STANDBY");
    emu.world().clock.advance(chrono::Duration::minutes(6)).unwrap();
    let running = group().await;
    assert_eq!(
        (running.status.as_str(), running.resource_status.as_str()),
        ("MAINTAINING", "UPGRADING")
    );
    assert_eq!(tasks().await[0].task_display_status, "RUNNING");
    emu.world().clock.advance(chrono::Duration::minutes(10)).unwrap();
    let failed = group().await;
    assert_eq!(
        (failed.status.as_str(), failed.resource_status.as_str()),
        ("MAINTAIN_FAILED", "UNAVAILABLE")
    );
    assert_eq!(
        failed.ota_info.ota_version, g.ota_info.ota_version,
        "a failure moves no version"
    );
    assert_eq!(failed.ota_info.new_ota_version, g.ota_info.new_ota_version);
    assert_eq!(tasks().await[0].task_display_status, "FAILED");
    // Approved again, it succeeds (the script is used up).
    let start = emu.world().clock.now() + chrono::Duration::minutes(5);
    approve_ota_task(&c, &approve(failed.ota_info.task_id.clone(), start))
        .await
        .unwrap();
    emu.world().clock.advance(chrono::Duration::minutes(20)).unwrap();
    let done = group().await;
    assert_eq!(
        (done.status.as_str(), done.resource_status.as_str()),
        ("PUBLISHED", "AVAILABLE")
    );
    assert_eq!(done.ota_info.ota_version, g.ota_info.new_ota_version);
    let statuses: Vec<String> = tasks().await.into_iter().map(|t| t.task_display_status).collect();
    assert_eq!(statuses, ["FINISHED", "FAILED"], "newest first");
    // The request log says what each approval will do.
    let log = emu.world().request_log();
    let approvals: Vec<&Vec<String>> = log
        .iter()
        .filter(|r| r.action == "ApproveOtaTask")
        .map(|r| &r.effects)
        .collect();
    assert!(approvals[0][0].ends_with("to end FAILED"), "{approvals:?}");
    assert!(approvals[1][0].ends_with("to end FINISHED"), "{approvals:?}");
}
