//! End to end: the real kube-apiserver (project harness), the emulator, and the operator
//! binary running with exactly the RBAC the Helm chart installs. One apiserver for this file; each test
//! has its own namespace, emulator and operator.

mod support;

use std::time::Duration;

use alicloud_ops_operator::api::{DesktopMaintenanceWindow, FotaTaskPolicy, ImageShare, OtaSchedule};
use alicloud_ops_operator::emulator::faults::Fault;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::cluster::*;
use support::{ExtraKey, emulator, emulator_with_keys, with_emulator_key};

const WAIT: Duration = Duration::from_secs(60);

async fn create<K>(client: &Client, ns: &str, body: Value) -> K
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(body).unwrap();
    Api::<K>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap()
}

async fn patch_spec<K>(client: &Client, ns: &str, name: &str, spec: Value)
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(json!({"spec": spec})))
        .await
        .unwrap();
}

/// The Ready condition's (status, reason) once the operator has seen the current generation.
async fn ready<K>(client: &Client, ns: &str, name: &str) -> Option<(String, String, Value)>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let obj = Api::<K>::namespaced(client.clone(), ns).get_opt(name).await.ok()??;
    let v = serde_json::to_value(&obj).unwrap();
    let generation = v["metadata"]["generation"].as_i64()?;
    let status = v.get("status")?.clone();
    if status["observedGeneration"].as_i64() != Some(generation) {
        return None;
    }
    let c = status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?
        .clone();
    Some((
        c["status"].as_str()?.to_string(),
        c["reason"].as_str()?.to_string(),
        status,
    ))
}

async fn wait_reason<K>(client: &Client, ns: &str, name: &str, want: &str) -> Value
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    eventually(&format!("{name} Ready reason {want}"), WAIT, || async {
        ready::<K>(client, ns, name)
            .await
            .filter(|(_, r, _)| r == want)
            .map(|(_, _, s)| s)
    })
    .await
}

async fn secret(client: &Client, ns: &str, name: &str, key_secret: &str) {
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"ops.alicloud.dev/credentials": "true"}},
        "stringData": {"accessKeyId": alicloud_ops_operator::emulator::DEFAULT_ACCESS_KEY_ID, "accessKeySecret": key_secret}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
}

/// Every object of a kind in `ns`, as JSON text (for grepping for leaks).
async fn listed_json<K>(client: &Client, ns: &str) -> String
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let items = Api::<K>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    serde_json::to_string(&items).unwrap()
}

/// `Kind/name reason: message` of every object of a kind in `ns` that is not Ready (for
/// the message of a timeout).
async fn not_ready_of<K>(client: &Client, ns: &str) -> Vec<String>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let Ok(list) = Api::<K>::namespaced(client.clone(), ns).list(&Default::default()).await else {
        return vec![format!("{}: cannot list", K::kind(&()))];
    };
    list.items
        .iter()
        .filter_map(|obj| {
            let v = serde_json::to_value(obj).unwrap();
            let ready = v["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned());
            match ready {
                Some(c) if c["status"] == "True" => None,
                Some(c) => Some(format!(
                    "{}/{} {}: {}",
                    K::kind(&()),
                    obj.name_any(),
                    c["reason"].as_str().unwrap_or(""),
                    c["message"].as_str().unwrap_or("")
                )),
                None => Some(format!("{}/{}: no Ready condition", K::kind(&()), obj.name_any())),
            }
        })
        .collect()
}

/// Runs `$body` with `$K` standing for the kind named by `$kind`.
macro_rules! with_kind {
    ($kind:expr, $K:ident => $body:expr) => {
        match $kind {
            "FotaTaskPolicy" => {
                type $K = FotaTaskPolicy;
                $body
            }
            "OtaSchedule" => {
                type $K = OtaSchedule;
                $body
            }
            "DesktopMaintenanceWindow" => {
                type $K = DesktopMaintenanceWindow;
                $body
            }
            "ImageShare" => {
                type $K = ImageShare;
                $body
            }
            other => panic!("not a kind of ours: {other}"),
        }
    };
}

fn fault(v: Value) -> Fault {
    serde_json::from_value(v).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn fota_policy_story_create_edit_drift_observe_suspend_delete() {
    let client = admin().await;
    let ns = namespace(&client, "fota").await;
    let emu = emulator().await;
    secret(
        &client,
        &ns,
        "cloud",
        alicloud_ops_operator::emulator::DEFAULT_ACCESS_KEY_SECRET,
    )
    .await;
    let _op = Operator::start(&ns, &emu.url(), &format!("lease-{ns}"));
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
    let client = admin().await;
    let ns = namespace(&client, "fotag").await;
    let emu = emulator().await;
    emu.world()
        .update_state(|s| s.ecd.get_mut("cn-shanghai").unwrap().global_auto_update = true);
    let _op = Operator::start(&ns, &emu.url(), &format!("lease-{ns}"));
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
async fn maintenance_window_story_enter_exit_foreign_and_delete_during_window() {
    let client = admin().await;
    let ns = namespace(&client, "dmw").await;
    let emu = emulator().await;
    let _op = Operator::start(&ns, &emu.url(), &format!("lease-{ns}"));
    let now = chrono::Utc::now();
    let in_maint = |emu: &alicloud_ops_operator::emulator::Emulator, id: &str| {
        emu.world().state().ecd["cn-hangzhou"]
            .desktops
            .iter()
            .find(|d| d.desktop_id == id)
            .unwrap()
            .in_maintenance()
    };
    // ecd-hz10001 is in maintenance by someone else.
    create::<DesktopMaintenanceWindow>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "DesktopMaintenanceWindow", "metadata": {"name": "short"},
               "spec": {"regionId": "cn-hangzhou", "desktopIds": ["ecd-hz10001", "ecd-hz10021", "ecd-hz10022"],
                        "window": {"start": (now - chrono::Duration::minutes(1)).to_rfc3339(), "end": (now + chrono::Duration::seconds(40)).to_rfc3339()}}}),
    )
    .await;
    let status = wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "short", "Active").await;
    assert_eq!(status["desktopsInMaintenance"], json!(["ecd-hz10021", "ecd-hz10022"]));
    assert_eq!(status["foreignMaintenance"], json!(["ecd-hz10001"]));
    assert!(in_maint(&emu, "ecd-hz10021") && in_maint(&emu, "ecd-hz10022"));
    // The window ends: the operator requeued itself for the boundary.
    wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "short", "Completed").await;
    assert!(!in_maint(&emu, "ecd-hz10021") && !in_maint(&emu, "ecd-hz10022"));
    assert!(in_maint(&emu, "ecd-hz10001"), "the foreign one stays");

    // Deleting during a window exits maintenance first, through the finalizer.
    create::<DesktopMaintenanceWindow>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "DesktopMaintenanceWindow", "metadata": {"name": "long"},
               "spec": {"regionId": "cn-hangzhou", "selector": {"officeSiteId": "cn-hangzhou+dir-0000000003"},
                        "window": {"start": (now - chrono::Duration::minutes(1)).to_rfc3339(), "end": (now + chrono::Duration::hours(2)).to_rfc3339()}}}),
    )
    .await;
    let status = wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "long", "Active").await;
    assert_eq!(status["desktopsInMaintenanceCount"], 100);
    // Drift inside the window: someone takes a computer out; the resync puts it back.
    emu.world().update_state(|s| {
        s.ecd
            .get_mut("cn-hangzhou")
            .unwrap()
            .desktops
            .iter_mut()
            .find(|d| d.desktop_id == "ecd-hz30050")
            .unwrap()
            .management_flags = vec!["NoFlag".into()]
    });
    eventually("ecd-hz30050 back in maintenance", WAIT, || async {
        in_maint(&emu, "ecd-hz30050").then_some(())
    })
    .await;
    let api = Api::<DesktopMaintenanceWindow>::namespaced(client.clone(), &ns);
    assert!(
        api.get("long")
            .await
            .unwrap()
            .finalizers()
            .contains(&"ops.alicloud.dev/cleanup".to_string())
    );
    api.delete("long", &DeleteParams::default()).await.unwrap();
    eventually("deleted", WAIT, || async {
        api.get_opt("long").await.unwrap().is_none().then_some(())
    })
    .await;
    let left = emu.world().state().ecd["cn-hangzhou"]
        .desktops
        .iter()
        .filter(|d| d.office_site_id.ends_with("0000000003") && d.in_maintenance())
        .count();
    assert_eq!(left, 0, "no desktop left in maintenance");
}

