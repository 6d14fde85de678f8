//! `doctor`: before the first resource, what the operator will need, checked one line at a
//! time: the cloud side (the endpoint, the credentials as the operator resolves them, the
//! account they belong to, one read per product and region the cluster's resources name, and
//! the RAM action of every call the operator makes there) and the cluster side (the CRDs,
//! installed and current; the RBAC the operator's identity needs; the Lease).
//!
//! A write's permission is checked without writing: the call is sent for an object that does
//! not exist (`doctor-probe` ids). RAM decides before the product looks the object up, so the
//! answer is either a refusal by RAM (the permission is missing) or "not found" (it is there);
//! nothing exists to change. This relies on RAM answering first, which is how Alibaba Cloud
//! authorises calls (and how the emulator does).

use std::collections::BTreeMap;
use std::sync::Arc;

use clap::Args;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::PostParams;

use super::cloud_args::CloudArgs;
use super::kube_args::KubeArgs;
use crate::cloud::CloudClient;
use crate::cloud::endpoint::Product;
use crate::cloud::error::{CloudError, ErrorClass, classify};
use crate::cloud::ops::{appstream, ecd, sts, swas};
use crate::cloud::ram::{is_permission_denied, ram_action};
use crate::controller::kind::ManagedKind;
use crate::controller::registry::{self, EachKind};

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// The namespace the operator watches (as its ALICLOUD_OPS_NAMESPACE); every namespace
    /// without it.
    #[arg(long = "watch-namespace", env = "ALICLOUD_OPS_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// The Lease's namespace (default: POD_NAMESPACE, as in the operator's pod, else the
    /// chart's alicloud-ops-system).
    #[arg(long, env = "ALICLOUD_OPS_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// The Lease's name.
    #[arg(long, env = "ALICLOUD_OPS_LEASE_NAME", default_value = "alicloud-ops-operator")]
    pub lease_name: String,
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(flatten)]
    pub cloud: CloudArgs,
}

/// What doctor's requests to the apiserver carry as their User-Agent: it runs as the
/// operator's identity, and the audit log tells its probes from the operator's requests.
pub const USER_AGENT: &str = "alicloud-ops-operator-doctor";

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub ok: bool,
    /// What was checked: `credentials`, `ram ecd:UpdateFotaTask cn-hangzhou`, ...
    pub what: String,
    pub detail: String,
}

impl Check {
    fn ok(what: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            ok: true,
            what: what.into(),
            detail: detail.into(),
        }
    }
    fn fail(what: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            ok: false,
            what: what.into(),
            detail: detail.into(),
        }
    }
}

