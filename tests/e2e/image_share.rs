//! ImageShare: drift, unshare on delete, skip-cleanup, ObserveOnly and suspend, writes under the cloud's quota, Events per edit.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn image_share_story_drift_unshare_on_delete_and_skip_cleanup() {
    let Scene { client, ns, emu } = Scene::new("img").await;
    let _op = operator(&ns, &emu);
    let shared = |emu: &alicloud_ops_operator::emulator::Emulator, id: &str| {
        emu.world().state().swas["cn-hangzhou"]
            .custom_images
            .iter()
            .find(|i| i.image_id == id)
            .unwrap()
            .in_share
    };
    create::<ImageShare>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": "s"},
               "spec": {"regionId": "cn-hangzhou", "imageId": "m-hz0004", "deletionPolicy": "UnShare"}}),
    )
    .await;
    let status = wait_reason::<ImageShare>(&client, &ns, "s", "InSync").await;
    assert_eq!(status["inShare"], true);
    assert_eq!(status["imageName"], "hz-app-image-4");
    assert!(shared(&emu, "m-hz0004"));
    emu.world()
        .update_state(|s| s.swas.get_mut("cn-hangzhou").unwrap().custom_images[3].in_share = false);
    eventually("drift repaired", WAIT, || async {
        shared(&emu, "m-hz0004").then_some(())
    })
    .await;

    // An unknown image is NotFound, a terminal reason.
    create::<ImageShare>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": "ghost"},
               "spec": {"regionId": "cn-hangzhou", "imageId": "m-nothere"}}),
    )
    .await;
    wait_reason::<ImageShare>(&client, &ns, "ghost", "NotFound").await;

    let api = Api::<ImageShare>::namespaced(client.clone(), &ns);
    api.delete("s", &DeleteParams::default()).await.unwrap();
    eventually("deleted", WAIT, || async {
        api.get_opt("s").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(!shared(&emu, "m-hz0004"), "UnShare on delete");

    // Deletion never hangs: with the cloud failing, skip-cleanup releases the resource.
    create::<ImageShare>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": "stuck"},
               "spec": {"regionId": "cn-hangzhou", "imageId": "m-hz0005", "deletionPolicy": "UnShare"}}),
    )
    .await;
    wait_reason::<ImageShare>(&client, &ns, "stuck", "InSync").await;
    emu.world()
        .add_fault(fault(
            json!({"action": "ModifyImageShareStatus", "code": "InternalError"}),
        ))
        .unwrap();
    api.delete("stuck", &DeleteParams::default()).await.unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    eventually("a Warning event about the failed cleanup", WAIT, || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("stuck")
            })
            .then_some(())
    })
    .await;
    assert!(
        api.get_opt("stuck").await.unwrap().is_some(),
        "still waiting for cleanup"
    );
    api.patch(
        "stuck",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"ops.alicloud.dev/skip-cleanup": "true"}}})),
    )
    .await
    .unwrap();
    eventually("released", WAIT, || async {
        api.get_opt("stuck").await.unwrap().is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn image_share_edit_observe_only_and_suspend() {
    let Scene { client, ns, emu } = Scene::new("img2").await;
    let _op = operator(&ns, &emu);
    let shared = |emu: &alicloud_ops_operator::emulator::Emulator| {
        emu.world().state().swas["cn-shanghai"].custom_images[0].in_share
    };
    create::<ImageShare>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": "s"},
               "spec": {"regionId": "cn-shanghai", "imageId": "m-sh0001"}}),
    )
    .await;
    wait_reason::<ImageShare>(&client, &ns, "s", "InSync").await;
    patch_spec::<ImageShare>(&client, &ns, "s", json!({"shared": false})).await;
    eventually("unshared", WAIT, || async { (!shared(&emu)).then_some(()) }).await;
    let status = wait_reason::<ImageShare>(&client, &ns, "s", "InSync").await;
    assert_eq!(status["inShare"], false);
    patch_spec::<ImageShare>(
        &client,
        &ns,
        "s",
        json!({"shared": true, "managementPolicy": "ObserveOnly"}),
    )
    .await;
    let status = wait_reason::<ImageShare>(&client, &ns, "s", "DriftDetected").await;
    assert_eq!(status["inShare"], false);
    assert!(!shared(&emu), "ObserveOnly never writes");
    patch_spec::<ImageShare>(
        &client,
        &ns,
        "s",
        json!({"suspend": true, "managementPolicy": "Manage"}),
    )
    .await;
    wait_reason::<ImageShare>(&client, &ns, "s", "Suspended").await;
    let before = emu.world().counters().total;
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(emu.world().counters().total, before, "suspended: no cloud call");
    assert!(!shared(&emu));
    patch_spec::<ImageShare>(&client, &ns, "s", json!({"suspend": false})).await;
    eventually("shared after resume", WAIT, || async { shared(&emu).then_some(()) }).await;
}