#[tokio::test(flavor = "multi_thread")]
async fn image_share_story_drift_unshare_on_delete_and_skip_cleanup() {
    let client = admin().await;
    let ns = namespace(&client, "img").await;
    let emu = emulator().await;
    let _op = Operator::start(&ns, &emu.url(), &format!("lease-{ns}"));
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
    let client = admin().await;
    let ns = namespace(&client, "img2").await;
    let emu = emulator().await;
    let _op = Operator::start(&ns, &emu.url(), &format!("lease-{ns}"));
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

#[tokio::test(flavor = "multi_thread")]
async fn ota_schedule_restart_mid_approval_never_approves_twice() {
    let client = admin().await;
    let ns = namespace(&client, "ota").await;
    let emu = emulator().await;
    // The approval hangs long enough to kill the operator while it is in flight.
    emu.world()
        .add_fault(fault(json!({"action": "ApproveOtaTask", "latencyMs": 4000})))
        .unwrap();
    let mut op = Operator::start(&ns, &emu.url(), &format!("lease-{ns}"));
    let start = chrono::Utc::now() + chrono::Duration::hours(1);
    create::<OtaSchedule>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "OtaSchedule", "metadata": {"name": "o"},
               "spec": {"bizRegionId": "cn-hangzhou", "appInstanceGroupId": "aig-hz0001", "startTime": start.to_rfc3339()}}),
    )
    .await;
    let api = Api::<OtaSchedule>::namespaced(client.clone(), &ns);
    eventually("the approval recorded as in flight", WAIT, || async {
        let o = api.get("o").await.ok()?;
        o.status.as_ref()?.in_flight.as_ref().map(|_| ())
    })
    .await;
    op.crash();
    emu.world().clear_faults();
    let _op2 = Operator::start(&ns, &emu.url(), &format!("lease2-{ns}"));
    let status = wait_reason::<OtaSchedule>(&client, &ns, "o", "Approved").await;
    assert_eq!(status["approved"]["version"], "1.5.0-R-20261115.100000");
    tokio::time::sleep(Duration::from_secs(7)).await; // more resyncs: still one approval
    let counters = emu.world().counters();
    assert_eq!(counters.count_code("ApproveOtaTask", "success"), 1, "{counters:?}");
    let group = emu.world().state().appstream.app_instance_groups[0].clone();
    assert!(group.scheduled_upgrade.is_some());

    // The upgrade runs at its start time; then the group is up to date.
    emu.world().clock.advance(chrono::Duration::hours(2)).unwrap();
    api.patch(
        "o",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"ops.alicloud.dev/reconcile-requested-at": "now"}}})),
    )
    .await
    .unwrap();
    let status = wait_reason::<OtaSchedule>(&client, &ns, "o", "UpToDate").await;
    assert_eq!(status["currentVersion"], "1.5.0-R-20261115.100000");
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_in_the_middle_of_a_window_leaves_no_desktop_in_maintenance() {
    let client = admin().await;
    let ns = namespace(&client, "dmwr").await;
    let emu = emulator().await;
    let mut op = Operator::start(&ns, &emu.url(), &format!("lease-{ns}"));
    let now = chrono::Utc::now();
    create::<DesktopMaintenanceWindow>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "DesktopMaintenanceWindow", "metadata": {"name": "w"},
               "spec": {"regionId": "cn-shanghai", "desktopIds": ["ecd-sh10002", "ecd-sh10003"],
                        "window": {"start": (now - chrono::Duration::minutes(1)).to_rfc3339(), "end": (now + chrono::Duration::seconds(40)).to_rfc3339()}}}),
    )
    .await;
    wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "w", "Active").await;
    op.crash();
    // Down across the window's end.
    tokio::time::sleep(
        (now + chrono::Duration::seconds(42) - chrono::Utc::now())
            .to_std()
            .unwrap_or_default(),
    )
    .await;
    let _op2 = Operator::start(&ns, &emu.url(), &format!("lease-{ns}"));
    wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "w", "Completed").await;
    let left: Vec<String> = emu.world().state().ecd["cn-shanghai"]
        .desktops
        .iter()
        .filter(|d| d.in_maintenance() && d.desktop_id != "ecd-sh10001")
        .map(|d| d.desktop_id.clone())
        .collect();
    assert!(left.is_empty(), "left in maintenance: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_exactly_one_reconciles() {
    let client = admin().await;
    let ns = namespace(&client, "ha").await;
    let emu = emulator().await;
    let lease = format!("lease-{ns}");
    let mut a = Operator::start(&ns, &emu.url(), &lease);
    let mut b = Operator::start(&ns, &emu.url(), &lease);
    create::<ImageShare>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": "one"},
               "spec": {"regionId": "cn-shanghai", "imageId": "m-sh0002"}}),
    )
    .await;
    wait_reason::<ImageShare>(&client, &ns, "one", "InSync").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (ma, mb) = (a.scrape().await, b.scrape().await);
    let (ra, rb) = (
        metric_sum(&ma, "alicloud_ops_reconciles_total", "ImageShare"),
        metric_sum(&mb, "alicloud_ops_reconciles_total", "ImageShare"),
    );
    assert!(
        (ra > 0.0) != (rb > 0.0),
        "exactly one replica reconciles: a={ra} b={rb}"
    );
    let (leader, standby) = if ra > 0.0 { (&mut a, &mut b) } else { (&mut b, &mut a) };
    // The leader shuts down gracefully and releases the Lease; the standby takes over.
    assert_eq!(leader.stop(), Some(0), "{}", leader.logs());
    create::<ImageShare>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": "two"},
               "spec": {"regionId": "cn-shanghai", "imageId": "m-sh0001", "shared": false}}),
    )
    .await;
    wait_reason::<ImageShare>(&client, &ns, "two", "InSync").await;
    assert!(metric_sum(&standby.scrape().await, "alicloud_ops_reconciles_total", "ImageShare") > 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_values_never_appear_in_events_status_or_logs() {
    let client = admin().await;
    let ns = namespace(&client, "leak").await;
    let emu = emulator().await;
    let marker = "Very-Secret-Value-7f3a9c";
    secret(&client, &ns, "wrong", marker).await;
    let op = Operator::start(&ns, &emu.url(), &format!("lease-{ns}"));
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
async fn invalid_resources_are_rejected_naming_the_field() {
    let client = admin().await;
    let ns = namespace(&client, "bad").await;
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"]}),
            "set exactly one of window or recurring",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "window": {"start": "2026-12-01T00:00:00Z", "end": "2026-12-01T01:00:00Z"}}),
            "set exactly one of desktopIds or selector",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "window": {"start": "2026-12-01T02:00:00Z", "end": "2026-12-01T01:00:00Z"}}),
            "window.end must be after window.start",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["desk-1"], "window": {"start": "2026-12-01T00:00:00Z", "end": "2026-12-01T01:00:00Z"}}),
            "spec.desktopIds[0]",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a", "ecd-a"], "window": {"start": "2026-12-01T00:00:00Z", "end": "2026-12-01T01:00:00Z"}}),
            "spec.desktopIds[1]",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "recurring": {"cron": "every day", "duration": "2h"}}),
            "spec.recurring.cron",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "window": {"start": "tomorrow", "end": "2026-12-01T01:00:00Z"}}),
            "spec.window.start",
        ),
        (
            "ImageShare",
            json!({"regionId": "cn-hangzhou", "imageId": "m-1", "resyncInterval": "9999999999999999999s"}),
            "spec.resyncInterval",
        ),
        (
            "ImageShare",
            json!({"regionId": "cn-hangzhou", "imageId": "m-1", "resyncInterval": "5s"}),
            "resyncInterval must be between 10s and 24h",
        ),
        (
            "ImageShare",
            json!({"regionId": "cn-hangzhou", "imageId": "m-1", "resyncInterval": "999999999999h"}),
            "spec.resyncInterval",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "recurring": {"cron": "0 1 * * *", "duration": "3000000000h"}}),
            "spec.recurring.duration",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "recurring": {"cron": "0 1 * * *", "duration": "169h"}}),
            "at most 168h",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "window": {"start": "2026-12-01T02:00:00+08:00", "end": "2026-12-20T01:00:00Z"}}),
            "a window lasts at most 7 days",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "window": {"start": "2026-12-01T03:00:00Z", "end": "2026-12-01T10:00:00+08:00"}}),
            "window.end must be after window.start",
        ),
        (
            "ImageShare",
            json!({"regionId": "Hangzhou", "imageId": "m-1"}),
            "spec.regionId",
        ),
        (
            "ImageShare",
            json!({"regionId": "cn-hangzhou", "imageId": "m-1", "deletionPolicy": "Delete"}),
            "spec.deletionPolicy",
        ),
        ("ImageShare", json!({"regionId": "cn-hangzhou"}), "spec.imageId"),
        (
            "ImageShare",
            json!({"regionId": "cn-hangzhou", "imageId": "m-1", "managementPolicy": "Sometimes"}),
            "spec.managementPolicy",
        ),
        (
            "ImageShare",
            json!({"regionId": "cn-hangzhou", "imageId": "m-1", "resyncInterval": "soon"}),
            "spec.resyncInterval",
        ),
        (
            "OtaSchedule",
            json!({"bizRegionId": "cn-hangzhou", "appInstanceGroupId": "aig-1"}),
            "set exactly one of startTime or window",
        ),
        (
            "OtaSchedule",
            json!({"bizRegionId": "cn-hangzhou", "appInstanceGroupId": "aig-1", "otaType": "Aota", "startTime": "2026-12-01T00:00:00Z"}),
            "spec.otaType",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "recurring": {"cron": "0 25 * * *", "duration": "2h"}}),
            "spec.recurring.cron: Invalid value: \"0 25 * * *\": cron 0 25 * * *: the hour (the 2nd field) must be within 0-23",
        ),
        (
            "OtaSchedule",
            json!({"bizRegionId": "cn-hangzhou", "appInstanceGroupId": "aig-1", "window": {"cron": "0 3 * 1-13 0"}}),
            "spec.window.cron: Invalid value: \"0 3 * 1-13 0\": cron 0 3 * 1-13 0: the month (the 4th field) must be within 1-12",
        ),
        (
            "OtaSchedule",
            json!({"bizRegionId": "cn-hangzhou", "appInstanceGroupId": "aig-1", "window": {"cron": "0 3 * * 0", "timeZone": "Mars/Olympus"}}),
            "spec.window.timeZone: Invalid value: \"string\": unknown time zone Mars/Olympus",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "recurring": {"cron": "0 1 * * *", "duration": "2h", "timeZone": "+08:00"}}),
            "spec.recurring.timeZone: Invalid value: \"+08:00\": timeZone must be an IANA time zone name such as Asia/Shanghai, not a UTC offset",
        ),
        ("FotaTaskPolicy", json!({"regionId": "cn-hangzhou"}), "spec.autoPush"),
        (
            "FotaTaskPolicy",
            json!({"regionId": "cn-hangzhou", "autoPush": "yes"}),
            "spec.autoPush",
        ),
        (
            "FotaTaskPolicy",
            json!({"regionId": "cn-hangzhou", "autoPush": true, "credentialsRef": {"name": "Not_A_Name"}}),
            "spec.credentialsRef.name",
        ),
    ];
    for (i, (kind, spec, want)) in cases.into_iter().enumerate() {
        let plural = match kind {
            "DesktopMaintenanceWindow" => "desktopmaintenancewindows",
            "ImageShare" => "imageshares",
            "OtaSchedule" => "otaschedules",
            _ => "fotataskpolicies",
        };
        let ar = kube::discovery::ApiResource {
            group: "ops.alicloud.dev".into(),
            version: "v1alpha1".into(),
            api_version: "ops.alicloud.dev/v1alpha1".into(),
            kind: kind.into(),
            plural: plural.into(),
        };
        let api = Api::<kube::api::DynamicObject>::namespaced_with(client.clone(), &ns, &ar);
        let obj: kube::api::DynamicObject =
            serde_json::from_value(json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": kind, "metadata": {"name": format!("bad{i}")}, "spec": spec})).unwrap();
        let err = api
            .create(&PostParams::default(), &obj)
            .await
            .expect_err(&format!("case {i} ({want}) must be rejected"));
        let text = err.to_string();
        assert!(text.contains(want), "case {i}: {text:?} does not name {want:?}");
    }
    // Cron names and croner's special characters pass the range rules.
    create::<OtaSchedule>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "OtaSchedule", "metadata": {"name": "named"},
               "spec": {"bizRegionId": "cn-hangzhou", "appInstanceGroupId": "aig-1",
                        "window": {"cron": "*/15 0-23 1,15W JAN-DEC MON-FRI", "timeZone": "Europe/Berlin"}}}),
    )
    .await;
    // Immutable fields.
    create::<ImageShare>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": "fixed"}, "spec": {"regionId": "cn-hangzhou", "imageId": "m-1"}}),
    )
    .await;
    let err = Api::<ImageShare>::namespaced(client.clone(), &ns)
        .patch(
            "fixed",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"imageId": "m-2"}})),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("imageId cannot be changed"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_applies_crds_and_examples() {
    cluster();
    let kubectl =
        std::env::var("KUBECTL").unwrap_or_else(|_| format!("{}/target/venv/bin/kubectl", env!("CARGO_MANIFEST_DIR")));
    let out = std::process::Command::new(&kubectl)
        .args(["apply", "-f", "crds/", "-f", "examples/"])
        .env("KUBECONFIG", &cluster().kubeconfig)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("{kubectl}: {e}; run `make test` (scripts/setup-python.sh installs kubectl)"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for name in [
        "hangzhou-auto-push",
        "weekly-site1",
        "app-image-to-ecs",
        "office-apps-sunday",
        "alicloud-credentials",
    ] {
        assert!(stdout.contains(name), "{name} not applied:\n{stdout}");
    }
    let out = std::process::Command::new(&kubectl)
        .args([
            "get",
            "fotataskpolicies,desktopmaintenancewindows,imageshares,otaschedules",
            "-n",
            "default",
        ])
        .env("KUBECONFIG", &cluster().kubeconfig)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("READY") && listed.contains("office-apps-sunday"),
        "{listed}"
    );
}

// ---- The promises under faults (issue 9) ----

fn dmw(name: &str, ids: &[&str], end_in: chrono::Duration, credentials: Option<&str>) -> Value {
    let now = chrono::Utc::now();
    let mut spec = json!({"regionId": "cn-hangzhou", "desktopIds": ids,
        "window": {"start": (now - chrono::Duration::minutes(1)).to_rfc3339(), "end": (now + end_in).to_rfc3339()}});
    if let Some(c) = credentials {
        spec["credentialsRef"] = json!({"name": c});
    }
    json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "DesktopMaintenanceWindow", "metadata": {"name": name}, "spec": spec})
}