/// The report: one line per check, `ok` or `FAIL`, then a summary line.
pub fn render(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.what.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in checks {
        let mark = if c.ok { "ok  " } else { "FAIL" };
        out.push_str(&format!("{mark}  {:width$}  {}\n", c.what, c.detail));
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    match failed {
        0 => out.push_str("all checks passed\n"),
        n => out.push_str(&format!("{n} of {} checks failed\n", checks.len())),
    }
    out
}

/// Exit code: 0 when every check passed, 1 otherwise.
pub fn exit_code(checks: &[Check]) -> i32 {
    i32::from(checks.iter().any(|c| !c.ok))
}

pub async fn run(args: &DoctorArgs) -> Vec<Check> {
    let mut checks = Vec::new();
    let client = match args.cloud.client(Arc::default()) {
        Ok(c) => c,
        Err(e) => {
            checks.push(Check::fail("cloud configuration", e));
            return checks;
        }
    };
    checks.push(endpoint_check(args));
    let cloud_ready = credentials_checks(&client, &mut checks).await;
    let targets = cluster_checks(args, &mut checks).await.unwrap_or_default();
    if !cloud_ready {
        return checks;
    }
    if targets.is_empty() {
        checks.push(Check::ok(
            "resources",
            "none yet: no product or region to read (the credentials and account are checked above)",
        ));
    }
    for ((product, region), count) in &targets {
        checks.push(Check::ok(
            format!("resources {} {region}", product.code()),
            format!("{count} resource(s) of the cluster use it"),
        ));
        for probe in probes(*product) {
            checks.push(run_probe(&client, *product, region, probe).await);
        }
    }
    checks
}

fn endpoint_check(args: &DoctorArgs) -> Check {
    let c = &args.cloud;
    let custom: Vec<&str> = [
        &c.endpoint,
        &c.endpoint_ecd,
        &c.endpoint_swas_open,
        &c.endpoint_appstream_center,
        &c.endpoint_sts,
    ]
    .into_iter()
    .filter_map(|e| e.as_deref())
    .collect();
    match c.endpoints() {
        Err(e) => Check::fail("endpoint", e),
        Ok(_) if custom.is_empty() => Check::ok("endpoint", "Alibaba Cloud (<product>.<region>.aliyuncs.com)"),
        Ok(_) => Check::ok(
            "endpoint",
            format!("{} (a custom endpoint, not Alibaba Cloud's)", custom.join(", ")),
        ),
    }
}

/// The credentials and the account; false when the cloud cannot be asked anything more.
async fn credentials_checks(client: &CloudClient, checks: &mut Vec<Check>) -> bool {
    let provider = client.credentials();
    if let Err(e) = provider.get().await {
        checks.push(Check::fail("credentials", format!("{}: {e}", provider.describe())));
        return false;
    }
    checks.push(Check::ok("credentials", provider.describe()));
    match sts::get_caller_identity(client).await {
        Ok(id) => {
            checks.push(Check::ok(
                "account",
                format!("{} ({} {})", id.account_id, id.identity_type, id.arn),
            ));
            true
        }
        Err(e) => {
            checks.push(Check::fail("account", format!("STS GetCallerIdentity: {e}")));
            false
        }
    }
}

/// The CRDs, the RBAC and the Lease; the (product, region) pairs of the resources in scope, or
/// `None` when the cluster cannot be read.
async fn cluster_checks(args: &DoctorArgs, checks: &mut Vec<Check>) -> Option<BTreeMap<(Product, String), usize>> {
    let connected = match args.kube.connect_with_user_agent(Some(USER_AGENT)).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            checks.push(Check::fail(
                "cluster",
                "no kubeconfig (KUBECONFIG, ~/.kube/config) and not in a pod",
            ));
            return None;
        }
        Err(e) => {
            checks.push(Check::fail("cluster", e));
            return None;
        }
    };
    checks.push(Check::ok("cluster", connected.server.clone()));
    let client = connected.client;
    crd_checks(&client, checks).await;
    let watch = args.watch_namespace.as_deref();
    let lease_ns = args
        .lease_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "alicloud-ops-system".into());
    for access in needed_access(watch, &lease_ns) {
        checks.push(access_check(&client, &access).await);
    }
    checks.push(lease_check(&client, &lease_ns, &args.lease_name).await);
    let targets = resource_targets(&client, watch).await;
    match targets {
        Ok(t) => Some(t),
        Err(e) => {
            checks.push(Check::fail("resources", e));
            None
        }
    }
}

async fn crd_checks(client: &kube::Client, checks: &mut Vec<Check>) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    // What the apiserver serves, which every authenticated identity may read: the fallback
    // when this identity may not read CRDs (the operator's own need not).
    let served = client
        .list_api_group_resources(&format!("{}/{}", crate::api::GROUP, crate::api::VERSION))
        .await
        .map(|list| list.resources.into_iter().map(|r| r.name).collect::<Vec<_>>());
    for (ours, kind) in registry::crds().into_iter().zip(registry::names()) {
        let name = ours.metadata.name.clone().unwrap_or_default();
        let what = format!("crd {name}");
        let is_served = served.as_ref().is_ok_and(|s| s.contains(&kind.plural));
        match crds.get_opt(&name).await {
            Ok(Some(installed)) => {
                let schemas = |crd: &CustomResourceDefinition| -> Vec<(String, serde_json::Value)> {
                    crd.spec
                        .versions
                        .iter()
                        .map(|v| (v.name.clone(), serde_json::to_value(&v.schema).unwrap_or_default()))
                        .collect()
                };
                if schemas(&installed) == schemas(&ours) {
                    checks.push(Check::ok(what, "installed and current"));
                } else {
                    checks.push(Check::fail(
                        what,
                        "installed, but not this version's schema: apply crds/ (or upgrade the chart)",
                    ));
                }
            }
            Ok(None) => checks.push(Check::fail(
                what,
                "not installed: kubectl apply -f crds/ (or install the chart)",
            )),
            Err(_) if is_served => checks.push(Check::ok(
                what,
                "served (API discovery); this identity may not read CRDs, so whether it is current is not \
                 checked (run doctor as a cluster admin for that)",
            )),
            Err(e) => checks.push(Check::fail(what, format!("not served, and CRDs cannot be read: {e}"))),
        }
    }
}

