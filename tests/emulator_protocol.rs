//! The emulator's wire protocol, driven with hand-built HTTP requests.

mod support;

use alicloud_ops_operator::cloud::canonical::{canonical_query, percent_encode, timestamp};
use alicloud_ops_operator::cloud::endpoint::{Endpoints, Product, parse_endpoint};
use alicloud_ops_operator::cloud::request::{Attempt, RpcRequest, sign};
use alicloud_ops_operator::cloud::signer::{v2_signature, v2_string_to_sign};
use alicloud_ops_operator::cloud::{Credentials, SignatureVersion};
use alicloud_ops_operator::emulator::{DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET};
use serde_json::Value;
use support::*;

fn creds() -> Credentials {
    Credentials::new(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, None, None)
}

async fn send(wire: alicloud_ops_operator::cloud::request::WireRequest) -> (u16, Value) {
    let mut b = reqwest::Client::new().post(wire.url);
    for (k, v) in wire.headers {
        b = b.header(k, v);
    }
    if let Some(body) = wire.body {
        b = b.body(body);
    }
    let resp = b.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// `req`, V3-signed with the default key, sent to the emulator: (HTTP status, JSON body).
async fn send_v3(emu: &alicloud_ops_operator::emulator::Emulator, req: &RpcRequest) -> (u16, Value) {
    let endpoints = Endpoints::with_override(parse_endpoint(&emu.url()).unwrap());
    send(sign(
        req,
        &endpoints,
        SignatureVersion::V3,
        Some(&creds()),
        &Attempt::fresh(),
        "t",
    ))
    .await
}

fn desktops_request() -> RpcRequest {
    RpcRequest::new(Product::Ecd, "DescribeDesktops", "cn-shanghai").query("RegionId", "cn-shanghai")
}

#[tokio::test]
async fn a_reused_nonce_is_refused() {
    let emu = emulator().await;
    let endpoints = Endpoints::with_override(parse_endpoint(&emu.url()).unwrap());
    for v in BOTH {
        let wire = sign(
            &desktops_request(),
            &endpoints,
            v,
            Some(&creds()),
            &Attempt::fresh(),
            "t",
        );
        let (status, body) = send(wire.clone()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["TotalCount"], 20);
        assert!(body["RequestId"].as_str().is_some_and(|r| r.len() == 36));
        let (status, body) = send(wire).await;
        assert_eq!(status, 400);
        assert_eq!(body["Code"], "SignatureNonceUsed", "{v}");
        for field in ["RequestId", "HostId", "Message", "Recommend"] {
            assert!(body[field].is_string(), "{field} missing in {body}");
        }
    }
}

#[tokio::test]
async fn an_old_timestamp_is_expired() {
    let emu = emulator().await;
    let endpoints = Endpoints::with_override(parse_endpoint(&emu.url()).unwrap());
    for v in BOTH {
        let attempt = Attempt {
            nonce: uuid::Uuid::new_v4().to_string(),
            now: chrono::Utc::now() - chrono::Duration::minutes(16),
        };
        let (status, body) = send(sign(&desktops_request(), &endpoints, v, Some(&creds()), &attempt, "t")).await;
        assert_eq!(
            (status, body["Code"].as_str().unwrap()),
            (400, "InvalidTimeStamp.Expired"),
            "{v}"
        );
        let attempt = Attempt {
            nonce: uuid::Uuid::new_v4().to_string(),
            now: chrono::Utc::now() - chrono::Duration::minutes(14),
        };
        let (status, _) = send(sign(&desktops_request(), &endpoints, v, Some(&creds()), &attempt, "t")).await;
        assert_eq!(status, 200);
    }
}

#[tokio::test]
async fn get_with_everything_in_the_query_works_for_v2() {
    let emu = emulator().await;
    let url = v2_get_url(
        &emu.url(),
        "GET",
        &[
            ("Format", "JSON"),
            ("RegionId", "cn-hangzhou"),
            ("TaskUid.1", "aot-hz0001"),
        ],
    );
    let resp = reqwest::get(url).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["FotaTasks"].as_array().unwrap().len(), 1);
    assert_eq!(body["FotaTasks"][0]["TaskUid"], "aot-hz0001");
    assert_eq!(body["Code"], "success");
}

/// A GET DescribeFotaTasks URL with every parameter in the query, V2-signed as if sent with
/// `signed_as`.
fn v2_get_url(base: &str, signed_as: &str, extra: &[(&str, &str)]) -> String {
    let ts = timestamp(chrono::Utc::now());
    let nonce = uuid::Uuid::new_v4().to_string();
    let mut params: Vec<(&str, &str)> = vec![
        ("Action", "DescribeFotaTasks"),
        ("Version", "2020-09-30"),
        ("Timestamp", &ts),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", &nonce),
        ("AccessKeyId", DEFAULT_ACCESS_KEY_ID),
    ];
    params.extend_from_slice(extra);
    let sig = v2_signature(
        DEFAULT_ACCESS_KEY_SECRET,
        &v2_string_to_sign(signed_as, params.iter().copied()),
    );
    format!(
        "{base}/?{}&Signature={}",
        canonical_query(params.iter().copied()),
        percent_encode(&sig)
    )
}