fn in_maintenance(emu: &alicloud_ops_operator::emulator::Emulator, id: &str) -> bool {
    emu.world().state().ecd["cn-hangzhou"]
        .desktops
        .iter()
        .any(|d| d.desktop_id == id && d.in_maintenance())
}

async fn gone<K>(client: &Client, ns: &str, name: &str, within: Duration)
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    eventually(&format!("{name} deleted"), within, || async {
        Api::<K>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}

async fn warning_about(client: &Client, ns: &str, name: &str, words: &str) -> Event {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    eventually(&format!("a Warning Event on {name} saying {words:?}"), WAIT, || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && e.note.as_deref().is_some_and(|n| n.contains(words))
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn deletion_waits_for_the_credentials_that_entered_the_desktops() {
    let client = admin().await;
    let ns = namespace(&client, "nscred").await;
    let emu = emulator().await;
    let key = alicloud_ops_operator::emulator::DEFAULT_ACCESS_KEY_SECRET;
    secret(&client, &ns, "cloud", key).await;
    let _op = Operator::start(&ns, &emu.url(), &format!("lease-{ns}"));
    let ids = ["ecd-hz10031", "ecd-hz10032"];
    create::<DesktopMaintenanceWindow>(&client, &ns, dmw("w", &ids, chrono::Duration::hours(2), Some("cloud"))).await;
    wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "w", "Active").await;
    assert!(ids.iter().all(|id| in_maintenance(&emu, id)));

    // The order a namespace deletion can take: the Secret goes before the window.
    Api::<Secret>::namespaced(client.clone(), &ns)
        .delete("cloud", &DeleteParams::default())
        .await
        .unwrap();
    let api = Api::<DesktopMaintenanceWindow>::namespaced(client.clone(), &ns);
    api.delete("w", &DeleteParams::default()).await.unwrap();
    let warning = warning_about(&client, &ns, "w", "skip-cleanup").await;
    let note = warning.note.unwrap();
    assert!(note.contains("ecd-hz10031") && note.contains("cloud"), "{note}");
    assert!(api.get_opt("w").await.unwrap().is_some(), "the finalizer holds");
    assert!(ids.iter().all(|id| in_maintenance(&emu, id)), "nothing was undone yet");

    // The Secret comes back: the desktops are exited, then the window goes.
    secret(&client, &ns, "cloud", key).await;
    gone::<DesktopMaintenanceWindow>(&client, &ns, "w", WAIT).await;
    assert!(
        ids.iter().all(|id| !in_maintenance(&emu, id)),
        "no desktop left in maintenance"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn overlapping_windows_exit_a_shared_desktop_with_the_last_one() {
    let client = admin().await;
    let ns = namespace(&client, "overlap").await;
    let emu = emulator().await;
    let _op = Operator::start(&ns, &emu.url(), &format!("lease-{ns}"));
    let (only_first, shared) = ("ecd-hz10051", "ecd-hz10052");
    create::<DesktopMaintenanceWindow>(
        &client,
        &ns,
        dmw("first", &[only_first, shared], chrono::Duration::seconds(30), None),
    )
    .await;
    create::<DesktopMaintenanceWindow>(&client, &ns, dmw("second", &[shared], chrono::Duration::hours(2), None)).await;
    wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "first", "Active").await;
    let second = wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "second", "Active").await;
    assert_eq!(
        second["desktopsInMaintenance"],
        json!([shared]),
        "held, not foreign: {second}"
    );
    wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "first", "Completed").await;
    assert!(!in_maintenance(&emu, only_first));
    assert!(in_maintenance(&emu, shared), "the second window still holds it");
    Api::<DesktopMaintenanceWindow>::namespaced(client.clone(), &ns)
        .delete("second", &DeleteParams::default())
        .await
        .unwrap();
    gone::<DesktopMaintenanceWindow>(&client, &ns, "second", WAIT).await;
    assert!(!in_maintenance(&emu, shared), "the last window exits it");
}

#[tokio::test(flavor = "multi_thread")]
async fn fota_conflicts_are_decided_by_cloud_account_not_by_secret_name() {
    let client = admin().await;
    let ns = namespace(&client, "fotaacct").await;
    let emu = emulator().await;
    let key = alicloud_ops_operator::emulator::DEFAULT_ACCESS_KEY_SECRET;
    secret(&client, &ns, "team-a", key).await;
    secret(&client, &ns, "team-b", key).await;
    let _op = Operator::start(&ns, &emu.url(), &format!("lease-{ns}"));
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
    secret(&client, &ns, "old", DEFAULT_ACCESS_KEY_SECRET).await;
    let s: Secret = serde_json::from_value(json!({"metadata": {"name": "new"},
        "stringData": {"accessKeyId": second.0, "accessKeySecret": second.1}}))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
    let _op = Operator::start(&ns, &emu.url(), &format!("lease-{ns}"));
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
    secret(&client, &ns, "creds-7f9c2b", DEFAULT_ACCESS_KEY_SECRET).await;
    let _op = Operator::start(&ns, &emu.url(), &format!("lease-{ns}"));
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
async fn a_stale_copy_of_a_resource_never_acts() {
    use alicloud_ops_operator::cloud::snapshot::SnapshotCache;
    use alicloud_ops_operator::controller::kind::{KindEnv, Stage};
    use alicloud_ops_operator::controller::object::KubeStatus;
    use alicloud_ops_operator::controller::runner::reconcile_once;
    use alicloud_ops_operator::reconcile::PlanContext;
    let client = admin().await;
    let ns = namespace(&client, "stale").await;
    let emu = emulator().await;
    let shares = Api::<ImageShare>::namespaced(client.clone(), &ns);
    create::<ImageShare>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": "s"},
               "spec": {"regionId": "cn-hangzhou", "imageId": "m-hz0003"}}),
    )
    .await;
    let otas = Api::<OtaSchedule>::namespaced(client.clone(), &ns);
    create::<OtaSchedule>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "OtaSchedule", "metadata": {"name": "o"},
               "spec": {"bizRegionId": "cn-hangzhou", "appInstanceGroupId": "aig-hz0001",
                        "startTime": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()}}),
    )
    .await;
    // The copies a new leader could get from a cache older than its predecessor's writes.
    let (stale_share, stale_ota) = (shares.get("s").await.unwrap(), otas.get("o").await.unwrap());
    let mut op = Operator::start(&ns, &emu.url(), &format!("lease-{ns}"));
    wait_reason::<ImageShare>(&client, &ns, "s", "InSync").await;
    wait_reason::<OtaSchedule>(&client, &ns, "o", "Approved").await;
    assert_eq!(op.stop(), Some(0));
    // The image is unshared behind the operator's back: a repair is due, with a new token.
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
    let writes = |action: &str| emu.world().counters().count(action);
    let (shares_before, approvals_before) = (writes("ModifyImageShareStatus"), writes("ApproveOtaTask"));
    assert_eq!(approvals_before, 1);

    let env = KindEnv::new(
        support::client(&emu, alicloud_ops_operator::cloud::SignatureVersion::V3),
        "default".into(),
        std::sync::Arc::new(SnapshotCache::new(Duration::ZERO)),
    );
    let ctx = PlanContext {
        now: chrono::Utc::now(),
        generation: 1,
        policy: Default::default(),
        resync: Duration::from_secs(600),
        request: None,
    };
    let conflict = |r: Result<_, kube::Error>| matches!(r, Err(kube::Error::Api(s)) if s.code == 409);
    let sink = KubeStatus::new(shares.clone(), &stale_share);
    let r = reconcile_once(&stale_share, &env, &[], &ctx, Stage::Apply, false, &sink).await;
    assert!(conflict(r.map(drop)), "the stale ImageShare is refused at its intent");
    let sink = KubeStatus::new(otas.clone(), &stale_ota);
    let r = reconcile_once(&stale_ota, &env, &[], &ctx, Stage::Apply, false, &sink).await;
    assert!(conflict(r.map(drop)), "the stale OtaSchedule is refused");
    assert_eq!(
        writes("ModifyImageShareStatus"),
        shares_before,
        "no share with a reused ClientToken"
    );
    assert_eq!(writes("ApproveOtaTask"), 1, "no second approval");
}