/// One permission the operator needs.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Access {
    verb: &'static str,
    group: &'static str,
    resource: String,
    subresource: Option<&'static str>,
    namespace: Option<String>,
}

/// What the operator's identity must be allowed (the chart's RBAC, derived from the registry).
fn needed_access(watch: Option<&str>, lease_ns: &str) -> Vec<Access> {
    let ns = watch.map(String::from);
    let access = |verb, group, resource: &str, subresource, namespace: &Option<String>| Access {
        verb,
        group,
        resource: resource.to_string(),
        subresource,
        namespace: namespace.clone(),
    };
    let mut out = Vec::new();
    for kind in registry::names() {
        for verb in ["get", "list", "watch", "patch"] {
            out.push(access(verb, crate::api::GROUP, &kind.plural, None, &ns));
        }
        for verb in ["get", "patch"] {
            out.push(access(verb, crate::api::GROUP, &kind.plural, Some("status"), &ns));
        }
    }
    for verb in ["get", "list", "watch"] {
        out.push(access(verb, "", "secrets", None, &ns));
    }
    for verb in ["create", "patch"] {
        out.push(access(verb, "events.k8s.io", "events", None, &ns));
    }
    let lease = Some(lease_ns.to_string());
    for verb in ["get", "create", "update", "patch"] {
        out.push(access(verb, "coordination.k8s.io", "leases", None, &lease));
    }
    // /metrics answers only tokens that Kubernetes authenticates and authorises.
    out.push(access("create", "authentication.k8s.io", "tokenreviews", None, &None));
    out.push(access(
        "create",
        "authorization.k8s.io",
        "subjectaccessreviews",
        None,
        &None,
    ));
    out
}

async fn access_check(client: &kube::Client, a: &Access) -> Check {
    let resource = match a.subresource {
        Some(sub) => format!("{}/{sub}", a.resource),
        None => a.resource.clone(),
    };
    let group = if a.group.is_empty() {
        String::new()
    } else {
        format!(".{}", a.group)
    };
    let scope = a
        .namespace
        .as_deref()
        .map_or("every namespace".to_string(), |n| format!("namespace {n}"));
    let what = format!("rbac {} {resource}{group}", a.verb);
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(a.verb.into()),
                group: Some(a.group.into()),
                resource: Some(a.resource.clone()),
                subresource: a.subresource.map(String::from),
                namespace: a.namespace.clone(),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    match Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
    {
        Ok(r) if r.status.as_ref().is_some_and(|s| s.allowed) => Check::ok(what, format!("allowed in {scope}")),
        Ok(_) => Check::fail(what, format!("not allowed in {scope}: the chart's RBAC grants it")),
        Err(e) => Check::fail(what, format!("SelfSubjectAccessReview: {e}")),
    }
}

async fn lease_check(client: &kube::Client, ns: &str, name: &str) -> Check {
    let what = format!("lease {ns}/{name}");
    match Api::<Lease>::namespaced(client.clone(), ns).get_opt(name).await {
        Ok(Some(lease)) => {
            let spec = lease.spec.unwrap_or_default();
            match spec.holder_identity.filter(|h| !h.is_empty()) {
                Some(holder) => {
                    let renewed = spec
                        .renew_time
                        .map(|t| t.0.to_string())
                        .unwrap_or_else(|| "never".into());
                    Check::ok(what, format!("held by {holder}, last renewed {renewed}"))
                }
                None => Check::ok(what, "free: the first replica to start takes it"),
            }
        }
        Ok(None) => Check::ok(what, "not created yet: the first replica creates it"),
        Err(e) => Check::fail(what, format!("cannot read it: {e}")),
    }
}

