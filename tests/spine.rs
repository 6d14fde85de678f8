//! The whole per-object route in memory, against the emulator: the gates (skip-cleanup,
//! suspend, credentials, the credentials drain), the plan and its writes, the conditions,
//! a stale object and a panic, each carried to the decision of the next-step table. The
//! Kubernetes side is the seam the controller fills (the status sink and the Secrets); the
//! end-to-end tests run the same route on the apiserver.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alicloud_ops_operator::api::common::{CommonSpec, CredentialsRef};
use alicloud_ops_operator::api::image_share::{ImageShare, ImageShareSpec};
use alicloud_ops_operator::api::maintenance::{
    DesktopId, DesktopMaintenanceWindow, DesktopMaintenanceWindowSpec, FixedWindow,
};
use alicloud_ops_operator::cloud::ops::swas::CustomImage;
use alicloud_ops_operator::cloud::snapshot::SnapshotCache;
use alicloud_ops_operator::cloud::{CredentialSource, Credentials, SignatureVersion};
use alicloud_ops_operator::controller::context::{CredentialsError, SKIP_CLEANUP};
use alicloud_ops_operator::controller::kind::{
    KindEnv, ManagedKind, ObjectKey, Recaller, Stage, account_key, account_name,
};
use alicloud_ops_operator::controller::next_step::{Requeue, STALE_RETRY, Settled, next_step};
use alicloud_ops_operator::controller::runner::{CloudSides, Report, StatusSink, report_panic, run_stage};
use alicloud_ops_operator::emulator::faults::Fault;
use alicloud_ops_operator::emulator::{CloudState, Emulator};
use kube::Resource;
use support::*;

const RESYNC: Duration = Duration::from_secs(600);

/// The status subresource in memory: the last status written, or a 409 for every write
/// when the object is stale.
#[derive(Default)]
struct Memory {
    last: Mutex<Option<serde_json::Value>>,
    stale: bool,
}

impl<K: ManagedKind> StatusSink<K> for Memory {
    async fn write(&self, _obj: &K, status: &K::Status) -> Result<(), kube::Error> {
        if self.stale {
            let status = kube::core::Status::failure("the object has been modified", "Conflict").with_code(409);
            return Err(kube::Error::Api(status.boxed()));
        }
        *self.last.lock().unwrap() = Some(serde_json::to_value(status).unwrap());
        Ok(())
    }
}

impl Memory {
    /// Puts what was written on the object, as the apiserver would.
    fn onto<K: ManagedKind>(&self, obj: &mut K) {
        let mut value = serde_json::to_value(&*obj).unwrap();
        if let Some(s) = self.last.lock().unwrap().clone() {
            value["status"] = s;
        }
        *obj = serde_json::from_value(value).unwrap();
    }