/// The storm: 101 resources of all four kinds against a cloud that fails 30 % of calls,
/// throttles in a burst and loses the answers of writes it applied, while the operator is
/// SIGKILLed every 20 s (two replicas with leader election first, then one at a time), a
/// maintenance window opens and closes, and ten windows lose their status while it is open. The emulator's own log and state then show that
/// every promise held.
#[tokio::test(flavor = "multi_thread")]
async fn chaos_every_promise_holds_under_faults_crashes_and_lost_answers() {
    use alicloud_ops_operator::emulator::state::DeliveryGroup;
    use alicloud_ops_operator::emulator::{CloudState, DEFAULT_ACCESS_KEY_SECRET};
    let client = admin().await;
    let ns = namespace(&client, "chaos").await;
    // A second RAM user of the same account, for a key rotated mid-window.
    let rotated = ("LTAI5tChaosRotatedKey", "chaos-rotated-key-secret");
    let emu = emulator_with_keys(CloudState::default_dataset(), &[ExtraKey(rotated.0, rotated.1, None)]).await;
    secret(&client, &ns, "chaos-key-a", DEFAULT_ACCESS_KEY_SECRET).await;
    let started = std::time::Instant::now();
    let (fotas, groups, windows, images) = (25usize, 20usize, 50usize, 6usize);
    // Windows whose key is rotated mid-window (a new Secret name, the old one pruned).
    let rotating = 10..20usize;
    emu.world().update_state(|s| {
        let hz = s.ecd.get_mut("cn-hangzhou").unwrap();
        let template = hz.fota_tasks[1].clone();
        for i in 1..=fotas - 3 {
            let mut t = template.clone();
            t.task_uid = format!("aot-cx{i:04}");
            t.status = if i % 2 == 0 { "Running" } else { "Pending" }.into();
            hz.fota_tasks.push(t);
        }
        let swas = s.swas.get_mut("cn-hangzhou").unwrap();
        let template = swas.custom_images[0].clone();
        for i in 1..=images {
            let mut img = template.clone();
            img.image_id = format!("m-cx{i:04}");
            img.in_share = i % 2 == 0;
            swas.custom_images.push(img);
        }
        let template: DeliveryGroup = s.appstream.app_instance_groups[0].clone();
        for i in 1..=groups {
            let mut g = template.clone();
            g.group.app_instance_group_id = format!("aig-cx{i:04}");
            g.group.ota_info.task_id = format!("ota-cx{i:04}-1");
            s.appstream.app_instance_groups.push(g);
        }
    });
    let tasks: Vec<(String, String)> = emu.world().state().ecd["cn-hangzhou"]
        .fota_tasks
        .iter()
        .map(|t| (t.task_uid.clone(), t.status.clone()))
        .collect();
    let now = chrono::Utc::now();
    let (open, close) = (now + chrono::Duration::seconds(25), now + chrono::Duration::seconds(70));
    let mut creations: Vec<(&str, Value)> = Vec::new();
    for (i, (uid, status)) in tasks.iter().enumerate() {
        // Each policy flips its task.
        creations.push((
            "FotaTaskPolicy",
            json!({"metadata": {"name": format!("f{i}")},
            "spec": {"regionId": "cn-hangzhou", "autoPush": status == "Pending", "taskUids": [uid]}}),
        ));
    }
    for i in 1..=groups {
        creations.push((
            "OtaSchedule",
            json!({"metadata": {"name": format!("o{i}")},
            "spec": {"bizRegionId": "cn-hangzhou", "appInstanceGroupId": format!("aig-cx{i:04}"),
                     "startTime": (now + chrono::Duration::hours(1)).to_rfc3339()}}),
        ));
    }
    let desk = |n: usize| format!("ecd-hz2{n:04}");
    for w in 0..windows {
        let mut body = json!({"metadata": {"name": format!("w{w}")},
            "spec": {"regionId": "cn-hangzhou", "desktopIds": [desk(2 * w + 1), desk(2 * w + 2)],
                     "window": {"start": open.to_rfc3339(), "end": close.to_rfc3339()}}});
        if rotating.contains(&w) {
            body["spec"]["credentialsRef"] = json!({"name": "chaos-key-a"});
        }
        creations.push(("DesktopMaintenanceWindow", body));
    }
    for i in 1..=images {
        let shared = i % 2 == 1;
        creations.push((
            "ImageShare",
            json!({"metadata": {"name": format!("i{i}")},
            "spec": {"regionId": "cn-hangzhou", "imageId": format!("m-cx{i:04}"), "shared": shared,
                     "deletionPolicy": if i <= 2 { "UnShare" } else { "Retain" }}}),
        ));
    }
    assert!(creations.len() >= 100);
    for (kind, mut body) in creations.clone() {
        body["apiVersion"] = json!("ops.alicloud.dev/v1alpha1");
        body["kind"] = json!(kind);
        with_kind!(kind, K => drop(create::<K>(&client, &ns, body).await));
    }

    // The weather: lost answers on every write, 30 % unavailable, a throttling burst.
    let lose_answers = || {
        for action in [
            "SetDesktopMaintenance",
            "ModifyImageShareStatus",
            "ApproveOtaTask",
            "UpdateFotaTask",
        ] {
            emu.world()
                .add_fault(fault(
                    json!({"action": action, "code": "ServiceUnavailable", "afterApply": true, "probability": 0.3}),
                ))
                .unwrap();
        }
    };
    lose_answers();
    emu.world()
        .add_fault(fault(
            json!({"action": "*", "code": "ServiceUnavailable", "probability": 0.3}),
        ))
        .unwrap();
    emu.world()
        .add_fault(fault(json!({"action": "*", "throttle": true, "count": 60})))
        .unwrap();

    // Two replicas with leader election, the leader killed at 20 s and the other at 40 s;
    // then one replica at a time, killed every 20 s.
    let lease = format!("lease-{ns}");
    let mut logs = Vec::new();
    let mut pair = vec![
        Operator::start(&ns, &emu.url(), &lease),
        Operator::start(&ns, &emu.url(), &lease),
    ];
    for mut op in pair.drain(..) {
        tokio::time::sleep(Duration::from_secs(20)).await;
        op.crash();
        logs.push(op.logs());
    }
    for round in 0..2 {
        let mut op = Operator::start_with(&ns, &emu.url(), &lease, &["--leader-election", "false"]);
        tokio::time::sleep(Duration::from_secs(20)).await;
        op.crash();
        logs.push(op.logs());
        if round == 0 {
            // 60 s in, the window open since 25 s and closing at 70 s: ten windows lose
            // their status (a restore without status, a replace of the status subresource)
            // and must take their desktops back and exit them at the end.
            let windows_api = Api::<DesktopMaintenanceWindow>::namespaced(client.clone(), &ns);
            for w in 0..10 {
                windows_api
                    .patch_status(
                        &format!("w{w}"),
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": null})),
                    )
                    .await
                    .unwrap();
            }
            // And ten rotate their key to another RAM user of the account, the old Secret
            // pruned at once: nothing may be exited early, or stranded.
            let b: Secret = serde_json::from_value(json!({"metadata": {"name": "chaos-key-b",
                "labels": {"ops.alicloud.dev/credentials": "true"}},
                "stringData": {"accessKeyId": rotated.0, "accessKeySecret": rotated.1}}))
            .unwrap();
            let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
            secrets.create(&PostParams::default(), &b).await.unwrap();
            for w in rotating.clone() {
                patch_spec::<DesktopMaintenanceWindow>(
                    &client,
                    &ns,
                    &format!("w{w}"),
                    json!({"credentialsRef": {"name": "chaos-key-b"}}),
                )
                .await;
            }
            secrets.delete("chaos-key-a", &DeleteParams::default()).await.unwrap();
        }
        if round == 1 {
            // The storm passes; lost answers on writes stay to the end.
            emu.world().clear_faults();
            lose_answers();
        }
    }
    let op = Operator::start_with(&ns, &emu.url(), &lease, &["--leader-election", "false"]);

    // Converged: every version approved, the window over, tasks and images as specified.
    let state = || emu.world().state();
    eventually_all("converged after the storm", Duration::from_secs(90), || async {
        let s = state();
        let mut unmet = Vec::new();
        let unapproved: Vec<&str> = s
            .appstream
            .app_instance_groups
            .iter()
            .filter(|g| g.group.app_instance_group_id.starts_with("aig-cx") && g.scheduled_upgrade.is_none())
            .map(|g| g.group.app_instance_group_id.as_str())
            .collect();
        if !unapproved.is_empty() {
            unmet.push(format!("OTA not approved for {unapproved:?}"));
        }
        if chrono::Utc::now() <= close {
            unmet.push("the window has not closed yet".into());
        }
        let held: Vec<String> = (1..=2 * windows)
            .map(desk)
            .filter(|id| {
                s.ecd["cn-hangzhou"]
                    .desktops
                    .iter()
                    .any(|d| &d.desktop_id == id && d.in_maintenance())
            })
            .collect();
        if !held.is_empty() {
            unmet.push(format!("desktops still in maintenance: {held:?}"));
        }
        let unflipped: Vec<&str> = tasks
            .iter()
            .filter(|(uid, before)| {
                !s.ecd["cn-hangzhou"]
                    .fota_tasks
                    .iter()
                    .any(|t| &t.task_uid == uid && &t.status != before)
            })
            .map(|(uid, _)| uid.as_str())
            .collect();
        if !unflipped.is_empty() {
            unmet.push(format!("FOTA tasks not flipped: {unflipped:?}"));
        }
        let wrong_images: Vec<String> = (1..=images)
            .map(|i| format!("m-cx{i:04}"))
            .filter(|id| {
                let want = id.ends_with(|c: char| c.to_digit(10).is_some_and(|d| d % 2 == 1));
                !s.swas["cn-hangzhou"]
                    .custom_images
                    .iter()
                    .any(|img| &img.image_id == id && img.in_share == want)
            })
            .collect();
        if !wrong_images.is_empty() {
            unmet.push(format!("images not as specified: {wrong_images:?}"));
        }
        if unmet.is_empty() {
            return Ok(());
        }
        // Say what the operator thinks of the resources behind what is not met.
        let mut not_ready = Vec::new();
        for kind in [
            "FotaTaskPolicy",
            "OtaSchedule",
            "DesktopMaintenanceWindow",
            "ImageShare",
        ] {
            not_ready.extend(with_kind!(kind, K => not_ready_of::<K>(&client, &ns).await));
        }
        Err(format!("{}; resources not Ready: {not_ready:?}", unmet.join("; ")))
    })
    .await;

    // Each OTA version approved exactly once: count the approvals the cloud applied.
    let log = emu.world().request_log();
    assert!(
        (log.len() as u64) < emu.world().counters().total + 1
            && log.len() < alicloud_ops_operator::emulator::REQUEST_LOG_CAPACITY,
        "the whole run is in the log"
    );
    for i in 1..=groups {
        let id = format!("aig-cx{i:04}");
        let applied = log
            .iter()
            .filter(|r| r.action == "ApproveOtaTask" && r.params.get("AppInstanceGroupId") == Some(&id))
            .filter(|r| r.code == "success" || r.answer_lost)
            .count();
        assert_eq!(applied, 1, "{id} approved {applied} times");
    }
    // The rotated windows' desktops left maintenance with the new key, at the end: a drain
    // with the old key would have exited them early (or, with its Secret gone, not at all).
    let rotated_desks: Vec<String> = rotating
        .clone()
        .flat_map(|w| [desk(2 * w + 1), desk(2 * w + 2)])
        .collect();
    let early_exits: Vec<&alicloud_ops_operator::emulator::RequestRecord> = log
        .iter()
        .filter(|r| r.action == "SetDesktopMaintenance" && r.params.get("Mode").map(String::as_str) == Some("EXIT"))
        .filter(|r| r.params.values().any(|v| rotated_desks.contains(v)))
        .filter(|r| r.access_key_id != rotated.0)
        .collect();
    assert!(early_exits.is_empty(), "exited with the old key: {early_exits:?}");
    // The window entered its desktops while it was open.
    let entered = log
        .iter()
        .filter(|r| r.action == "SetDesktopMaintenance" && r.params.get("Mode").map(String::as_str) == Some("ENTER"))
        .filter(|r| r.code == "success" || r.answer_lost)
        .count();
    assert!(entered > 0, "the window opened during the run");

    // Everything deleted: every finalizer released within 60 s.
    let deleted_at = std::time::Instant::now();
    for (kind, body) in &creations {
        let name = body["metadata"]["name"].as_str().unwrap();
        let dp = DeleteParams::default();
        with_kind!(*kind, K => drop(Api::<K>::namespaced(client.clone(), &ns).delete(name, &dp).await.unwrap()));
    }
    eventually("every resource gone", Duration::from_secs(60), || async {
        let mut left = 0;
        for kind in ["FotaTaskPolicy", "OtaSchedule", "DesktopMaintenanceWindow", "ImageShare"] {
            left += with_kind!(kind, K => Api::<K>::namespaced(client.clone(), &ns).list(&Default::default()).await.ok()?.items.len());
        }
        (left == 0).then_some(())
    })
    .await;
    let release = deleted_at.elapsed();
    let s = state();
    for i in 1..=2 {
        let img = s.swas["cn-hangzhou"]
            .custom_images
            .iter()
            .find(|img| img.image_id == format!("m-cx{i:04}"))
            .unwrap();
        assert!(!img.in_share, "deletionPolicy UnShare: m-cx{i:04} unshared on deletion");
    }
    let in_maint = (1..=2 * windows)
        .filter(|n| {
            s.ecd["cn-hangzhou"]
                .desktops
                .iter()
                .any(|d| d.desktop_id == desk(*n) && d.in_maintenance())
        })
        .count();
    assert_eq!(in_maint, 0, "no desktop left in maintenance");
    logs.push(op.logs());
    for (n, l) in logs.iter().enumerate() {
        assert!(!l.contains("panicked"), "operator run {n} panicked:\n{l}");
    }
    println!(
        "chaos: {} resources, {} cloud requests ({} answers lost), finalizers released {:.1} s after the deletions, {:.0} s in all",
        creations.len(),
        log.len(),
        log.iter().filter(|r| r.answer_lost).count(),
        release.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_leak_under_v2_with_sts_tokens_and_rrsa() {
    let client = admin().await;
    let ns = namespace(&client, "leak2").await;
    let emu = emulator().await;
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
    let mut seen = vec![op.logs(), listed_json::<Event>(&client, &ns).await];
    for kind in ["ImageShare", "FotaTaskPolicy", "DesktopMaintenanceWindow"] {
        seen.push(with_kind!(kind, K => listed_json::<K>(&client, &ns).await));
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
    let client = admin().await;
    let ns = namespace(&client, "tenant").await;
    let emu = emulator().await;
    secret(
        &client,
        &ns,
        "own",
        alicloud_ops_operator::emulator::DEFAULT_ACCESS_KEY_SECRET,
    )
    .await;
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
    let client = admin().await;
    let ns = namespace(&client, "rotate").await;
    let emu = emulator().await;
    secret(&client, &ns, "cloud", "not-the-secret").await;
    let _op = Operator::start(&ns, &emu.url(), &format!("lease-{ns}"));
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

#[tokio::test(flavor = "multi_thread")]
async fn metrics_answer_only_tokens_allowed_to_read_them() {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    let client = admin().await;
    let ns = namespace(&client, "metrics").await;
    let emu = emulator().await;
    let op = Operator::start_with(
        &ns,
        &emu.url(),
        &format!("lease-{ns}"),
        &["--metrics-auth", "kubernetes"],
    );
    let sas = Api::<ServiceAccount>::namespaced(client.clone(), &ns);
    for name in ["reader", "nobody"] {
        let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        sas.create(&PostParams::default(), &sa).await.unwrap();
    }
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("metrics-reader-{ns}")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "alicloud-ops-operator-metrics-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}]
    }))
    .unwrap();
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let token_of = |name: &'static str| {
        let sas = sas.clone();
        async move {
            let req = TokenRequest {
                spec: Some(TokenRequestSpec {
                    expiration_seconds: Some(600),
                    ..Default::default()
                }),
                ..Default::default()
            };
            sas.create_token_request(name, &PostParams::default(), &req)
                .await
                .unwrap()
                .status
                .unwrap()
                .token
                .unwrap()
        }
    };
    let (reader, nobody) = (token_of("reader").await, token_of("nobody").await);
    let http = https_client();
    let status = |token: Option<String>| {
        let mut req = http.get(&op.metrics);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    };
    eventually("the metrics server is up", WAIT, || async {
        (status(None).await != 0).then_some(())
    })
    .await;
    assert_eq!(status(None).await, 401, "no token");
    assert_eq!(status(Some("not-a-token".into())).await, 401, "an unknown token");
    assert_eq!(status(Some(nobody)).await, 403, "a token RBAC does not allow");
    assert_eq!(status(Some(reader.clone())).await, 200, "the metrics reader");
    let probe = reqwest::get(format!("{}/healthz", op.health)).await.unwrap();
    assert_eq!(probe.status(), 200, "probes stay open, on their own port");
    // Tokens travel only over TLS: the metrics port does not speak plain HTTP.
    let plain = reqwest::Client::new()
        .get(op.metrics.replace("https://", "http://"))
        .bearer_auth(&reader)
        .send()
        .await;
    assert!(
        plain.as_ref().map_or(true, |r| r.status() != 200),
        "/metrics answered over plain HTTP: {plain:?}"
    );
    // A flood of made-up tokens costs at most a bounded number of TokenReviews: past the
    // burst, unknown tokens are answered 429 without asking Kubernetes.
    let mut answers = Vec::new();
    for i in 0..40 {
        answers.push(status(Some(format!("made-up-token-{i}"))).await);
    }
    assert!(answers.contains(&429), "every unknown token was reviewed: {answers:?}");
    assert!(answers.iter().all(|a| *a == 401 || *a == 429), "{answers:?}");
    assert_eq!(
        status(Some(reader.clone())).await,
        200,
        "a known token still reads (cached)"
    );
}