/// (product, region) → how many resources in scope use it.
async fn resource_targets(
    client: &kube::Client,
    watch: Option<&str>,
) -> Result<BTreeMap<(Product, String), usize>, String> {
    struct Targets {
        client: kube::Client,
        watch: Option<String>,
    }
    impl EachKind for Targets {
        type Output = futures::future::BoxFuture<'static, Result<Vec<(Product, String)>, String>>;
        fn visit<K: ManagedKind>(&mut self) -> Self::Output {
            let api: Api<K> = match &self.watch {
                Some(ns) => Api::namespaced(self.client.clone(), ns),
                None => Api::all(self.client.clone()),
            };
            Box::pin(async move {
                let list = api
                    .list(&Default::default())
                    .await
                    .map_err(|e| format!("cannot list {}: {e}", K::KIND))?;
                Ok(list
                    .items
                    .iter()
                    .map(|o| (o.cloud_product(), o.region().to_string()))
                    .collect())
            })
        }
    }
    let lists = registry::each_kind(&mut Targets {
        client: client.clone(),
        watch: watch.map(String::from),
    });
    let mut out = BTreeMap::new();
    for list in futures::future::join_all(lists).await {
        for target in list? {
            *out.entry(target).or_insert(0) += 1;
        }
    }
    Ok(out)
}

/// The calls the operator makes to one product, each with arguments naming objects that do not
/// exist: a read is a read, and a write finds nothing to change.
fn probes(product: Product) -> &'static [&'static str] {
    match product {
        Product::Ecd => &[
            "DescribeDesktops",
            "DescribeFotaTasks",
            "DescribeDesktopSessions",
            "DescribeDesktopInfo",
            "UpdateFotaTask",
            "SetDesktopMaintenance",
            "TagResources",
            "UntagResources",
            "DisconnectDesktopSessions",
            "SendConsoleMessage",
            "ApproveFotaUpdate",
        ],
        Product::SwasOpen => &["ListCustomImages", "ModifyImageShareStatus"],
        Product::AppstreamCenter => &["ListAppInstanceGroup", "ListOtaTask", "ApproveOtaTask"],
        Product::Sts => &[],
    }
}

/// Ids that name nothing, in each product's shape.
const NO_DESKTOP: &str = "ecd-doctorprobe00000";
const NO_TASK: &str = "doctor-probe-task";
const NO_IMAGE: &str = "m-doctorprobe00000";
const NO_GROUP: &str = "aig-doctorprobe00000";
const NO_MESSAGE: &str = "doctor-probe-message";

