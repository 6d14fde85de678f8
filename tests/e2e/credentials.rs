//! Credentials: no secret value leaks anywhere; a change of account drains first; a rotated key or a typo exits nothing; default credentials only where allowed.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn secret_values_never_appear_in_events_status_or_logs() {
    let Scene { client, ns, emu } = Scene::new("leak").await;
    let marker = "Very-Secret-Value-7f3a9c";
    secret(&client, &ns, "wrong", marker).await;
    let op = operator(&ns, &emu);
    create::<ImageShare>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": "s"},
               "spec": {"regionId": "cn-hangzhou", "imageId": "m-hz0001", "credentialsRef": {"name": "wrong"}}}),
    )
    .await;
    let status = wait_reason::<ImageShare>(&client, &ns, "s", "CredentialsInvalid").await;
    assert!(status.to_string().contains("SignatureDoesNotMatch"), "{status}");
    // A failure that repeats does not rewrite the status, so it cannot retrigger itself:
    // about one call per 3 s resync, not a hot loop.
    let before = emu.world().counters().count("ListCustomImages");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let during = emu.world().counters().count("ListCustomImages") - before;
    assert!(during <= 6, "{during} calls in 6 s: the error loops");
    // A missing Secret is reported by name.
    create::<ImageShare>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": "nosecret"},
               "spec": {"regionId": "cn-hangzhou", "imageId": "m-hz0001", "credentialsRef": {"name": "absent"}}}),
    )
    .await;
    let status = wait_reason::<ImageShare>(&client, &ns, "nosecret", "CredentialsInvalid").await;
    assert!(
        status.to_string().contains(&format!("Secret {ns}/absent not found")),
        "{status}"
    );
    let events = Api::<Event>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap();
    assert!(!events.items.is_empty());
    let all = format!(
        "{}\n{}\n{}",
        serde_json::to_string(&events.items).unwrap(),
        status,
        op.logs()
    );
    assert!(!all.contains(marker), "a secret value leaked");
    let statuses = serde_json::to_string(
        &Api::<ImageShare>::namespaced(client.clone(), &ns)
            .list(&Default::default())
            .await
            .unwrap()
            .items,
    )
    .unwrap();
    assert!(!statuses.contains(marker));
}

#[tokio::test(flavor = "multi_thread")]
async fn changed_credentials_exit_with_the_old_ones_first_and_region_is_immutable() {
    use alicloud_ops_operator::emulator::{CloudState, DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET};
    let client = admin().await;
    let ns = namespace(&client, "rekey").await;
    let second = ("LTAI5tSecondAccount", "second-account-secret");
    let emu = emulator_with_keys(
        CloudState::default_dataset(),
        &[ExtraKey(second.0, second.1, Some("2000000000000001"))],
    )
    .await;
    under_project_policy(&emu, "operator.json");
    secret(&client, &ns, "old", DEFAULT_ACCESS_KEY_SECRET).await;
    let s: Secret = serde_json::from_value(json!({"metadata": {"name": "new"},
        "stringData": {"accessKeyId": second.0, "accessKeySecret": second.1}}))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
    let _op = operator(&ns, &emu);
    let id = "ecd-hz10061";
    create::<DesktopMaintenanceWindow>(&client, &ns, dmw("w", &[id], chrono::Duration::hours(2), Some("old"))).await;
    wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "w", "Active").await;

    let api = Api::<DesktopMaintenanceWindow>::namespaced(client.clone(), &ns);
    let err = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"regionId": "cn-shanghai"}})),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("regionId cannot be changed"), "{err}");

    patch_spec::<DesktopMaintenanceWindow>(&client, &ns, "w", json!({"credentialsRef": {"name": "new"}})).await;
    let sets = || -> Vec<(String, String)> {
        emu.world()
            .request_log()
            .into_iter()
            .filter(|r| r.action == "SetDesktopMaintenance" && r.code == "success")
            .map(|r| (r.params["Mode"].clone(), r.access_key_id))
            .collect()
    };
    eventually("exited with the old key, entered with the new", WAIT, || async {
        let s = sets();
        (s == vec![
            ("ENTER".to_string(), DEFAULT_ACCESS_KEY_ID.to_string()),
            ("EXIT".to_string(), DEFAULT_ACCESS_KEY_ID.to_string()),
            ("ENTER".to_string(), second.0.to_string()),
        ])
        .then_some(())
    })
    .await;
    let status = wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "w", "Active").await;
    assert_eq!(status["enteredWith"]["credentialsRef"]["name"], "new");
    assert!(in_maintenance(&emu, id));
}