/// The overlays apply to a real apiserver with kubectl, and the namespaced install (a Role,
/// not the ClusterRole) is all the operator needs to serve its namespace, finalizers and
/// leader election included: the operator runs as that ServiceAccount, impersonated.
#[tokio::test(flavor = "multi_thread")]
async fn the_overlays_apply_and_the_namespaced_install_is_enough() {
    let client = admin().await;
    let ns = namespace(&client, "nsmode").await;
    let emu = emulator().await;
    let applied = kubectl_run(&["apply", "-k", "deploy/overlays/networkpolicy"]);
    assert!(
        applied.contains("networkpolicy.networking.k8s.io/alicloud-ops-operator"),
        "{applied}"
    );
    assert!(
        applied.contains("poddisruptionbudget.policy/alicloud-ops-operator"),
        "{applied}"
    );

    let dir = repo(&format!("target/e2e-kustomize/{ns}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {ns}\nresources:\n  - ../../../deploy/overlays/namespaced\n"
        ),
    )
    .unwrap();
    let applied = kubectl_run(&["apply", "-k", dir.to_str().unwrap()]);
    assert!(
        applied.contains("role.rbac.authorization.k8s.io/alicloud-ops-operator-namespaced"),
        "{applied}"
    );
    assert!(
        !applied.contains("clusterrolebinding.rbac.authorization.k8s.io/alicloud-ops-operator "),
        "{applied}"
    );
    let kubeconfig = dir.join("kubeconfig");
    let admin_config = std::fs::read_to_string(&cluster().kubeconfig).unwrap();
    std::fs::write(
        &kubeconfig,
        admin_config.replace(
            "    token: ",
            &format!("    as: system:serviceaccount:{ns}:alicloud-ops-operator\n    token: "),
        ),
    )
    .unwrap();
    secret(
        &client,
        &ns,
        "cloud",
        alicloud_ops_operator::emulator::DEFAULT_ACCESS_KEY_SECRET,
    )
    .await;
    let op = Operator::start_full(
        &ns,
        &emu.url(),
        "alicloud-ops-operator",
        &["--lease-namespace", &ns],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    create::<ImageShare>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": "s"},
               "spec": {"regionId": "cn-hangzhou", "imageId": "m-hz0003", "deletionPolicy": "UnShare",
                        "credentialsRef": {"name": "cloud"}}}),
    )
    .await;
    wait_reason::<ImageShare>(&client, &ns, "s", "InSync").await;
    Api::<ImageShare>::namespaced(client.clone(), &ns)
        .delete("s", &DeleteParams::default())
        .await
        .unwrap();
    gone::<ImageShare>(&client, &ns, "s", WAIT).await;
    let logs = op.logs();
    assert!(!logs.contains("forbidden"), "a permission was missing:\n{logs}");
}