/// Sends one probe: `Ok` if the cloud answered it without refusing the permission.
async fn send_probe(client: &CloudClient, region: &str, action: &str) -> Result<(), CloudError> {
    let desktops = [NO_DESKTOP.to_string()];
    match action {
        "DescribeDesktops" => {
            let filter = ecd::DesktopFilter {
                desktop_ids: desktops.to_vec(),
                office_site_id: None,
            };
            ecd::describe_desktops(client, region, &filter).await.map(drop)
        }
        "DescribeFotaTasks" => ecd::describe_fota_tasks(client, region, &[NO_TASK.into()])
            .await
            .map(drop),
        "DescribeDesktopSessions" => ecd::describe_connected_sessions(client, region, &desktops)
            .await
            .map(drop),
        "DescribeDesktopInfo" => ecd::describe_desktop_info(client, region, &desktops).await.map(drop),
        "UpdateFotaTask" => ecd::update_fota_task(client, region, NO_TASK, "Pending").await,
        "SetDesktopMaintenance" => {
            ecd::set_desktop_maintenance(client, region, ecd::MaintenanceMode::Exit, &desktops).await
        }
        "TagResources" => ecd::tag_desktops(client, region, &desktops, "doctor-probe", "none").await,
        "UntagResources" => ecd::untag_desktops(client, region, &desktops, "doctor-probe").await,
        "DisconnectDesktopSessions" => {
            let session = ecd::SessionRef {
                desktop_id: NO_DESKTOP.into(),
                end_user_id: "doctor-probe".into(),
            };
            ecd::disconnect_desktop_sessions(client, region, &[session])
                .await
                .map(drop)
        }
        "SendConsoleMessage" => ecd::send_console_message(client, region, NO_MESSAGE).await.map(drop),
        "ApproveFotaUpdate" => ecd::approve_fota_update(client, region, NO_DESKTOP, "0.0.0-doctor-probe").await,
        "ListCustomImages" => swas::list_custom_images(client, region, &[NO_IMAGE.into()])
            .await
            .map(drop),
        "ModifyImageShareStatus" => {
            let token = format!("doctor-probe-{}", uuid::Uuid::new_v4().simple());
            swas::modify_image_share_status(client, region, NO_IMAGE, swas::ShareOperation::UnShare, &token).await
        }
        "ListAppInstanceGroup" => appstream::list_app_instance_groups(client, region, Some(NO_GROUP))
            .await
            .map(drop),
        "ListOtaTask" => appstream::list_ota_tasks(client, region, NO_GROUP).await.map(drop),
        "ApproveOtaTask" => {
            let approval = appstream::ApproveOtaTask {
                app_instance_group_id: NO_GROUP.into(),
                biz_region_id: region.into(),
                task_id: NO_TASK.into(),
                ota_type: "Fota".into(),
                start_time: (chrono::Utc::now() + chrono::Duration::days(1))
                    .format("%Y-%m-%dT%H:%M:%SZ")
                    .to_string(),
            };
            appstream::approve_ota_task(client, &approval).await.map(drop)
        }
        other => Err(CloudError::InvalidRequest(format!("doctor has no probe for {other}"))),
    }
}

async fn run_probe(client: &CloudClient, product: Product, region: &str, action: &str) -> Check {
    let ram = ram_action(product, action).unwrap_or_else(|| action.to_string());
    let what = format!("ram {ram} {region}");
    let is_read = action.starts_with("Describe") || action.starts_with("List");
    let how = if is_read {
        format!("{action} answered")
    } else {
        format!("{action} allowed (sent for an object that does not exist: nothing was written)")
    };
    match send_probe(client, region, action).await {
        Ok(()) => Check::ok(what, how),
        Err(CloudError::Api(e)) if is_permission_denied(&e.code) => Check::fail(
            what,
            format!(
                "{action} refused by RAM ({}): add {ram} to the policy (deploy/ram/operator.json)",
                e.code
            ),
        ),
        // An answer about the object (not found, or its parameters) means RAM let it through.
        Err(CloudError::Api(e))
            if matches!(classify(&e.code, e.status), ErrorClass::NotFound | ErrorClass::Invalid) =>
        {
            Check::ok(what, format!("{how} ({})", e.code))
        }
        Err(e) => Check::fail(what, format!("{action} could not be checked: {e}")),
    }
}

/// The doctor's probe list covers every call the operator makes.
#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_call_the_operator_makes_is_probed_for_its_product() {
        let probed: BTreeSet<String> = Product::ALL
            .iter()
            .flat_map(|p| probes(*p).iter().map(|a| a.to_string()))
            .collect();
        let mut sent = BTreeSet::new();
        for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/cloud/ops")).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for part in text.split("RpcRequest::new(Product::").skip(1) {
                if !part.starts_with("Sts") {
                    sent.insert(part.split('"').nth(1).unwrap().to_string());
                }
            }
        }
        assert_eq!(probed, sent);
    }

    #[test]
    fn the_report_has_one_line_per_check_and_says_what_failed() {
        let checks = [
            Check::ok("credentials", "env"),
            Check::fail("ram ecd:UpdateFotaTask cn-hangzhou", "refused"),
        ];
        let text = render(&checks);
        assert!(text.starts_with("ok    credentials"), "{text}");
        assert!(
            text.contains("FAIL  ram ecd:UpdateFotaTask cn-hangzhou  refused"),
            "{text}"
        );
        assert!(text.ends_with("1 of 2 checks failed\n"), "{text}");
        assert_eq!(exit_code(&checks), 1);
        assert_eq!(exit_code(&checks[..1]), 0);
    }
}