#[tokio::test]
async fn a_signature_over_the_wrong_method_does_not_match() {
    let emu = emulator().await;
    let url = v2_get_url(&emu.url(), "POST", &[("RegionId", "cn-hangzhou")]);
    let body: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    assert_eq!(body["Code"], "SignatureDoesNotMatch");
    assert!(
        body["Message"]
            .as_str()
            .unwrap()
            .contains("server string to sign is:GET&%2F&")
    );
}

#[tokio::test]
async fn tampering_with_a_v3_body_is_detected() {
    let emu = emulator().await;
    let endpoints = Endpoints::with_override(parse_endpoint(&emu.url()).unwrap());
    let req = RpcRequest::new(Product::AppstreamCenter, "ApproveOtaTask", "cn-hangzhou")
        .body("AppInstanceGroupId", "aig-hz0001")
        .body("BizRegionId", "cn-hangzhou")
        .body("OtaType", "Fota")
        .body("StartTime", "2099-01-01T00:00:00Z")
        .body("TaskId", "ota-hz0001-1");
    let mut wire = sign(
        &req,
        &endpoints,
        SignatureVersion::V3,
        Some(&creds()),
        &Attempt::fresh(),
        "t",
    );
    wire.body = Some(wire.body.unwrap().replace("aig-hz0001", "aig-hz0002"));
    let (status, body) = send(wire).await;
    assert_eq!((status, body["Code"].as_str().unwrap()), (400, "SignatureDoesNotMatch"));
    assert_eq!(
        emu.world().state().appstream.app_instance_groups[1].scheduled_upgrade,
        None
    );
}

#[tokio::test]
async fn unknown_actions_and_missing_parameters_are_named() {
    let emu = emulator().await;
    let endpoints = Endpoints::with_override(parse_endpoint(&emu.url()).unwrap());
    let req = RpcRequest::new(Product::Ecd, "DeleteEverything", "cn-hangzhou").query("RegionId", "cn-hangzhou");
    let (status, body) = send(sign(
        &req,
        &endpoints,
        SignatureVersion::V3,
        Some(&creds()),
        &Attempt::fresh(),
        "t",
    ))
    .await;
    assert_eq!(
        (status, body["Code"].as_str().unwrap()),
        (404, "InvalidAction.NotFound")
    );
    let req = RpcRequest::new(Product::Ecd, "SetDesktopMaintenance", "cn-hangzhou")
        .query("RegionId", "cn-hangzhou")
        .query("Mode", "SIDEWAYS")
        .query("DesktopIds.1", "ecd-hz10001");
    let (_, body) = send(sign(
        &req,
        &endpoints,
        SignatureVersion::V2,
        Some(&creds()),
        &Attempt::fresh(),
        "t",
    ))
    .await;
    assert_eq!(body["Code"], "InvalidParameter.Mode");
    let req = RpcRequest::new(Product::SwasOpen, "ModifyImageShareStatus", "cn-hangzhou")
        .query("RegionId", "cn-hangzhou")
        .query("ImageId", "m-hz0001")
        .query("Operation", "Delete");
    let (status, body) = send(sign(
        &req,
        &endpoints,
        SignatureVersion::V3,
        Some(&creds()),
        &Attempt::fresh(),
        "t",
    ))
    .await;
    assert_eq!(
        (status, body["Code"].as_str().unwrap()),
        (400, "InvalidParam.OperationIllegal")
    );
    // Unsigned requests are refused, except the anonymous AssumeRoleWithOIDC.
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/?Action=DescribeDesktops&Version=2020-09-30&RegionId=cn-hangzhou",
            emu.url()
        ))
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["Code"], "MissingParameter");
    assert!(body["Message"].as_str().unwrap().contains("AccessKeyId"));
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