/// From the apiserver's own audit log: the operator's ServiceAccount lists and watches
/// Secrets only through the credentials label, and reads them only by name; and it never
/// uses a verb on a resource beyond the ones its ClusterRole exists for.
#[tokio::test(flavor = "multi_thread")]
async fn the_audit_log_shows_least_privilege_in_use() {
    let client = admin().await;
    let ns = namespace(&client, "audit").await;
    let emu = emulator().await;
    secret(
        &client,
        &ns,
        "cloud",
        alicloud_ops_operator::emulator::DEFAULT_ACCESS_KEY_SECRET,
    )
    .await;
    let op = Operator::start(&ns, &emu.url(), &format!("lease-{ns}"));
    create::<ImageShare>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": "s"},
               "spec": {"regionId": "cn-hangzhou", "imageId": "m-hz0001", "credentialsRef": {"name": "cloud"}}}),
    )
    .await;
    wait_reason::<ImageShare>(&client, &ns, "s", "InSync").await;
    let _ = op.scrape().await;
    drop(op);
    let sa = "system:serviceaccount:alicloud-ops-system:alicloud-ops-operator";
    let log = std::fs::read_to_string(cluster().dir.join("audit.log")).unwrap();
    let mut used = std::collections::BTreeSet::new();
    let mut secret_requests = 0;
    for line in log.lines() {
        let Ok(e) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if e["impersonatedUser"]["username"] != sa {
            continue;
        }
        let resource = e["objectRef"]["resource"].as_str().unwrap_or("");
        let sub = e["objectRef"]["subresource"].as_str().unwrap_or("");
        let verb = e["verb"].as_str().unwrap_or("").to_string();
        let uri = e["requestURI"].as_str().unwrap_or("");
        if resource == "secrets" {
            secret_requests += 1;
            match verb.as_str() {
                "get" => assert!(
                    e["objectRef"]["name"].is_string(),
                    "a Secret read without a name: {uri}"
                ),
                "list" | "watch" => assert!(
                    uri.contains("labelSelector=ops.alicloud.dev%2Fcredentials%3Dtrue"),
                    "Secrets listed without the credentials label: {uri}"
                ),
                other => panic!("verb {other} on Secrets: {uri}"),
            }
        }
        let what = if sub.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}/{sub}")
        };
        if !what.is_empty() {
            used.insert(format!("{what} {verb}"));
        }
    }
    assert!(secret_requests > 0, "the operator's Secret traffic is in the audit log");
    println!("the operator used: {used:?}");
    let allowed = [
        "fotataskpolicies",
        "desktopmaintenancewindows",
        "imageshares",
        "otaschedules",
    ];
    for u in &used {
        let (what, verb) = u.split_once(' ').unwrap();
        let base = what.split('/').next().unwrap();
        let ok = match base {
            _ if allowed.contains(&base) && what.ends_with("/status") => matches!(verb, "get" | "patch"),
            _ if allowed.contains(&base) => matches!(verb, "get" | "list" | "watch" | "patch"),
            "secrets" => matches!(verb, "get" | "list" | "watch"),
            "events" => matches!(verb, "create" | "patch"),
            "leases" => matches!(verb, "get" | "list" | "watch" | "create" | "update" | "patch"),
            "tokenreviews" | "subjectaccessreviews" => verb == "create",
            _ => false,
        };
        assert!(ok, "the operator used {u}, beyond what it is meant to: {used:?}");
    }
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
    let _op = Operator::start_with(&ns, &emu.url(), &format!("lease-{ns}"), &["--concurrency", "1"]);
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

/// A resource is reconciled when what the operator acts on changes (spec, annotations,
/// finalizers, deletion), not when the operator writes its status: each write would
/// otherwise cost a second reconcile, and at 10,000 resources that is half the work.
#[tokio::test(flavor = "multi_thread")]
async fn the_operators_own_status_writes_do_not_reconcile_again() {
    let client = admin().await;
    let ns = namespace(&client, "quiet").await;
    let emu = emulator().await;
    // A resync of an hour: nothing comes back on its own during the test.
    let op = Operator::start_with(&ns, &emu.url(), &format!("lease-{ns}"), &["--resync-interval", "1h"]);
    create::<ImageShare>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": "s"},
               "spec": {"regionId": "cn-hangzhou", "imageId": "m-hz0001", "shared": true}}),
    )
    .await;
    wait_reason::<ImageShare>(&client, &ns, "s", "InSync").await;
    let reconciles = || async { metric_sum(&op.scrape().await, "alicloud_ops_reconciles_total", "ImageShare") };
    let settled = |want: f64, what: &'static str| {
        let reconciles = &reconciles;
        async move {
            // Give a reconcile that should not happen time to happen.
            tokio::time::sleep(Duration::from_secs(3)).await;
            assert_eq!(reconciles().await, want, "{what}");
        }
    };
    settled(
        1.0,
        "one reconcile for a new resource that is in sync; its status write brings none",
    )
    .await;
    let api: Api<ImageShare> = Api::namespaced(client.clone(), &ns);
    api.patch(
        "s",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"ops.alicloud.dev/reconcile-requested-at": "now"}}})),
    )
    .await
    .unwrap();
    settled(2.0, "a requested reconcile").await;
    api.patch_status(
        "s",
        &PatchParams::apply("someone-else").force(),
        &Patch::Apply(
            json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "status": {"imageName": "edited"}}),
        ),
    )
    .await
    .unwrap();
    settled(2.0, "a status-only change waits for the resync").await;
    patch_spec::<ImageShare>(&client, &ns, "s", json!({"resyncInterval": "2h"})).await;
    settled(3.0, "a spec edit").await;
    // A status that disappears (a restore without status, a replace of the subresource)
    // brings the resource back at once, and its status is written again.
    api.patch_status("s", &PatchParams::default(), &Patch::Merge(json!({"status": null})))
        .await
        .unwrap();
    settled(4.0, "a lost status").await;
    assert!(
        ready::<ImageShare>(&client, &ns, "s").await.is_some(),
        "the status is back"
    );

    // A NotReady resource deleted without a finalizer takes its series with it, so that no
    // alert fires for an object that is gone.
    create::<ImageShare>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": "gone"},
               "spec": {"regionId": "cn-hangzhou", "imageId": "m-nosuch", "shared": true}}),
    )
    .await;
    wait_reason::<ImageShare>(&client, &ns, "gone", "NotFound").await;
    let series =
        format!(r#"alicloud_ops_not_ready_since_timestamp_seconds{{kind="ImageShare",namespace="{ns}",name="gone""#);
    assert!(op.scrape().await.contains(&series), "the NotReady series is exported");
    api.delete("gone", &DeleteParams::default()).await.unwrap();
    eventually("the deleted resource's series forgotten", WAIT, || async {
        (!op.scrape().await.contains(&series)).then_some(())
    })
    .await;

    // A requested reconcile is honoured once, not again after a restart (a fresh read of
    // ImageShare is a ListCustomImages of its own image).
    let fresh_reads = || {
        emu.world()
            .request_log()
            .iter()
            .filter(|r| r.action == "ListCustomImages" && r.params.contains_key("ImageIds"))
            .count()
    };
    let before = fresh_reads();
    assert!(before >= 1, "the requested reconcile read its image fresh");
    let mut op = op;
    op.crash();
    let op = Operator::start_with(&ns, &emu.url(), &format!("lease-{ns}"), &["--resync-interval", "1h"]);
    eventually("the restarted operator reconciled the share", WAIT, || async {
        (metric_sum(&op.scrape().await, "alicloud_ops_reconciles_total", "ImageShare") >= 1.0).then_some(())
    })
    .await;
    assert_eq!(
        fresh_reads(),
        before,
        "the restart honoured the same reconcile-requested-at again"
    );
}

/// Each kind of write has its own Event reason. kube-runtime's Recorder merges Events of
/// one reason and action into a series and keeps the first note, so an UnShare after a Share
/// must not be counted into the Share's series under the Share's note.
#[tokio::test(flavor = "multi_thread")]
async fn a_reversing_edit_gets_an_event_of_its_own() {
    let client = admin().await;
    let ns = namespace(&client, "events").await;
    let emu = emulator().await;
    let _op = Operator::start(&ns, &emu.url(), &format!("lease-{ns}"));
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

/// Records, per `Kind/name`, every Ready reason in the order the operator set them.
fn record_reasons<K>(client: &Client, ns: &str, seen: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>)
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + 'static,
{
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let api = Api::<K>::namespaced(client.clone(), ns);
    tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).applied_objects());
        while let Some(Ok(obj)) = events.next().await {
            let v = serde_json::to_value(&obj).unwrap();
            let reason = v["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .and_then(|c| c["reason"].as_str())
                .map(str::to_string);
            if let Some(reason) = reason {
                let key = format!("{}/{}", v["kind"].as_str().unwrap_or(""), obj.name_any());
                let mut seen = seen.lock().unwrap();
                if seen.iter().rev().find(|(k, _)| *k == key).map(|(_, r)| r) != Some(&reason) {
                    seen.push((key, reason));
                }
            }
        }
    });
}

/// The emulator's log of writes, each in the words `plan` uses for it (ApproveOtaTask
/// without the version, which is not a parameter of the call).
fn writes_in_plan_words(emu: &alicloud_ops_operator::emulator::Emulator) -> Vec<String> {
    let mut out: Vec<String> = emu
        .world()
        .request_log()
        .into_iter()
        .filter(|r| r.code == "success")
        .filter_map(|r| {
            let p = |k: &str| r.params.get(k).cloned().unwrap_or_default();
            Some(match r.action.as_str() {
                "UpdateFotaTask" => format!("UpdateFotaTask {} UserStatus={}", p("TaskUid"), p("UserStatus")),
                "ModifyImageShareStatus" => format!(
                    "ModifyImageShareStatus Operation={} ClientToken={}",
                    p("Operation"),
                    p("ClientToken")
                ),
                "ApproveOtaTask" => format!("ApproveOtaTask TaskId={} StartTime={}", p("TaskId"), p("StartTime")),
                "SetDesktopMaintenance" => {
                    let ids: Vec<String> = (1..)
                        .map_while(|i| r.params.get(&format!("DesktopIds.{i}")).cloned())
                        .collect();
                    format!("SetDesktopMaintenance {} {}", p("Mode"), ids.join(", "))
                }
                _ => return None,
            })
        })
        .collect();
    out.sort();
    out
}