    fn ready_reason(&self) -> String {
        let last = self.last.lock().unwrap().clone().unwrap_or_default();
        last["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready")
            .map(|c| c["reason"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    }
}

/// Secrets by (namespace, name): each holds a key the emulator knows, or is unreadable.
struct Secrets {
    emu: Emulator,
    snapshots: Arc<SnapshotCache>,
    keys: BTreeMap<String, Result<(String, String), u16>>,
    /// Counts recalls, where a controller would reconcile the resource again (`None`: no
    /// controller, as for `plan`).
    recalls: Option<Arc<AtomicUsize>>,
}

impl CloudSides for Secrets {
    fn recaller(&self, _key: &ObjectKey) -> Option<Recaller> {
        let recalls = self.recalls.clone()?;
        Some(Arc::new(move || {
            recalls.fetch_add(1, Ordering::SeqCst);
        }))
    }

    async fn env_for(
        &self,
        namespace: &str,
        credentials_ref: Option<&CredentialsRef>,
    ) -> Result<(KindEnv, String), CredentialsError> {
        let name = credentials_ref.expect("tests name a Secret").name.clone();
        let full = format!("{namespace}/{name}");
        let (id, secret) = match self.keys.get(&name) {
            None => return Err(CredentialsError::Missing(full)),
            Some(Err(code)) => {
                let status = kube::core::Status::failure("unavailable", "ServiceUnavailable").with_code(*code);
                return Err(CredentialsError::Read(full, kube::Error::Api(status.boxed())));
            }
            Some(Ok(k)) => k.clone(),
        };
        let creds = Credentials::new(id.as_str(), secret.as_str(), None, None);
        let fallback = creds.account_key();
        let cloud = client_with(
            &self.emu,
            SignatureVersion::V3,
            CredentialSource::Static {
                credentials: creds,
                origin: full.clone(),
            },
        );
        let account = account_key(&cloud, fallback).await;
        Ok((
            KindEnv::new(cloud, account, self.snapshots.clone()),
            format!("Secret {full}"),
        ))
    }

    async fn resolve_account(&self, namespace: &str, credentials_ref: Option<&CredentialsRef>) -> Option<String> {
        let (env, _) = self.env_for(namespace, credentials_ref).await.ok()?;
        env.cloud.account().await.ok().map(|a| account_name(&a))
    }
}

/// An emulator with a second account's key (`other`) and a second key of the default
/// account (`rotated`), and Secrets `a` (default account), `b` (the other account),
/// `a2` (the default account, another key), `down` (Kubernetes answers 503).
async fn scene() -> Secrets {
    let emu = emulator_with_keys(
        CloudState::default_dataset(),
        &[
            ExtraKey("LTAIotheraccount01", "other-secret", Some("1999999999999999")),
            ExtraKey("LTAIrotatedkey0001", "rotated-secret", None),
        ],
    )
    .await;
    let key = |id: &str, secret: &str| Ok((id.to_string(), secret.to_string()));
    let keys = BTreeMap::from([
        (
            "a".to_string(),
            key(
                alicloud_ops_operator::emulator::DEFAULT_ACCESS_KEY_ID,
                alicloud_ops_operator::emulator::DEFAULT_ACCESS_KEY_SECRET,
            ),
        ),
        ("b".to_string(), key("LTAIotheraccount01", "other-secret")),
        ("a2".to_string(), key("LTAIrotatedkey0001", "rotated-secret")),
        ("down".to_string(), Err(503)),
    ]);
    Secrets {
        emu,
        snapshots: Arc::new(SnapshotCache::new(Duration::ZERO)),
        keys,
        recalls: None,
    }
}

fn credentials(name: &str) -> CommonSpec {
    CommonSpec {
        credentials_ref: Some(CredentialsRef { name: name.into() }),
        ..CommonSpec::default()
    }
}

fn meta<K: kube::Resource>(mut k: K, name: &str) -> K {
    k.meta_mut().name = Some(name.into());
    k.meta_mut().namespace = Some("default".into());
    k.meta_mut().uid = Some(format!("uid-{name}"));
    k.meta_mut().generation = Some(1);
    k
}

const DESKTOPS: [&str; 2] = ["ecd-hz10011", "ecd-hz10012"];

fn window(secret: &str) -> DesktopMaintenanceWindow {
    let now = chrono::Utc::now();
    meta(
        DesktopMaintenanceWindow::new(
            "x",
            DesktopMaintenanceWindowSpec {
                region_id: "cn-hangzhou".into(),
                desktop_ids: Some(DESKTOPS.iter().map(|s| DesktopId(s.to_string())).collect()),
                selector: None,
                window: Some(FixedWindow {
                    start: (now - chrono::Duration::minutes(5)).to_rfc3339(),
                    end: (now + chrono::Duration::hours(1)).to_rfc3339(),
                }),
                recurring: None,
                drain: None,
                exclude: None,
                blackouts: Vec::new(),
                notify: None,
                common: credentials(secret),
            },
        ),
        "w",
    )
}

fn image(secret: &str) -> ImageShare {
    meta(
        ImageShare::new(
            "x",
            ImageShareSpec {
                region_id: "cn-hangzhou".into(),
                image_id: "m-hz0003".into(),
                shared: true,
                deletion_policy: Default::default(),
                common: credentials(secret),
            },
        ),
        "s",
    )
}

async fn run<K: ManagedKind>(sides: &Secrets, sink: &Memory, obj: &K, stage: Stage) -> Report {
    run_stage(obj, stage, &[], sides, sink, RESYNC).await
}

fn in_maintenance(sides: &Secrets) -> Vec<String> {
    sides.emu.world().state().ecd["cn-hangzhou"]
        .desktops
        .iter()
        .filter(|d| DESKTOPS.contains(&d.desktop_id.as_str()) && d.in_maintenance())
        .map(|d| d.desktop_id.clone())
        .collect()
}

/// Which keys signed `action`, in order.
fn signed_by(sides: &Secrets, action: &str) -> Vec<String> {
    sides
        .emu
        .world()
        .request_log()
        .into_iter()
        .filter(|r| r.action == action && r.code == "success")
        .map(|r| r.access_key_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn suspend_reads_and_writes_nothing_and_waits_for_a_change() {
    let sides = scene().await;
    let sink = Memory::default();
    let mut w = window("a");
    w.spec.common.suspend = true;
    let report = run(&sides, &sink, &w, Stage::Apply).await;
    assert_eq!(report.settled, Settled::Suspended);
    assert_eq!(sink.ready_reason(), "Suspended");
    assert_eq!(sides.emu.world().counters().total, 0, "nothing read or written");
    assert_eq!(
        next_step(Stage::Apply, &report.settled, RESYNC).requeue,
        Requeue::OnChange
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn skip_cleanup_releases_without_touching_the_cloud_and_names_what_it_leaves() {
    let sides = scene().await;
    let sink = Memory::default();
    let mut w = window("a");
    run(&sides, &sink, &w, Stage::Apply).await;
    sink.onto(&mut w);
    assert_eq!(in_maintenance(&sides).len(), 2);
    let calls = sides.emu.world().counters().total;
    w.meta_mut().annotations = Some(BTreeMap::from([(SKIP_CLEANUP.to_string(), "true".to_string())]));
    let report = run(&sides, &sink, &w, Stage::Cleanup).await;
    assert_eq!(report.settled, Settled::CleanupSkipped);
    assert!(next_step(Stage::Cleanup, &report.settled, RESYNC).release_finalizer);
    assert_eq!(sides.emu.world().counters().total, calls, "no cloud call");
    assert_eq!(in_maintenance(&sides).len(), 2, "left as they are");
    let note = &report.notes.first().expect("a CleanupSkipped Event").note;
    assert!(note.contains("leaving 2") && note.contains("ecd-hz10011"), "{note}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_secret_keeps_the_finalizer_while_something_is_recorded() {
    let sides = scene().await;
    let sink = Memory::default();
    let mut w = window("a");
    run(&sides, &sink, &w, Stage::Apply).await;
    sink.onto(&mut w);
    w.spec.common = credentials("gone");
    let report = run(&sides, &sink, &w, Stage::Cleanup).await;
    assert_eq!(report.settled, Settled::CredentialsUnavailable { remaining: 2 });
    assert!(report.message.contains(SKIP_CLEANUP), "{}", report.message);
    let next = next_step(Stage::Cleanup, &report.settled, RESYNC);
    assert!(!next.release_finalizer && next.warn);
    assert_eq!(in_maintenance(&sides).len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_kubernetes_cannot_read_now_is_backed_off_not_called_invalid() {
    let sides = scene().await;
    let sink = Memory::default();
    let report = run(&sides, &sink, &window("down"), Stage::Apply).await;
    assert_eq!(report.settled, Settled::KubeFailed);
    assert_eq!(sink.ready_reason(), "", "no CredentialsInvalid written");
    assert_eq!(
        next_step(Stage::Apply, &report.settled, RESYNC).requeue,
        Requeue::Backoff
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn another_account_drains_the_old_record_first_and_a_rotated_key_does_not() {
    let sides = scene().await;
    let sink = Memory::default();
    let mut w = window("a");
    run(&sides, &sink, &w, Stage::Apply).await;
    sink.onto(&mut w);
    let default_key = alicloud_ops_operator::emulator::DEFAULT_ACCESS_KEY_ID.to_string();
    assert_eq!(signed_by(&sides, "SetDesktopMaintenance"), vec![default_key.clone()]);

    // Another key of the same account: no drain, nothing exits.
    w.spec.common = credentials("a2");
    let report = run(&sides, &sink, &w, Stage::Apply).await;
    sink.onto(&mut w);
    assert!(
        matches!(report.settled, Settled::Planned { .. }),
        "{:?}",
        report.settled
    );
    assert_eq!(signed_by(&sides, "SetDesktopMaintenance").len(), 1);
    assert_eq!(in_maintenance(&sides).len(), 2);

    // Another account: the old record is exited with the key that entered it, first.
    w.spec.common = credentials("b");
    let report = run(&sides, &sink, &w, Stage::Apply).await;
    sink.onto(&mut w);
    assert_eq!(report.settled, Settled::Draining { remaining: 0 });
    assert!(report.notes.iter().any(|n| n.reason == "CredentialsChanged"));
    assert_eq!(
        next_step(Stage::Apply, &report.settled, RESYNC).requeue,
        Requeue::After(STALE_RETRY)
    );
    let signers = signed_by(&sides, "SetDesktopMaintenance");
    assert_eq!(signers.len(), 2);
    assert_ne!(signers[1], "LTAIotheraccount01", "exited with the old account's key");
    assert!(in_maintenance(&sides).is_empty());

    // Then the new account takes over.
    let report = run(&sides, &sink, &w, Stage::Apply).await;
    assert!(
        matches!(report.settled, Settled::Planned { .. }),
        "{:?}",
        report.settled
    );
    assert_eq!(signed_by(&sides, "SetDesktopMaintenance")[2], "LTAIotheraccount01");
    assert_eq!(in_maintenance(&sides).len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_object_sends_nothing_and_comes_back_soon() {
    let sides = scene().await;
    let mut s = image("a");
    let stale = Memory {
        stale: true,
        ..Default::default()
    };
    // m-hz0003 is not shared in the default dataset: a Share is due, and its intent is
    // refused by the precondition before it is sent.
    let report = run(&sides, &stale, &s, Stage::Apply).await;
    assert_eq!(report.settled, Settled::StaleObject);
    assert_eq!(sides.emu.world().counters().count("ModifyImageShareStatus"), 0);
    assert_eq!(
        next_step(Stage::Apply, &report.settled, RESYNC).requeue,
        Requeue::After(STALE_RETRY)
    );
    let fresh = Memory::default();
    run(&sides, &fresh, &s, Stage::Apply).await;
    fresh.onto(&mut s);
    assert_eq!(sides.emu.world().counters().count("ModifyImageShareStatus"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_is_recorded_on_the_object_and_backed_off() {
    let sink = Memory::default();
    let report = report_panic(&image("a"), "index out of bounds", &sink, RESYNC).await;
    assert_eq!(report.settled, Settled::Panicked);
    assert_eq!(sink.ready_reason(), "ReconcilePanicked");
    assert!(report.message.contains("index out of bounds"));
    let next = next_step(Stage::Apply, &report.settled, RESYNC);
    assert_eq!((next.requeue, next.warn), (Requeue::Backoff, true));
    assert_eq!(report.error_label(), Some("ReconcilePanicked"));
}

/// A resync interval out of bounds (stored before the CRD's rule, or written around it) is
/// the terminal `InvalidSpec` naming the field, never a silent fallback to the default; a
/// deletion is not held up by it.
#[tokio::test(flavor = "multi_thread")]
async fn a_resync_interval_out_of_bounds_is_invalid_not_replaced() {
    let sides = scene().await;
    let sink = Memory::default();
    let mut s = image("a");
    s.spec.common.resync_interval = Some("5s".into());
    let report = run(&sides, &sink, &s, Stage::Apply).await;
    assert_eq!(sink.ready_reason(), "InvalidSpec");
    assert!(report.message.contains("spec.resyncInterval"), "{}", report.message);
    assert_eq!(sides.emu.world().counters().total, 0, "nothing read or written");
    assert_eq!(
        next_step(Stage::Apply, &report.settled, RESYNC).requeue,
        Requeue::OnChange
    );
    let report = run(&sides, &sink, &s, Stage::Cleanup).await;
    assert!(
        next_step(Stage::Cleanup, &report.settled, RESYNC).release_finalizer,
        "{:?}",
        report.settled
    );
}

/// A resource whose image is on a page the shared list has not read yet does not hold its
/// worker: it writes nothing, ends `NotListedYet` (comes back at the resync at the latest), and
/// the page that holds its image recalls it; back, it is InSync from the same list.
#[tokio::test(flavor = "multi_thread")]
async fn a_resource_whose_page_has_not_come_writes_nothing_and_is_recalled_by_it() {
    let mut sides = scene().await;
    // Lists live as long as a resync, as in the controller.
    sides.snapshots = Arc::new(SnapshotCache::new(RESYNC));
    let recalls = Arc::new(AtomicUsize::new(0));
    sides.recalls = Some(recalls.clone());
    sides.emu.world().update_state(|st| {
        let images = &mut st.swas.get_mut("cn-hangzhou").unwrap().custom_images;
        images.extend((0..150).map(|i| CustomImage {
            image_id: format!("m-hzpaged{i:04}"),
            name: format!("paged-{i}"),
            status: "1".into(),
            in_share: true,
            region_id: "cn-hangzhou".into(),
            ..Default::default()
        }));
    });
    // Each page of 100 images takes 2 s to come.
    let slow: Fault =
        serde_json::from_value(serde_json::json!({"action": "ListCustomImages", "latencyMs": 2000})).unwrap();
    sides.emu.world().add_fault(slow).unwrap();
    let share = |name: &str, id: &str| {
        let mut s = image("a");
        s.meta_mut().name = Some(name.into());
        s.spec.image_id = id.into();
        s
    };
    // The first reader starts the list and waits for its first page, which holds its image.
    let early = Memory::default();
    let report = run(&sides, &early, &share("early", "m-hzpaged0000"), Stage::Apply).await;
    assert_eq!(early.ready_reason(), "InSync", "{report:?}");

    let late = share("late", "m-hzpaged0149");
    let sink = Memory::default();
    let report = run(&sides, &sink, &late, Stage::Apply).await;
    assert_eq!(report.settled, Settled::NotListedYet, "{report:?}");
    assert!(
        sink.last.lock().unwrap().is_none(),
        "nothing written while the page is owed"
    );
    assert_eq!(
        next_step(Stage::Apply, &report.settled, RESYNC).requeue,
        Requeue::Resync,
        "the resync, in case the recall is lost"
    );
    assert_eq!(recalls.load(Ordering::SeqCst), 0, "recalled before its page came");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while recalls.load(Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the second page did not recall the resource within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(recalls.load(Ordering::SeqCst), 1, "recalled once");
    let report = run(&sides, &sink, &late, Stage::Apply).await;
    assert_eq!(sink.ready_reason(), "InSync", "{report:?}");
    assert_eq!(
        sides.emu.world().counters().count("ListCustomImages"),
        2,
        "one list of two pages answered both resources"
    );
}
