//! FotaTaskPolicy: auto-push set and cleared, drift, ObserveOnly, suspend, deletion, the global switch, and conflicts decided by cloud account.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn fota_policy_story_create_edit_drift_observe_suspend_delete() {
    let Scene { client, ns, emu } = Scene::new("fota").await;
    secret(&client, &ns, "cloud", KEY_SECRET).await;
    let _op = operator(&ns, &emu);
    create::<FotaTaskPolicy>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "FotaTaskPolicy", "metadata": {"name": "p"},
               "spec": {"regionId": "cn-hangzhou", "autoPush": true, "credentialsRef": {"name": "cloud"}}}),
    )
    .await;
    let status = wait_reason::<FotaTaskPolicy>(&client, &ns, "p", "InSync").await;
    assert_eq!(status["matchedTasks"], 3);
    // In sync, the steady state costs one list per 3 s resync and no writes.
    let (lists, writes) = (
        emu.world().counters().count("DescribeFotaTasks"),
        emu.world().counters().count("UpdateFotaTask"),
    );
    tokio::time::sleep(Duration::from_secs(7)).await;
    let c = emu.world().counters();
    assert!(
        c.count("DescribeFotaTasks") - lists <= 4,
        "{} lists in 7 s",
        c.count("DescribeFotaTasks") - lists
    );
    assert_eq!(c.count("UpdateFotaTask"), writes, "no writes without drift");
    let tasks = |emu: &alicloud_ops_operator::emulator::Emulator| -> Vec<String> {
        emu.world().state().ecd["cn-hangzhou"]
            .fota_tasks
            .iter()
            .map(|t| t.status.clone())
            .collect()
    };
    assert_eq!(tasks(&emu), vec!["Running"; 3]);

    // Edit: the change is applied.
    patch_spec::<FotaTaskPolicy>(&client, &ns, "p", json!({"autoPush": false})).await;
    eventually("tasks Pending", WAIT, || async {
        (tasks(&emu) == vec!["Pending"; 3]).then_some(())
    })
    .await;
    wait_reason::<FotaTaskPolicy>(&client, &ns, "p", "InSync").await;

    // Drift behind the operator's back is repaired at resync.
    emu.world()
        .update_state(|s| s.ecd.get_mut("cn-hangzhou").unwrap().fota_tasks[0].status = "Running".into());
    eventually("drift repaired", WAIT, || async {
        (tasks(&emu) == vec!["Pending"; 3]).then_some(())
    })
    .await;

    // ObserveOnly: drift is only reported.
    patch_spec::<FotaTaskPolicy>(&client, &ns, "p", json!({"managementPolicy": "ObserveOnly"})).await;
    wait_reason::<FotaTaskPolicy>(&client, &ns, "p", "InSync").await;
    emu.world()
        .update_state(|s| s.ecd.get_mut("cn-hangzhou").unwrap().fota_tasks[1].status = "Running".into());
    wait_reason::<FotaTaskPolicy>(&client, &ns, "p", "DriftDetected").await;
    assert_eq!(tasks(&emu)[1], "Running", "ObserveOnly never writes");

    // Suspend: nothing is read or written.
    patch_spec::<FotaTaskPolicy>(&client, &ns, "p", json!({"suspend": true})).await;
    wait_reason::<FotaTaskPolicy>(&client, &ns, "p", "Suspended").await;
    let before = emu.world().counters().count("DescribeFotaTasks");
    tokio::time::sleep(Duration::from_secs(7)).await; // two resync intervals
    assert_eq!(emu.world().counters().count("DescribeFotaTasks"), before);

    Api::<FotaTaskPolicy>::namespaced(client.clone(), &ns)
        .delete("p", &DeleteParams::default())
        .await
        .unwrap();
    eventually("deleted", WAIT, || async {
        Api::<FotaTaskPolicy>::namespaced(client.clone(), &ns)
            .get_opt("p")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fota_policy_reports_the_global_auto_update_switch() {
    let Scene { client, ns, emu } = Scene::new("fotag").await;
    emu.world()
        .update_state(|s| s.ecd.get_mut("cn-shanghai").unwrap().global_auto_update = true);
    let _op = operator(&ns, &emu);
    create::<FotaTaskPolicy>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "FotaTaskPolicy", "metadata": {"name": "hold"},
               "spec": {"regionId": "cn-shanghai", "autoPush": false, "taskUids": ["aot-sh0001"]}}),
    )
    .await;
    let status = wait_reason::<FotaTaskPolicy>(&client, &ns, "hold", "GlobalAutoUpdateEnabled").await;
    let message = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()["message"]
        .clone();
    assert!(message.as_str().unwrap().contains("aot-sh0001"), "{message}");
    // Not retried hot: at most one write per resync.
    let before = emu.world().counters().count("UpdateFotaTask");
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(emu.world().counters().count("UpdateFotaTask") - before <= 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn fota_conflicts_are_decided_by_cloud_account_not_by_secret_name() {
    let Scene { client, ns, emu } = Scene::new("fotaacct").await;
    let key = KEY_SECRET;
    secret(&client, &ns, "team-a", key).await;
    secret(&client, &ns, "team-b", key).await;
    let _op = operator(&ns, &emu);
    create::<FotaTaskPolicy>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "FotaTaskPolicy", "metadata": {"name": "a-older"},
               "spec": {"regionId": "cn-hangzhou", "autoPush": true, "credentialsRef": {"name": "team-a"}}}),
    )
    .await;
    wait_reason::<FotaTaskPolicy>(&client, &ns, "a-older", "InSync").await;
    create::<FotaTaskPolicy>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "FotaTaskPolicy", "metadata": {"name": "b-newer"},
               "spec": {"regionId": "cn-hangzhou", "autoPush": false, "credentialsRef": {"name": "team-b"}}}),
    )
    .await;
    let status = wait_reason::<FotaTaskPolicy>(&client, &ns, "b-newer", "Conflict").await;
    assert!(status["conflicts"].to_string().contains("a-older"), "{status}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let running = emu.world().state().ecd["cn-hangzhou"]
        .fota_tasks
        .iter()
        .all(|t| t.status == "Running");
    assert!(running, "the older policy's choice stands");
    let pending_writes = emu
        .world()
        .request_log()
        .iter()
        .filter(|r| r.action == "UpdateFotaTask" && r.params.get("UserStatus").map(String::as_str) == Some("Pending"))
        .count();
    assert_eq!(pending_writes, 0, "the newer policy never wrote");
}
