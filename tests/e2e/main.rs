//! End to end: the real kube-apiserver (project harness), the emulator, and the operator
//! binary running with exactly the RBAC the Helm chart installs. One test binary and one
//! apiserver for every story file below; each test has its own namespace, emulator and
//! operator (a [`Scene`]).

#[path = "../support/mod.rs"]
mod support;

use std::time::Duration;

use alicloud_ops_operator::api::{DesktopMaintenanceWindow, FotaTaskPolicy, ImageShare, OtaSchedule};
use alicloud_ops_operator::controller::registry;
use alicloud_ops_operator::emulator::Emulator;
use alicloud_ops_operator::emulator::faults::Fault;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::cluster::*;
use support::{ExtraKey, emulator, emulator_with_keys, under_project_policy, with_emulator_key};

const WAIT: Duration = Duration::from_secs(60);

/// What the helpers ask of a kind: one of ours, or any namespaced Kubernetes object.
trait Kind:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + serde::Serialize
    + std::fmt::Debug
{
}

impl<K> Kind for K where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
{
}

/// The secret of the emulator's default access key.
const KEY_SECRET: &str = alicloud_ops_operator::emulator::DEFAULT_ACCESS_KEY_SECRET;

/// Where most stories start: the apiserver's admin client, a namespace of their own, and an
/// emulator of the default dataset.
struct Scene {
    client: Client,
    ns: String,
    emu: Emulator,
}

impl Scene {
    async fn new(name: &str) -> Self {
        let client = admin().await;
        let ns = namespace(&client, name).await;
        let emu = emulator().await;
        // The operator's key may do what deploy/ram/operator.json allows, and no more.
        under_project_policy(&emu, "operator.json");
        Scene { client, ns, emu }
    }
}

/// The operator for namespace `ns` against `emu`, with a Lease of its own.
fn operator(ns: &str, emu: &Emulator) -> Operator {
    operator_with(ns, emu, &[])
}

/// [`operator`] with more command-line arguments.
fn operator_with(ns: &str, emu: &Emulator, args: &[&str]) -> Operator {
    Operator::start_with(ns, &emu.url(), &format!("lease-{ns}"), args)
}

async fn create<K>(client: &Client, ns: &str, body: Value) -> K
where
    K: Kind,
{
    let obj: K = serde_json::from_value(body).unwrap();
    Api::<K>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap()
}

async fn patch_spec<K>(client: &Client, ns: &str, name: &str, spec: Value)
where
    K: Kind,
{
    Api::<K>::namespaced(client.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(json!({"spec": spec})))
        .await
        .unwrap();
}

/// The Ready condition's (status, reason) once the operator has seen the current generation.
async fn ready<K>(client: &Client, ns: &str, name: &str) -> Option<(String, String, Value)>
where
    K: Kind,
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
    K: Kind,
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

/// Every object `api` lists, as JSON text (for grepping for leaks).
async fn listed_json<K>(api: Api<K>) -> String
where
    K: Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let items = api.list(&Default::default()).await.unwrap().items;
    serde_json::to_string(&items).unwrap()
}

/// The objects of one of our kinds (named as in a manifest's `kind:`) in `ns`, untyped: the
/// kinds come from the operator's registry, not from a list of our own.
fn ours(client: &Client, ns: &str, kind: &str) -> Api<kube::api::DynamicObject> {
    let name = registry::names()
        .into_iter()
        .find(|n| n.kind == kind)
        .unwrap_or_else(|| panic!("{kind} is not a kind of ours"));
    let gvk = kube::api::GroupVersionKind::gvk(
        alicloud_ops_operator::api::GROUP,
        alicloud_ops_operator::api::VERSION,
        kind,
    );
    let resource = kube::api::ApiResource::from_gvk_with_plural(&gvk, &name.plural);
    Api::namespaced_with(client.clone(), ns, &resource)
}

/// `Kind/name reason: message` of every object of a kind in `ns` that is not Ready (for
/// the message of a timeout).
async fn not_ready_of(client: &Client, ns: &str, kind: &str) -> Vec<String> {
    let Ok(list) = ours(client, ns, kind).list(&Default::default()).await else {
        return vec![format!("{kind}: cannot list")];
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
                    "{kind}/{} {}: {}",
                    obj.name_any(),
                    c["reason"].as_str().unwrap_or(""),
                    c["message"].as_str().unwrap_or("")
                )),
                None => Some(format!("{kind}/{}: no Ready condition", obj.name_any())),
            }
        })
        .collect()
}

/// A ServiceAccount `name` in `ns` (created unless it exists) and a token for it, as a
/// TokenRequest (what the kubelet mounts into a pod) returns it: for the apiserver, or for
/// `audience`.
async fn service_account_token(client: &Client, ns: &str, name: &str, audience: Option<&str>) -> String {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let sas = Api::<ServiceAccount>::namespaced(client.clone(), ns);
    if sas.get_opt(name).await.unwrap().is_none() {
        let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        sas.create(&PostParams::default(), &sa).await.unwrap();
    }
    let req = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            audiences: audience.map(|a| vec![a.to_string()]),
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

fn fault(v: Value) -> Fault {
    serde_json::from_value(v).unwrap()
}

fn dmw(name: &str, ids: &[&str], end_in: chrono::Duration, credentials: Option<&str>) -> Value {
    let now = chrono::Utc::now();
    let mut spec = json!({"regionId": "cn-hangzhou", "desktopIds": ids,
        "window": {"start": (now - chrono::Duration::minutes(1)).to_rfc3339(), "end": (now + end_in).to_rfc3339()}});
    if let Some(c) = credentials {
        spec["credentialsRef"] = json!({"name": c});
    }
    json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "DesktopMaintenanceWindow", "metadata": {"name": name}, "spec": spec})
}

/// An OtaSchedule of delivery group `group` in cn-hangzhou, approving for `start`.
fn ota_schedule(name: &str, group: &str, start: chrono::DateTime<chrono::Utc>) -> Value {
    json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "OtaSchedule", "metadata": {"name": name},
           "spec": {"bizRegionId": "cn-hangzhou", "appInstanceGroupId": group, "startTime": start.to_rfc3339()}})
}

fn in_maintenance(emu: &alicloud_ops_operator::emulator::Emulator, id: &str) -> bool {
    emu.world().state().ecd["cn-hangzhou"]
        .desktops
        .iter()
        .any(|d| d.desktop_id == id && d.in_maintenance())
}

async fn gone<K>(client: &Client, ns: &str, name: &str, within: Duration)
where
    K: Kind,
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

mod chaos;
mod credentials;
mod doctor;
mod fota;
mod image;
mod image_share;
mod install;
mod maintenance;
mod observability;
mod ota;
mod plan;
mod records;
mod rollout;