async fn delete_status(http: &reqwest::Client, url: &str) -> u16 {
    http.delete(url).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn admin_api_state_requests_clock_and_faults() {
    let emu = emulator().await;
    let http = reqwest::Client::new();
    let base = emu.url();
    let mut state: Value = get_json(&http, &format!("{base}/_emulator/state")).await;
    state["ecd"]["cn-hangzhou"]["fotaTasks"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "TaskUid": "aot-new", "AppVersion": "9.9", "Status": "Pending", "PublishTime": "2026-11-22T00:00:00Z"
        }));
    let resp = http
        .put(format!("{base}/_emulator/state"))
        .json(&state)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let c = client(&emu, SignatureVersion::V3);
    let tasks = alicloud_ops_operator::cloud::ops::ecd::describe_fota_tasks(&c, "cn-hangzhou", &[])
        .await
        .unwrap();
    assert!(tasks.iter().any(|t| t.task_uid == "aot-new"));

    let resp = http
        .put(format!("{base}/_emulator/state"))
        .body(r#"{"ecd": 5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("invalid state"));

    let counters: Value = get_json(&http, &format!("{base}/_emulator/requests")).await;
    assert_eq!(counters["actions"]["DescribeFotaTasks"]["success"], 1);
    assert_eq!(delete_status(&http, &format!("{base}/_emulator/requests")).await, 204);
    let counters: Value = get_json(&http, &format!("{base}/_emulator/requests")).await;
    assert_eq!(counters["total"], 0);

    let before = emu.world().clock.now();
    let resp: Value = http
        .post(format!("{base}/_emulator/clock"))
        .json(&serde_json::json!({"advanceSeconds": 7200}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let now: chrono::DateTime<chrono::Utc> = resp["now"].as_str().unwrap().parse().unwrap();
    assert!(now - before >= chrono::Duration::hours(2));
    let resp = http
        .post(format!("{base}/_emulator/clock"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    let resp = http
        .post(format!("{base}/_emulator/faults"))
        .json(&serde_json::json!({"action": "DescribeFotaTasks", "code": "ServiceUnavailable", "count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let resp = http
        .post(format!("{base}/_emulator/faults"))
        .json(&serde_json::json!({"action": "X", "code": "Y", "probability": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("probability"));
    let mut s = settings(&emu, SignatureVersion::V3);
    s.retry.max_attempts = 1;
    let once = alicloud_ops_operator::cloud::CloudClient::build(s, default_key(), Default::default()).unwrap();
    let err = alicloud_ops_operator::cloud::ops::ecd::describe_fota_tasks(&once, "cn-hangzhou", &[])
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.api_error().unwrap().status),
        ("ServiceUnavailable", 503)
    );
    assert_eq!(delete_status(&http, &format!("{base}/_emulator/faults")).await, 204);
    let faults: Value = get_json(&http, &format!("{base}/_emulator/faults")).await;
    assert_eq!(faults, serde_json::json!([]));
}

#[tokio::test]
async fn hostile_admin_requests_get_a_clear_400_and_the_emulator_keeps_working() {
    let emu = emulator().await;
    let http = reqwest::Client::new();
    let base = emu.url();
    let post = |path: &str, body: Value| {
        let req = http.post(format!("{base}{path}")).json(&body);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, text) = post(
        "/_emulator/clock",
        serde_json::json!({"advanceSeconds": 9_000_000_000_000_000i64}),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("advanceSeconds"), "{text}");
    for _ in 0..2 {
        let (status, text) = post(
            "/_emulator/faults",
            serde_json::json!({"action": "*", "latencyMs": u64::MAX}),
        )
        .await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("latencyMs"), "{text}");
    }
    let mut state: Value = get_json(&http, &format!("{base}/_emulator/state")).await;
    state["appstream"]["appInstanceGroups"][0]["UpgradeDurationSeconds"] = serde_json::json!(i64::MAX - 10);
    let r = http
        .put(format!("{base}/_emulator/state"))
        .json(&state)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("UpgradeDurationSeconds"));

    // A NextToken at the end of the address space is a page past the end, not a crash.
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD_NO_PAD.encode("offset:18446744073709551615");
    let (status, body) = send_v3(&emu, &desktops_request().query("NextToken", token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Desktops"], serde_json::json!([]));

    // Nothing was poisoned: the clock, the state and signed calls all still answer.
    let (status, _) = post("/_emulator/clock", serde_json::json!({"advanceSeconds": 60})).await;
    assert_eq!(status, 200);
    let state: Value = get_json(&http, &format!("{base}/_emulator/state")).await;
    assert!(state["ecd"]["cn-hangzhou"].is_object());
    let c = client(&emu, SignatureVersion::V3);
    alicloud_ops_operator::cloud::ops::ecd::describe_fota_tasks(&c, "cn-hangzhou", &[])
        .await
        .unwrap();
}

/// What the official clients send is accepted: the Python SDK's `Share=True`, and the
/// comma-separated `ImageIds` its documentation allows, beside the JSON array.
#[tokio::test]
async fn list_custom_images_takes_what_the_official_clients_send() {
    let emu = emulator().await;
    let images = |share: &str, ids: &str| {
        RpcRequest::new(Product::SwasOpen, "ListCustomImages", "cn-hangzhou")
            .query("RegionId", "cn-hangzhou")
            .query("Share", share.to_string())
            .query("ImageIds", ids.to_string())
    };
    // As documented: `False` leaves shared images out; otherwise every image is listed.
    for (share, ids, want) in [
        ("True", "m-hz0001,m-hz0003", vec!["m-hz0001", "m-hz0003"]),
        ("true", r#"["m-hz0001","m-hz0003"]"#, vec!["m-hz0001", "m-hz0003"]),
        ("False", "m-hz0001, m-hz0003", vec!["m-hz0003"]),
    ] {
        let (status, body) = send_v3(&emu, &images(share, ids)).await;
        assert_eq!(status, 200, "{share} {ids}: {body}");
        let got: Vec<&str> = body["CustomImages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["ImageId"].as_str().unwrap())
            .collect();
        assert_eq!(got, want, "{share} {ids}");
    }
    let (status, body) = send_v3(&emu, &images("yes", "m-hz0001")).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("InvalidParameter.Share")),
        "{body}"
    );
}