/// `plan` with the live objects, then the operator, on the same manifests and cloud: the plan
/// names exactly the writes the operator sends (ClientTokens included, made from the live
/// uids) and the Ready reason it sets; a conflict between two policies, or two schedules of
/// one delivery group, created in order (or in the same second) is decided the same way;
/// after the operator, the plan announces nothing again; a window applied later over a
/// desktop another one holds is planned as the operator acts on it.
#[tokio::test(flavor = "multi_thread")]
async fn plan_predicts_exactly_the_writes_and_reasons_of_the_operator() {
    let client = admin().await;
    let ns = namespace(&client, "plan").await;
    // A cloud account of this test's own: plan compares FotaTaskPolicies with every live one of
    // the same account, in every namespace, and the other tests' use the default key.
    use alicloud_ops_operator::emulator::CloudState;
    let account = ("LTAI5tPlanAccount", "plan-account-secret");
    let emu = emulator_with_keys(
        CloudState::default_dataset(),
        &[ExtraKey(account.0, account.1, Some("2000000000000003"))],
    )
    .await;
    let now = chrono::Utc::now();
    let at = |d: chrono::Duration| (now + d).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // A window of the plan's account, open from a minute ago for `hours`.
    let window_yaml = |name: &str, ids: &str, hours: i64| {
        format!(
            r#"---
apiVersion: ops.alicloud.dev/v1alpha1
kind: DesktopMaintenanceWindow
metadata: {{name: {name}, namespace: {ns}}}
spec:
  regionId: cn-hangzhou
  desktopIds: [{ids}]
  window: {{start: "{}", end: "{}"}}
  credentialsRef: {{name: plan-cloud}}
"#,
            at(chrono::Duration::minutes(-1)),
            at(chrono::Duration::hours(hours))
        )
    };
    let manifests = format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: plan-cloud, namespace: {ns}, labels: {{ops.alicloud.dev/credentials: "true"}}}}
stringData: {{accessKeyId: {}, accessKeySecret: {}}}
---
apiVersion: ops.alicloud.dev/v1alpha1
kind: FotaTaskPolicy
metadata: {{name: hold, namespace: {ns}}}
spec: {{regionId: cn-hangzhou, autoPush: false, taskUids: [aot-hz0002], credentialsRef: {{name: plan-cloud}}}}
---
apiVersion: ops.alicloud.dev/v1alpha1
kind: FotaTaskPolicy
metadata: {{name: push, namespace: {ns}}}
spec: {{regionId: cn-hangzhou, autoPush: true, credentialsRef: {{name: plan-cloud}}}}
---
apiVersion: ops.alicloud.dev/v1alpha1
kind: ImageShare
metadata: {{name: share, namespace: {ns}}}
spec: {{regionId: cn-hangzhou, imageId: m-hz0003, shared: true, credentialsRef: {{name: plan-cloud}}}}
---
apiVersion: ops.alicloud.dev/v1alpha1
kind: OtaSchedule
metadata: {{name: approve, namespace: {ns}}}
spec:
  bizRegionId: cn-hangzhou
  appInstanceGroupId: aig-hz0001
  window: {{cron: "0 3 * * 0", timeZone: Asia/Shanghai}}
  credentialsRef: {{name: plan-cloud}}