/// A write that waits for the cloud's quota waits outside the workers: with one worker and
/// one account's ModifyImageShareStatus quota (10 a minute) used up, another account's
/// resource is shared before the first account's 11th call, the waiting ones say when they
/// will be written, and the cloud never has to answer `Throttling`.
#[tokio::test(flavor = "multi_thread")]
async fn quota_bound_writes_hold_no_worker_and_accounts_progress_independently() {
    use alicloud_ops_operator::emulator::{CloudState, DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET};
    const B_ID: &str = "LTAI5tTeamBAccessKey01";
    const B_SECRET: &str = "team-b-secret-value-0000000000";
    let client = admin().await;
    let ns = namespace(&client, "quota").await;
    let mut state = CloudState::default_dataset();
    let images = &mut state.swas.get_mut("cn-hangzhou").unwrap().custom_images;
    let template = images[0].clone();
    for i in 0..14 {
        images.push(alicloud_ops_operator::cloud::ops::swas::CustomImage {
            image_id: format!("m-quota{i:02}"),
            name: format!("quota-{i}"),
            in_share: false,
            ..template.clone()
        });
    }
    let emu = emulator_with_keys(state, &[ExtraKey(B_ID, B_SECRET, Some("2000000000000002"))]).await;
    under_project_policy(&emu, "operator.json");
    secret(&client, &ns, "team-a", DEFAULT_ACCESS_KEY_SECRET).await;
    let b: Secret = serde_json::from_value(json!({
        "metadata": {"name": "team-b", "labels": {"ops.alicloud.dev/credentials": "true"}},
        "stringData": {"accessKeyId": B_ID, "accessKeySecret": B_SECRET}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &b)
        .await
        .unwrap();
    let _op = operator_with(&ns, &emu, &["--concurrency", "1"]);
    let share = |name: String, image: String, creds: &str| {
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": name},
               "spec": {"regionId": "cn-hangzhou", "imageId": image, "shared": true, "resyncInterval": "10m",
                        "credentialsRef": {"name": creds}}})
    };
    for i in 0..13 {
        create::<ImageShare>(
            &client,
            &ns,
            share(format!("a-{i:02}"), format!("m-quota{i:02}"), "team-a"),
        )
        .await;
    }
    let shares_by = |key: &str| {
        emu.world()
            .request_log()
            .iter()
            .filter(|r| r.action == "ModifyImageShareStatus" && r.access_key_id == key)
            .count()
    };
    eventually("account A's quota used up", WAIT, || async {
        (shares_by(DEFAULT_ACCESS_KEY_ID) == 10).then_some(())
    })
    .await;
    create::<ImageShare>(&client, &ns, share("b".into(), "m-quota13".into(), "team-b")).await;
    wait_reason::<ImageShare>(&client, &ns, "b", "InSync").await;
    assert_eq!(
        shares_by(DEFAULT_ACCESS_KEY_ID),
        10,
        "account B's share waited behind account A's quota"
    );
    assert_eq!(shares_by(B_ID), 1);
    // The rest of A's resources wait their turn, and say when it comes.
    let mut waiting = Vec::new();
    for i in 0..13 {
        if let Some((_, reason, status)) = ready::<ImageShare>(&client, &ns, &format!("a-{i:02}")).await
            && reason == "Throttled"
        {
            waiting.push(status);
        }
    }
    assert_eq!(waiting.len(), 3, "{waiting:#?}");
    let message = waiting[0]["conditions"].to_string();
    assert!(
        message.contains("10 calls per 60 s") && message.contains("sent at about"),
        "{message}"
    );
    // A's waiting resources are written at their turn, within the quota.
    for i in 0..13 {
        eventually(&format!("a-{i:02} shared"), Duration::from_secs(150), || async {
            ready::<ImageShare>(&client, &ns, &format!("a-{i:02}"))
                .await
                .filter(|(_, r, _)| r == "InSync")
        })
        .await;
    }
    let throttled: Vec<_> = emu
        .world()
        .request_log()
        .into_iter()
        .filter(|r| r.code.starts_with("Throttling"))
        .collect();
    assert!(throttled.is_empty(), "the cloud had to throttle: {throttled:?}");
    assert_eq!(shares_by(DEFAULT_ACCESS_KEY_ID), 13);
}

/// Each kind of write has its own Event reason. kube-runtime's Recorder merges Events of
/// one reason and action into a series and keeps the first note, so an UnShare after a Share
/// must not be counted into the Share's series under the Share's note.
#[tokio::test(flavor = "multi_thread")]
async fn a_reversing_edit_gets_an_event_of_its_own() {
    let Scene { client, ns, emu } = Scene::new("events").await;
    let _op = operator(&ns, &emu);
    create::<ImageShare>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": "s"},
               "spec": {"regionId": "cn-hangzhou", "imageId": "m-hz0003", "shared": true}}),
    )
    .await;
    wait_reason::<ImageShare>(&client, &ns, "s", "InSync").await;
    patch_spec::<ImageShare>(&client, &ns, "s", json!({"shared": false})).await;
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let of = |reason: &'static str| {
        let events = events.clone();
        async move {
            eventually(&format!("a {reason} Event on s"), WAIT, || async {
                let list = events.list(&Default::default()).await.ok()?;
                list.items.into_iter().find(|e| {
                    e.reason.as_deref() == Some(reason)
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("s")
                })
            })
            .await
        }
    };
    let shared = of("Shared").await;
    let unshared = of("Unshared").await;
    assert!(
        shared.note.as_deref().unwrap_or("").contains("Operation=Share "),
        "{shared:?}"
    );
    assert!(
        unshared.note.as_deref().unwrap_or("").contains("Operation=UnShare "),
        "{unshared:?}"
    );
    assert_eq!(unshared.series, None, "a write of its own, not a repeat of the share");
}