/// Rotating a key the way GitOps does it (a kustomize secretGenerator's new hash-suffixed
/// name, the old Secret pruned in the same apply), to another RAM user of the same account,
/// never exits a desktop mid-window; nor does a typo in credentialsRef.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_rotated_within_the_account_or_a_typo_never_exits_a_desktop() {
    use alicloud_ops_operator::emulator::{CloudState, DEFAULT_ACCESS_KEY_SECRET};
    let client = admin().await;
    let ns = namespace(&client, "rotate").await;
    let second = ("LTAI5tSameAccountUser2", "same-account-second-user");
    let emu = emulator_with_keys(CloudState::default_dataset(), &[ExtraKey(second.0, second.1, None)]).await;
    under_project_policy(&emu, "operator.json");
    secret(&client, &ns, "creds-7f9c2b", DEFAULT_ACCESS_KEY_SECRET).await;
    let _op = operator(&ns, &emu);
    let id = "ecd-hz10071";
    create::<DesktopMaintenanceWindow>(
        &client,
        &ns,
        dmw("w", &[id], chrono::Duration::hours(2), Some("creds-7f9c2b")),
    )
    .await;
    wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "w", "Active").await;

    // The new Secret, the reference to it, and the old one pruned, as one apply does.
    let rotated: Secret = serde_json::from_value(json!({"metadata": {"name": "creds-k2m4d8",
        "labels": {"ops.alicloud.dev/credentials": "true"}},
        "stringData": {"accessKeyId": second.0, "accessKeySecret": second.1}}))
    .unwrap();
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    secrets.create(&PostParams::default(), &rotated).await.unwrap();
    patch_spec::<DesktopMaintenanceWindow>(&client, &ns, "w", json!({"credentialsRef": {"name": "creds-k2m4d8"}}))
        .await;
    secrets.delete("creds-7f9c2b", &DeleteParams::default()).await.unwrap();
    let exits = || {
        emu.world()
            .request_log()
            .into_iter()
            .filter(|r| r.action == "SetDesktopMaintenance" && r.params.get("Mode").map(String::as_str) == Some("EXIT"))
            .count()
    };
    eventually("the window acts with the rotated key", WAIT, || async {
        let (_, reason, status) = ready::<DesktopMaintenanceWindow>(&client, &ns, "w").await?;
        (reason == "Active" && status["enteredWith"]["credentialsRef"]["name"] == "creds-k2m4d8").then_some(())
    })
    .await;
    assert_eq!(exits(), 0, "a key rotated within the account exited the desktop");
    assert!(in_maintenance(&emu, id));

    // A typo: the credentials cannot be read, and nothing is exited on a guess.
    patch_spec::<DesktopMaintenanceWindow>(&client, &ns, "w", json!({"credentialsRef": {"name": "creds-k2m4d9"}}))
        .await;
    wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "w", "CredentialsInvalid").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(exits(), 0, "a typo in credentialsRef exited the desktop");
    assert!(in_maintenance(&emu, id));
    patch_spec::<DesktopMaintenanceWindow>(&client, &ns, "w", json!({"credentialsRef": {"name": "creds-k2m4d8"}}))
        .await;
    wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "w", "Active").await;
    assert_eq!(exits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_leak_under_v2_with_sts_tokens_and_rrsa() {
    let Scene { client, ns, emu } = Scene::new("leak2").await;
    let (secret_marker, sts_marker, oidc_marker) = ("Leak-Secret-91ab", "Leak-Sts-Token-4c2d", "Leak-Oidc-Token-e5f6");
    let s: Secret = serde_json::from_value(json!({"metadata": {"name": "sts"},
        "stringData": {"accessKeyId": alicloud_ops_operator::emulator::DEFAULT_ACCESS_KEY_ID,
                       "accessKeySecret": secret_marker, "securityToken": sts_marker}}))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
    let token_file = cluster().dir.join(format!("oidc-token-{ns}"));
    std::fs::write(&token_file, format!("eyJhbGciOiJSUzI1NiJ9.{oidc_marker}.sig")).unwrap();
    // A port that stays ours (a freed one could be taken by another test's server) and
    // hangs up on every connection: each call fails in transport.
    let hang_up = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", hang_up.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in hang_up.incoming() {
            drop(conn);
        }
    });
    // V2 puts the STS token in the query string; swas-open points at that port, so its
    // calls fail in transport, where an error would name the whole URL.
    let op = Operator::start_full(
        &ns,
        &emu.url(),
        &format!("lease-{ns}"),
        &["--signature-version", "v2", "--endpoint-swas-open", &closed],
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", ""),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ""),
            ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1234567890:role/ops-operator"),
            (
                "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
                "acs:ram::1234567890:oidc-provider/ack-rrsa",
            ),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", token_file.to_str().unwrap()),
        ],
    );
    let image = |name: &str, creds: Option<&str>| {
        let mut spec = json!({"regionId": "cn-hangzhou", "imageId": "m-hz0001"});
        if let Some(c) = creds {
            spec["credentialsRef"] = json!({"name": c});
        }
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": name}, "spec": spec})
    };
    create::<ImageShare>(&client, &ns, image("sts-unreachable", Some("sts"))).await;
    create::<ImageShare>(&client, &ns, image("rrsa-unreachable", None)).await;
    create::<FotaTaskPolicy>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "FotaTaskPolicy", "metadata": {"name": "rrsa"},
               "spec": {"regionId": "cn-hangzhou", "autoPush": true}}),
    )
    .await;
    create::<DesktopMaintenanceWindow>(
        &client,
        &ns,
        dmw("sts-refused", &["ecd-hz10071"], chrono::Duration::hours(1), Some("sts")),
    )
    .await;
    wait_reason::<FotaTaskPolicy>(&client, &ns, "rrsa", "InSync").await;
    wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "sts-refused", "CredentialsInvalid").await;
    // Each failing reconcile spends the client's whole retry budget (up to 30 s) first; on a
    // loaded machine two of them can take longer than the usual wait.
    let unavailable = |name: &'static str| {
        let client = client.clone();
        let ns = ns.clone();
        async move {
            eventually(
                &format!("{name} CloudUnavailable"),
                Duration::from_secs(180),
                || async {
                    ready::<ImageShare>(&client, &ns, name)
                        .await
                        .filter(|(_, r, _)| r == "CloudUnavailable")
                        .map(|(_, _, s)| s)
                },
            )
            .await
        }
    };
    unavailable("sts-unreachable").await;
    let status = unavailable("rrsa-unreachable").await;
    assert!(status.to_string().contains("ListCustomImages"), "{status}");
    let mut seen = vec![
        op.logs(),
        listed_json(Api::<Event>::namespaced(client.clone(), &ns)).await,
    ];
    for kind in registry::names() {
        seen.push(listed_json(ours(&client, &ns, kind.kind)).await);
    }
    let all = seen.join("\n");
    assert!(all.contains("Warning"), "the failures were reported");
    for marker in [secret_marker, sts_marker, oidc_marker] {
        assert!(!all.contains(marker), "{marker} leaked");
    }
    // The STS tokens the emulator issued to the RRSA exchange never appear either.
    assert!(
        !all.contains("SecurityToken=CAIS") && !all.contains("CAIS"),
        "an issued STS token leaked"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_listed_namespaces_may_use_the_operators_own_credentials() {
    let Scene { client, ns, emu } = Scene::new("tenant").await;
    secret(&client, &ns, "own", KEY_SECRET).await;
    let _op = Operator::start_with(
        &ns,
        &emu.url(),
        &format!("lease-{ns}"),
        &["--default-credentials-namespaces", "platform-team,ops"],
    );
    let share = |name: &str, creds: Option<&str>| {
        let mut spec = json!({"regionId": "cn-hangzhou", "imageId": "m-hz0001"});
        if let Some(c) = creds {
            spec["credentialsRef"] = json!({"name": c});
        }
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": name}, "spec": spec})
    };
    create::<ImageShare>(&client, &ns, share("borrowed", None)).await;
    create::<ImageShare>(&client, &ns, share("own", Some("own"))).await;
    let status = wait_reason::<ImageShare>(&client, &ns, "borrowed", "CredentialsInvalid").await;
    let message = status.to_string();
    assert!(
        message.contains("--default-credentials-namespaces") && message.contains(&ns),
        "{message}"
    );
    wait_reason::<ImageShare>(&client, &ns, "own", "InSync").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_credentials_secret_re_reconciles_at_once() {
    let Scene { client, ns, emu } = Scene::new("rotate").await;
    secret(&client, &ns, "cloud", "not-the-secret").await;
    let _op = operator(&ns, &emu);
    // A resync of an hour: only the Secret watch can bring the resource back soon.
    create::<ImageShare>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": "s"},
               "spec": {"regionId": "cn-hangzhou", "imageId": "m-hz0001", "resyncInterval": "1h",
                        "credentialsRef": {"name": "cloud"}}}),
    )
    .await;
    wait_reason::<ImageShare>(&client, &ns, "s", "CredentialsInvalid").await;
    Api::<Secret>::namespaced(client.clone(), &ns)
        .patch(
            "cloud",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"stringData": {"accessKeySecret": alicloud_ops_operator::emulator::DEFAULT_ACCESS_KEY_SECRET}}),
            ),
        )
        .await
        .unwrap();
    eventually("InSync soon after the rotation", Duration::from_secs(20), || async {
        ready::<ImageShare>(&client, &ns, "s")
            .await
            .filter(|(_, r, _)| r == "InSync")
    })
    .await;
}
