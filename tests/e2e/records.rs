//! The record holds: a stale copy never acts, the operator's own writes do not reconcile again, two replicas act as one.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_exactly_one_reconciles() {
    let Scene { client, ns, emu } = Scene::new("ha").await;
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

/// Two replicas that both see the Lease free both claim it, at once. The apiserver lets only
/// one claim stand, and only because each replica claims under a field manager of its own:
/// the second apply then conflicts on `holderIdentity` instead of silently overwriting it,
/// and its replica stays a standby. (With one manager for both, both led: CI saw both
/// replicas reconcile.)
#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_claiming_a_free_lease_at_once_cannot_both_lead() {
    use alicloud_ops_operator::controller::leadership::{lease_field_manager, lease_manager};
    use k8s_openapi::api::coordination::v1::Lease;
    let client = admin().await;
    let ns = namespace(&client, "claim").await;
    // The manager creates the Lease free, as a first replica does.
    lease_manager(client.clone(), &ns, "claimed", "replica-a")
        .await
        .unwrap();
    let leases = Api::<Lease>::namespaced(client.clone(), &ns);
    let claim = |identity: &str| {
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(k8s_openapi::jiff::Timestamp::now());
        // What kube-lease-manager sends to claim a Lease it saw free.
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "spec": {"holderIdentity": identity, "acquireTime": now, "renewTime": now, "leaseDurationSeconds": 15}})
    };
    leases
        .patch(
            "claimed",
            &PatchParams::apply(&lease_field_manager("replica-a")),
            &Patch::Apply(claim("replica-a")),
        )
        .await
        .unwrap();
    let second = leases
        .patch(
            "claimed",
            &PatchParams::apply(&lease_field_manager("replica-b")),
            &Patch::Apply(claim("replica-b")),
        )
        .await;
    assert!(
        matches!(&second, Err(kube::Error::Api(e)) if e.code == 409),
        "the second claim must conflict, got {second:?}"
    );
    let holder = leases.get("claimed").await.unwrap().spec.unwrap().holder_identity;
    assert_eq!(holder.as_deref(), Some("replica-a"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_copy_of_a_resource_never_acts() {
    use alicloud_ops_operator::cloud::snapshot::SnapshotCache;
    use alicloud_ops_operator::controller::kind::{KindEnv, Stage};
    use alicloud_ops_operator::controller::object::KubeStatus;
    use alicloud_ops_operator::controller::runner::reconcile_once;
    use alicloud_ops_operator::reconcile::PlanContext;
    let Scene { client, ns, emu } = Scene::new("stale").await;
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
    let mut op = operator(&ns, &emu);
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

/// A resource is reconciled when what the operator acts on changes (spec, annotations,
/// finalizers, deletion), not when the operator writes its status: each write would
/// otherwise cost a second reconcile, and at 10,000 resources that is half the work.
#[tokio::test(flavor = "multi_thread")]
async fn the_operators_own_status_writes_do_not_reconcile_again() {
    let Scene { client, ns, emu } = Scene::new("quiet").await;
    // A resync of an hour: nothing comes back on its own during the test.
    let op = operator_with(&ns, &emu, &["--resync-interval", "1h"]);
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
    let op = operator_with(&ns, &emu, &["--resync-interval", "1h"]);
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
