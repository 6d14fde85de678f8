//! OtaSchedule: a restart mid-approval never approves twice.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn ota_schedule_restart_mid_approval_never_approves_twice() {
    let Scene { client, ns, emu } = Scene::new("ota").await;
    // The approval hangs long enough to kill the operator while it is in flight.
    emu.world()
        .add_fault(fault(json!({"action": "ApproveOtaTask", "latencyMs": 4000})))
        .unwrap();
    let mut op = operator(&ns, &emu);
    let start = chrono::Utc::now() + chrono::Duration::hours(1);
    create::<OtaSchedule>(&client, &ns, ota_schedule("o", "aig-hz0001", start)).await;
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