---
apiVersion: ops.alicloud.dev/v1alpha1
kind: OtaSchedule
metadata: {{name: approve-too, namespace: {ns}}}
spec:
  bizRegionId: cn-hangzhou
  appInstanceGroupId: aig-hz0001
  window: {{cron: "0 4 * * 0", timeZone: Asia/Shanghai}}
  credentialsRef: {{name: plan-cloud}}
{}"#,
        account.0,
        account.1,
        window_yaml("now", "ecd-hz20001, ecd-hz20002", 1)
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("resources.yaml");
    std::fs::write(&file, manifests).unwrap();

    let plan = |extra: &[&str]| {
        let out = with_emulator_key(&mut std::process::Command::new(env!(
            "CARGO_BIN_EXE_alicloud-ops-operator"
        )))
        .args([
            "plan",
            "-o",
            "json",
            "-f",
            file.to_str().unwrap(),
            "--endpoint",
            &emu.url(),
        ])
        .args(extra)
        .env("KUBECONFIG", &cluster().kubeconfig)
        .output()
        .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code(), report)
    };
    // Not in the cluster yet: both policies are new, so neither is older; one wins, by name,
    // as the operator will decide between two created in the same second.
    let (_, unapplied) = plan(&[]);
    let reasons: Vec<(&str, &str)> = unapplied["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "FotaTaskPolicy")
        .map(|r| (r["name"].as_str().unwrap(), r["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(reasons, [("hold", "InSync"), ("push", "Conflict")], "{unapplied:#}");
    kubectl_run(&["apply", "-f", file.to_str().unwrap()]);
    let (code, before) = plan(&[]);
    assert_eq!(code, Some(1), "the losing policy's Conflict is an error: {before:#}");
    assert!(
        before["cluster"]
            .as_str()
            .unwrap()
            .starts_with("live objects read from"),
        "{before:#}"
    );
    let resources = before["resources"].as_array().unwrap();
    let mut predicted: Vec<String> = resources
        .iter()
        .flat_map(|r| r["actions"].as_array().unwrap().iter())
        .map(|a| {
            let a = a.as_str().unwrap();
            assert!(
                !a.contains("made from the uid"),
                "the uid is live, so the ClientToken is known: {a}"
            );
            // ApproveOtaTask's version is for people; it is not a parameter of the call.
            match a.split_once(" version ") {
                Some((head, tail)) => format!("{head} {}", tail.split_once(' ').unwrap().1),
                None => a.to_string(),
            }
        })
        .collect();
    predicted.sort();
    assert!(predicted.len() >= 4, "every kind has a write to predict: {predicted:?}");
    let predicted_reasons: std::collections::BTreeMap<String, String> = resources
        .iter()
        .map(|r| {
            assert!(r.get("uncertain").is_none(), "{r:#}");
            (
                format!("{}/{}", r["kind"].as_str().unwrap(), r["name"].as_str().unwrap()),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(predicted_reasons["FotaTaskPolicy/push"], "Conflict", "{before:#}");
    // Two schedules of one delivery group: plan compares them as the operator does.
    assert_eq!(predicted_reasons["OtaSchedule/approve-too"], "Conflict", "{before:#}");

    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    record_reasons::<FotaTaskPolicy>(&client, &ns, seen.clone());
    record_reasons::<ImageShare>(&client, &ns, seen.clone());
    record_reasons::<OtaSchedule>(&client, &ns, seen.clone());
    record_reasons::<DesktopMaintenanceWindow>(&client, &ns, seen.clone());
    let _op = Operator::start_with(&ns, &emu.url(), &format!("lease-{ns}"), &["--resync-interval", "1h"]);
    let first_reasons = eventually("a Ready reason on every resource", WAIT, || async {
        let seen = seen.lock().unwrap();
        let mut first = std::collections::BTreeMap::new();
        for (k, r) in seen.iter() {
            first.entry(k.clone()).or_insert_with(|| r.clone());
        }
        (first.len() == predicted_reasons.len()).then_some(first)
    })
    .await;
    assert_eq!(
        first_reasons, predicted_reasons,
        "the first Ready reason set by the operator"
    );
    eventually("the operator's writes", WAIT, || async {
        (writes_in_plan_words(&emu).len() >= predicted.len()).then_some(())
    })
    .await;
    // Time for a write the plan did not foresee.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(writes_in_plan_words(&emu), predicted, "the writes the operator sent");

    // With the operator's statuses in the cluster, the plan knows what is done.
    let (code, after) = plan(&[]);
    let announced: Vec<&Value> = after["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["actions"].as_array().unwrap().is_empty())
        .collect();
    assert!(announced.is_empty(), "announced again: {announced:#?}");
    assert_eq!(
        code,
        Some(1),
        "the losing policy's Conflict is still an error: {after:#}"
    );

    // A window applied later over a desktop the first one holds: plan compares it with the
    // live windows as the operator does (it holds ecd-hz20002 with "now" and enters only
    // ecd-hz20003), and the operator then sends exactly that.
    let overlap = window_yaml("overlap", "ecd-hz20002, ecd-hz20003", 2);
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(&overlap);
    std::fs::write(&file, text).unwrap();
    let (_, with_overlap) = plan(&[]);
    let planned = with_overlap["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "overlap")
        .unwrap()
        .clone();
    let foreseen: Vec<String> = planned["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(foreseen, ["SetDesktopMaintenance ENTER ecd-hz20003"], "{planned:#}");
    let before = writes_in_plan_words(&emu);
    kubectl_run(&["apply", "-f", file.to_str().unwrap()]);
    let status = wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "overlap", "Active").await;
    assert_eq!(
        status["desktopsInMaintenance"],
        json!(["ecd-hz20002", "ecd-hz20003"]),
        "{status}"
    );
    let mut sent = writes_in_plan_words(&emu);
    for w in &before {
        let i = sent.iter().position(|s| s == w).unwrap();
        sent.remove(i);
    }
    assert_eq!(sent, foreseen, "the operator's writes for the overlapping window");
    // Without the live objects, the plan says which predictions it cannot be sure of.
    let (_, offline) = plan(&["--offline"]);
    assert!(
        offline["resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["uncertain"].is_string()),
        "{offline:#}"
    );
}

/// The binary, installed as `kubectl-alicloud_ops` on the PATH, is a kubectl plugin:
/// `kubectl alicloud-ops status` lists the resources with their reason and next step (`-n`,
/// `-A`), `reconcile KIND/NAME` makes the operator look at once, `plan` reads the live objects,
/// and `--context` and `KUBECONFIG` work as in kubectl.
#[tokio::test(flavor = "multi_thread")]
async fn kubectl_runs_the_binary_as_the_alicloud_ops_plugin() {
    let client = admin().await;
    let ns = namespace(&client, "plugin").await;
    let emu = emulator().await;
    let op = Operator::start_with(&ns, &emu.url(), &format!("lease-{ns}"), &["--resync-interval", "1h"]);
    let plugins = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_alicloud-ops-operator"),
        plugins.path().join("kubectl-alicloud_ops"),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        plugins.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let plugin = |args: &[&str]| {
        let out = with_emulator_key(&mut std::process::Command::new(kubectl()))
            .arg("alicloud-ops")
            .args(args)
            .env("KUBECONFIG", &cluster().kubeconfig)
            .env("PATH", &path)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let share = |name: &str, image: &str| {
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": name},
               "spec": {"regionId": "cn-hangzhou", "imageId": image}})
    };
    create::<ImageShare>(&client, &ns, share("kept", "m-hz0001")).await;
    create::<ImageShare>(&client, &ns, share("missing", "m-gone")).await;
    wait_reason::<ImageShare>(&client, &ns, "kept", "InSync").await;
    wait_reason::<ImageShare>(&client, &ns, "missing", "NotFound").await;

    let (code, out, err) = plugin(&["status", "-n", &ns]);
    assert_eq!(code, Some(0), "{out}{err}");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split("   ").map(str::trim).filter(|c| !c.is_empty()).collect())
        .collect();
    assert_eq!(lines[0][..5], ["KIND", "NAME", "READY", "REASON", "NEXT"], "{out}");
    assert_eq!(
        lines[1][..5],
        [
            "ImageShare",
            "kept",
            "True",
            "InSync",
            "looks again at the resync or the next window boundary"
        ],
        "{out}"
    );
    assert_eq!(
        lines[2][..5],
        [
            "ImageShare",
            "missing",
            "False",
            "NotFound",
            "looks again at the resync"
        ],
        "{out}"
    );
    assert!(lines[2][5].contains("m-gone"), "the Ready message: {out}");
    let (_, everywhere, _) = plugin(&["status", "-A"]);
    assert!(everywhere.starts_with("NAMESPACE"), "{everywhere}");
    assert!(
        everywhere.lines().any(|l| l.starts_with(&ns) && l.contains("missing")),
        "{everywhere}"
    );

    let reconciles = || async { metric_sum(&op.scrape().await, "alicloud_ops_reconciles_total", "ImageShare") };
    let before = reconciles().await;
    let (code, out, err) = plugin(&["reconcile", "imageshare/kept", "-n", &ns]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("ImageShare/kept"), "{out}");
    eventually("the requested reconcile", WAIT, || async {
        (reconciles().await > before).then_some(())
    })
    .await;
    let (code, _, err) = plugin(&["reconcile", "imageshare/nope", "-n", &ns]);
    assert_eq!(code, Some(1));
    assert!(err.contains("ImageShare") && err.contains("nope"), "{err}");
    let (code, _, err) = plugin(&["reconcile", "pods/kept"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not a kind of ops.alicloud.dev"), "{err}");

    // --context picks a context of the kubeconfig, as kubectl's does.
    let (code, _, err) = plugin(&["status", "-n", &ns, "--context", "no-such-context"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no-such-context"), "{err}");

    // plan through the plugin, with the live objects and -n for documents that name none.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("share.yaml");
    std::fs::write(&file, "apiVersion: ops.alicloud.dev/v1alpha1\nkind: ImageShare\nmetadata: {name: kept}\nspec: {regionId: cn-hangzhou, imageId: m-hz0001, shared: false}\n").unwrap();
    let (code, out, err) = plugin(&[
        "plan",
        "-f",
        file.to_str().unwrap(),
        "-n",
        &ns,
        "--endpoint",
        &emu.url(),
    ]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(out.contains(&format!("ImageShare {ns}/kept: Changes")), "{out}");
    assert!(
        out.contains("ClientToken=ishare-"),
        "the live uid gives the real token: {out}"
    );
    let (_, help, _) = plugin(&["--help"]);
    assert!(help.contains("kubectl alicloud-ops"), "{help}");
}

/// The chart, with the real helm: the release the harness was installed from is deployed and
/// owns the RBAC every test's operator runs with, and `helm template` applies to the
/// apiserver (server-side dry run: every object valid for this Kubernetes version).
#[tokio::test(flavor = "multi_thread")]
async fn the_helm_release_owns_the_rbac_the_operator_runs_with_and_templates_apply() {
    let client = admin().await;
    let helm = |args: &[&str]| {
        let out = std::process::Command::new(helm())
            .args(args)
            .env("KUBECONFIG", &cluster().kubeconfig)
            .current_dir(support::cluster::repo("."))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "helm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let releases: Value = serde_json::from_str(&helm(&["list", "-n", OPERATOR_NS, "-o", "json"])).unwrap();
    assert_eq!(releases[0]["name"], "alicloud-ops-operator", "{releases}");
    assert_eq!(releases[0]["status"], "deployed", "{releases}");
    let role: k8s_openapi::api::rbac::v1::ClusterRole =
        Api::all(client.clone()).get("alicloud-ops-operator").await.unwrap();
    assert_eq!(
        role.annotations().get("meta.helm.sh/release-name").map(String::as_str),
        Some("alicloud-ops-operator"),
        "the ClusterRole the operator's ServiceAccount is bound to comes from the chart"
    );
    let binding: k8s_openapi::api::rbac::v1::ClusterRoleBinding =
        Api::all(client.clone()).get("alicloud-ops-operator").await.unwrap();
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        format!(
            "system:serviceaccount:{}:{}",
            subject.namespace.as_deref().unwrap(),
            subject.name
        ),
        OPERATOR_SA,
        "the identity every e2e operator impersonates"
    );
    for values in [
        &[][..],
        &["--set", "installMode=namespaced", "--set", "networkPolicy.enabled=true"][..],
    ] {
        let mut args = vec![
            "template",
            "preview",
            "deploy/helm/alicloud-ops-operator",
            "--namespace",
            OPERATOR_NS,
        ];
        args.extend_from_slice(values);
        args.extend_from_slice(&["--set", "fullnameOverride=alicloud-ops-preview"]);
        let rendered = helm(&args);
        let file = cluster().dir.join(format!("helm-template-{}.yaml", values.len()));
        std::fs::write(&file, rendered).unwrap();
        let applied = kubectl_run(&["apply", "--dry-run=server", "-f", file.to_str().unwrap()]);
        assert!(
            applied.contains("deployment.apps/alicloud-ops-preview created (server dry run)"),
            "{applied}"
        );
    }
}

/// Metric names a `/metrics` page defines: each family's samples (`_total` for counters;
/// `_bucket`, `_sum` and `_count` for histograms), whether or not it has series yet.
fn exported_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            match kind {
                "counter" => {
                    names.insert(format!("{}_total", name.trim_end_matches("_total")));
                }
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
                _ => {
                    names.insert(name.to_string());
                }
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            names.insert(line.split(['{', ' ']).next().unwrap().to_string());
        }
    }
    names
}

/// Every `expr` in a JSON or YAML document, wherever it is nested.
fn expressions(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => expressions(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| expressions(v, out)),
        _ => {}
    }
}

/// The dashboard and the alerts ask only for metrics the operator really exports: a real
/// operator is scraped through a scenario that touches every kind (a window holding
/// desktops, an OTA version awaiting approval, a NotReady resource, cloud writes), and each
/// `alicloud_ops_*` name in every expression must be on its `/metrics`. The scrapes are kept
/// in target/e2e-metrics/ for the README's picture of the dashboard
/// (scripts/plot-dashboard.py).
#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_and_alerts_name_only_metrics_the_operator_exports() {
    let client = admin().await;
    let ns = namespace(&client, "dash").await;
    let emu = emulator().await;
    let op = Operator::start(&ns, &emu.url(), &format!("lease-{ns}"));
    let out_dir = support::cluster::repo("target/e2e-metrics");
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).unwrap();
    let started = std::time::Instant::now();
    let scrapes = {
        let url = op.metrics.clone();
        let token = admin_token();
        let out_dir = out_dir.clone();
        tokio::spawn(async move {
            let http = https_client();
            for i in 0.. {
                if let Ok(r) = http.get(&url).bearer_auth(&token).send().await
                    && let Ok(text) = r.text().await
                {
                    let at = started.elapsed().as_secs_f64();
                    std::fs::write(out_dir.join(format!("{i:04}.prom")), format!("# at {at:.2}\n{text}")).unwrap();
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    // Failures for the error panels: the first UpdateFotaTask calls fail, a list is throttled.
    let world = emu.world();
    world
        .add_fault(fault(
            json!({"action": "UpdateFotaTask", "code": "InternalError", "status": 500, "count": 6}),
        ))
        .unwrap();
    world
        .add_fault(fault(
            json!({"action": "DescribeFotaTasks", "throttle": true, "count": 1}),
        ))
        .unwrap();
    let now = chrono::Utc::now();
    create::<DesktopMaintenanceWindow>(
        &client,
        &ns,
        dmw("now", &["ecd-hz20001", "ecd-hz20002"], chrono::Duration::hours(1), None),
    )
    .await;
    create::<OtaSchedule>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "OtaSchedule", "metadata": {"name": "watch"},
               "spec": {"bizRegionId": "cn-hangzhou", "appInstanceGroupId": "aig-hz0001", "managementPolicy": "ObserveOnly",
                        "window": {"cron": "0 3 * * 0"}}}),
    )
    .await;
    create::<ImageShare>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": "gone"},
               "spec": {"regionId": "cn-hangzhou", "imageId": "m-gone"}}),
    )
    .await;
    create::<FotaTaskPolicy>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "FotaTaskPolicy", "metadata": {"name": "push"},
               "spec": {"regionId": "cn-hangzhou", "autoPush": true}}),
    )
    .await;
    wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "now", "Active").await;
    wait_reason::<OtaSchedule>(&client, &ns, "watch", "DriftDetected").await;
    wait_reason::<ImageShare>(&client, &ns, "gone", "NotFound").await;
    wait_reason::<FotaTaskPolicy>(&client, &ns, "push", "InSync").await;
    // A few seconds of steady state for the picture.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let text = op.scrape().await;
    scrapes.abort();
    let exported = exported_names(&text);
    // The scenario reached the figures the dashboard shows.
    assert!(text.contains(&format!("alicloud_ops_desktops_in_maintenance{{kind=\"DesktopMaintenanceWindow\",namespace=\"{ns}\",name=\"now\"}} 2")), "{text}");
    assert!(
        text.contains(&format!(
            "alicloud_ops_ota_pending_approvals{{kind=\"OtaSchedule\",namespace=\"{ns}\",name=\"watch\"}} 1"
        )),
        "{text}"
    );
    let since = format!(
        "alicloud_ops_not_ready_since_timestamp_seconds{{kind=\"ImageShare\",namespace=\"{ns}\",name=\"gone\",reason=\"NotFound\"}} "
    );
    let at: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(&since))
        .expect(&text)
        .parse()
        .unwrap();
    assert!(
        (at - now.timestamp() as f64).abs() < 60.0,
        "NotReady since {at}, the test began at {now}"
    );
    assert!(text.contains("alicloud_ops_leader 1"), "{text}");
    assert!(
        metric_sum(&text, "alicloud_ops_reconcile_errors_total", "FotaTaskPolicy") > 0.0,
        "{text}"
    );

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(support::cluster::repo("deploy/grafana/alicloud-ops-operator.json")).unwrap(),
    )
    .unwrap();
    let rules: Value = serde_yaml::from_str(
        &std::fs::read_to_string(support::cluster::repo("deploy/prometheus/prometheusrule.yaml")).unwrap(),
    )
    .unwrap();
    for (what, doc) in [("the dashboard", &dashboard), ("the PrometheusRule", &rules)] {
        let mut exprs = Vec::new();
        expressions(doc, &mut exprs);
        assert!(exprs.len() >= 6, "{what}: {exprs:?}");
        for e in exprs {
            let names: Vec<&str> = e
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("alicloud_ops_"))
                .collect();
            assert!(!names.is_empty(), "{what}: {e:?} reads no metric of the operator");
            for n in names {
                assert!(
                    exported.contains(n),
                    "{what}: {e:?} names {n}, which the operator does not export"
                );
            }
        }
    }
}
