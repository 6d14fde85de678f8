//! `alicloud-ops-operator plan`: what the operator would do for these manifests, read from
//! the cloud, with nothing written. For pull-request previews in GitOps pipelines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use clap::Args;
use serde::Serialize;
use serde_json::Value;

use super::cloud_args::CloudArgs;
use crate::api;
use crate::api::common::CredentialsRef;
use crate::cloud::metrics::CloudMetrics;
use crate::cloud::snapshot::SnapshotCache;
use crate::cloud::{CloudClient, CredentialSource, Credentials};
use crate::controller::context::CredentialsError;
use crate::controller::kind::{ClaimsTargets, KindEnv, ManagedKind, Stage, account_key};
use crate::controller::registry::{self, EachKind};
use crate::controller::runner;

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Manifest files or directories (YAML or JSON, multi-document), as given to kubectl apply.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Output format: `table` (text), `json`, or `markdown` (a table GitHub and GitLab
    /// render, for a pull-request comment).
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Where the live objects are read from; `-n` is the namespace of documents that name none.
    #[command(flatten)]
    pub kube: super::kube_args::KubeArgs,
    /// Plan from the manifests alone, without reading the live objects. Predictions that
    /// depend on a live object's status, uid or age are then marked uncertain.
    #[arg(long)]
    pub offline: bool,
    #[command(flatten)]
    pub cloud: CloudArgs,
}

/// How `plan` prints its report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
    Markdown,
}

/// What the operator would do about one resource, in one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum PlanResult {
    /// The cloud matches the spec.
    InSync,
    /// The operator would write.
    Changes,
    /// ObserveOnly: the cloud differs, and the operator would only report it.
    Drift,
    /// `spec.suspend: true`.
    Suspended,
    /// The resource cannot be reconciled as it is (a reason that needs a person).
    Error,
}

impl PlanResult {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanResult::InSync => "InSync",
            PlanResult::Changes => "Changes",
            PlanResult::Drift => "Drift",
            PlanResult::Suspended => "Suspended",
            PlanResult::Error => "Error",
        }
    }
}

impl std::fmt::Display for PlanResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `plan` found for one resource.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlannedResource {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub source: String,
    pub result: PlanResult,
    pub reason: String,
    pub message: String,
    pub credentials: String,
    pub actions: Vec<String>,
    /// What the prediction could not know, when it was made without the live object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncertain: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct PlanReport {
    pub resources: Vec<PlannedResource>,
    /// Input problems: unreadable files, invalid documents (each names the field).
    pub errors: Vec<String>,
    /// Documents that are not this operator's, skipped.
    pub skipped: Vec<String>,
    /// Where the live objects were read from, or why they were not.
    pub cluster: String,
}

impl PlanReport {
    /// 0 in sync, 2 changes pending, 1 any error.
    pub fn exit_code(&self) -> i32 {
        if !self.errors.is_empty() || self.resources.iter().any(|r| r.result == PlanResult::Error) {
            1
        } else if self.resources.iter().any(|r| r.result == PlanResult::Changes) {
            2
        } else {
            0
        }
    }
}

struct Doc {
    source: String,
    value: Value,
}

fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "yaml" || x == "yml" || x == "json"))
                .collect();
            entries.sort();
            out.extend(entries);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(format!("{}: no such file or directory", p.display()));
        }
    }
    Ok(out)
}

fn read_docs(path: &Path, report: &mut PlanReport) -> Vec<Doc> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            report.errors.push(format!("{}: {e}", path.display()));
            return vec![];
        }
    };
    let mut docs = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let source = format!("{}#{}", path.display(), i + 1);
        match <serde_yaml::Value as serde::Deserialize>::deserialize(de) {
            Ok(serde_yaml::Value::Null) => {}
            Ok(v) => match serde_json::to_value(v) {
                Ok(value) => docs.push(Doc { source, value }),
                Err(e) => report.errors.push(format!("{source}: {e}")),
            },
            Err(e) => report.errors.push(format!("{source}: not valid YAML: {e}")),
        }
    }
    docs
}

fn meta<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.pointer(&format!("/metadata/{field}")).and_then(Value::as_str)
}

/// Secrets in the input, by (namespace, name), with their decoded keys.
fn secrets(docs: &[Doc]) -> BTreeMap<(String, String), BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for d in docs
        .iter()
        .filter(|d| d.value["kind"] == "Secret" && d.value["apiVersion"] == "v1")
    {
        let ns = meta(&d.value, "namespace").unwrap_or("default").to_string();
        let name = meta(&d.value, "name").unwrap_or("").to_string();
        let mut keys = BTreeMap::new();
        if let Some(data) = d.value.get("data").and_then(Value::as_object) {
            for (k, v) in data {
                if let Some(s) = v
                    .as_str()
                    .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                {
                    keys.insert(k.clone(), String::from_utf8_lossy(&s).into_owned());
                }
            }
        }
        if let Some(data) = d.value.get("stringData").and_then(Value::as_object) {
            for (k, v) in data {
                if let Some(s) = v.as_str() {
                    keys.insert(k.clone(), s.to_string());
                }
            }
        }
        out.insert((ns, name), keys);
    }
    out
}

/// Where the operator's view of a resource comes from: the live objects, or the manifests alone.
enum Cluster {
    /// A client, and the server's address for the output.
    Live(kube::Client, String),
    /// Why the live objects are not read.
    Offline(String),
}

impl Cluster {
    /// The kubeconfig the way kubectl finds it. No kubeconfig at all means offline; a
    /// kubeconfig that cannot be used is an error, since a plan from it would mislead.
    async fn connect(args: &PlanArgs) -> Result<Cluster, String> {
        if args.offline {
            return Ok(Cluster::Offline("--offline".into()));
        }
        match args.kube.connect().await {
            Ok(Some(c)) => Ok(Cluster::Live(c.client, c.server)),
            Ok(None) => Ok(Cluster::Offline("no kubeconfig found".into())),
            Err(e) => Err(format!("{e}; or plan with --offline")),
        }
    }

    fn describe(&self) -> String {
        match self {
            Cluster::Live(_, server) => format!("live objects read from {server}"),
            Cluster::Offline(why) => format!("live objects not read ({why})"),
        }
    }

    /// What a prediction cannot know without the live objects.
    fn uncertainty(&self) -> Option<String> {
        match self {
            Cluster::Live(..) => None,
            Cluster::Offline(why) => Some(format!(
                "the live object was not read ({why}): its status, uid and creation time are unknown, so a \
                 write it already made may be announced again"
            )),
        }
    }

    /// The input's resources of one kind as the operator will see them once applied (see
    /// [`applied`]), then every live one the input does not name: the resources the operator
    /// compares them with. One list per kind; the input's new resources share one creation
    /// time, so none of them is older than another.
    async fn resolve<K: ManagedKind>(&self, manifests: Vec<Arc<K>>) -> Result<Vec<Arc<K>>, String> {
        let Cluster::Live(client, _) = self else {
            return Ok(manifests);
        };
        let live = kube::Api::<K>::all(client.clone())
            .list(&Default::default())
            .await
            .map_err(|e| format!("listing {} in the cluster: {e}; or plan with --offline", K::KIND))?;
        let created = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
        let key = |k: &K| crate::controller::kind::full_name(k.meta());
        let mut out = Vec::new();
        for m in &manifests {
            let same = live.items.iter().find(|l| key(l) == key(m)).cloned();
            out.push(Arc::new(applied(m.as_ref().clone(), same, &created)?));
        }
        out.extend(
            live.items
                .into_iter()
                .filter(|l| !manifests.iter().any(|m| key(m) == key(l)))
                .map(Arc::new),
        );
        Ok(out)
    }
}

/// `manifest` as the apiserver will hold it once applied over `live`: the live object's uid,
/// creation time and status, with the manifest's spec, labels and annotations (the generation
/// moves on when the spec changes). A resource not in the cluster yet is created at `created`.
fn applied<K: ManagedKind>(
    manifest: K,
    live: Option<K>,
    created: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> Result<K, String> {
    let Some(live) = live else {
        let mut new = manifest;
        let meta = new.meta_mut();
        meta.creation_timestamp = Some(created.clone());
        meta.generation = Some(1);
        return Ok(new);
    };
    let json = |k: &K| serde_json::to_value(k).map_err(|e| e.to_string());
    let (wanted, mut merged) = (json(&manifest)?, json(&live)?);
    if wanted["spec"] != merged["spec"] {
        merged["spec"] = wanted["spec"].clone();
        merged["metadata"]["generation"] = (live.meta().generation.unwrap_or(0) + 1).into();
    }
    for field in ["labels", "annotations"] {
        if let Some(given) = wanted["metadata"][field].as_object() {
            let held = &mut merged["metadata"][field];
            if !held.is_object() {
                *held = Value::Object(Default::default());
            }
            for (k, v) in given {
                held[k] = v.clone();
            }
        }
    }
    serde_json::from_value(merged)
        .map_err(|e| format!("{} {}: {e}", K::KIND, crate::controller::kind::full_name(live.meta())))
}

struct Planner {
    default_client: CloudClient,
    secrets: BTreeMap<(String, String), BTreeMap<String, String>>,
    snapshots: Arc<SnapshotCache>,
    resync: Duration,
    /// The input's resources (with the live objects) of the kinds that approve OTA updates
    /// of delivery groups, for conflicts between kinds, as the operator compares them.
    claimants: Vec<Arc<dyn ClaimsTargets>>,
}

/// The input's resources of the kinds that approve OTA updates of delivery groups.
struct Claimants<'a> {
    cluster: &'a Cluster,
    docs: &'a [&'a Doc],
}

impl<'a> EachKind for Claimants<'a> {
    type Output = futures::future::BoxFuture<'a, Result<Vec<Arc<dyn ClaimsTargets>>, String>>;
    fn visit<K: ManagedKind>(&mut self) -> Self::Output {
        let Claimants { cluster, docs } = *self;
        Box::pin(async move {
            if !K::CLAIMS_TARGETS {
                return Ok(Vec::new());
            }
            let resolved = cluster.resolve(typed::<K>(docs)).await?;
            Ok(resolved.into_iter().map(|o| o as Arc<dyn ClaimsTargets>).collect())
        })
    }
}

impl Planner {
    fn env_with(&self, cloud: CloudClient, account: String) -> KindEnv {
        KindEnv::new(cloud, account, self.snapshots.clone())
    }

    /// Plans one document of kind `K`. `resolved` is the kind's [`Cluster::resolve`]; the
    /// operator compares a resource with `peers`.
    async fn plan_one<K: ManagedKind>(
        &self,
        doc: &Doc,
        uncertain: Option<String>,
        resolved: &[Arc<K>],
        peers: &[Arc<K>],
    ) -> Result<PlannedResource, String> {
        let manifest: K = serde_json::from_value(doc.value.clone()).map_err(|e| format!("{}: {e}", doc.source))?;
        let key = crate::controller::kind::full_name(manifest.meta());
        let obj = resolved
            .iter()
            .find(|r| crate::controller::kind::full_name(r.meta()) == key)
            .map_or(manifest, |r| r.as_ref().clone());
        let namespace = obj.meta().namespace.clone().unwrap_or_default();
        let name = obj.meta().name.clone().unwrap_or_default();
        let mut planned = PlannedResource {
            kind: K::KIND.to_string(),
            namespace: namespace.clone(),
            name,
            source: doc.source.clone(),
            result: PlanResult::InSync,
            reason: String::new(),
            message: String::new(),
            credentials: String::new(),
            actions: vec![],
            uncertain,
        };
        // The operator's own gates, with the Secrets of the input.
        let (mut env, stage, resync) = match runner::gates(&obj, Stage::Apply, self, self.resync).await {
            runner::Gate::Open {
                env,
                origin,
                draining,
                resync,
            } => {
                planned.credentials = origin;
                (env, if draining { Stage::Cleanup } else { Stage::Apply }, resync)
            }
            runner::Gate::InvalidSpec { message } => {
                planned.result = PlanResult::Error;
                planned.reason = "InvalidSpec".into();
                planned.message = message;
                return Ok(planned);
            }
            runner::Gate::Suspended => {
                planned.result = PlanResult::Suspended;
                planned.reason = "Suspended".into();
                planned.message = "spec.suspend is true: the operator would not read or write the cloud".into();
                return Ok(planned);
            }
            runner::Gate::NoCredentials { error, .. } => {
                planned.result = PlanResult::Error;
                planned.reason = "CredentialsInvalid".into();
                planned.message = error.to_string();
                return Ok(planned);
            }
            runner::Gate::CleanupSkipped { message } => {
                planned.result = PlanResult::InSync;
                planned.message = message;
                return Ok(planned);
            }
        };
        let ctx = runner::plan_context(&obj, resync);
        if K::CLAIMS_TARGETS {
            env.rivals = Arc::new(runner::rivals::<K, _>(self).await);
        }
        if K::PEERS_BY_ACCOUNT {
            env.peer_accounts = Arc::new(runner::peer_accounts(&obj, peers, self).await);
        }
        match runner::decide(&obj, &env, peers, &ctx, stage, false).await {
            Ok(outcome) => {
                // A reason that needs a person is an error in the plan: the pull request
                // should not merge as it is.
                planned.result = if outcome.verdict.reason.needs_attention() {
                    PlanResult::Error
                } else if !outcome.actions.is_empty() {
                    PlanResult::Changes
                } else if outcome.has_drift() {
                    PlanResult::Drift
                } else {
                    PlanResult::InSync
                };
                planned.reason = outcome.verdict.reason.as_str().into();
                planned.message = outcome.verdict.message.clone();
                if outcome.verdict.reason == crate::reconcile::Reason::Conflict && obj.meta().uid.is_none() {
                    planned.message.push_str(
                        " (not in the cluster yet, so creation times are unknown: the plan decides by \
                         namespace/name; the operator decides by age)",
                    );
                }
                let uid_known = obj.meta().uid.is_some();
                planned.actions = outcome
                    .actions
                    .iter()
                    .map(|a| K::describe_planned(a, uid_known))
                    .collect();
            }
            Err(e) => {
                let v = runner::error_verdict(&e);
                planned.result = PlanResult::Error;
                planned.reason = v.reason.as_str().into();
                planned.message = v.message;
            }
        }
        Ok(planned)
    }
}

/// Plans the input's documents of one kind, each with its place in the input.
struct PlanKind<'a> {
    planner: &'a Planner,
    cluster: &'a Cluster,
    docs: &'a [&'a Doc],
    uncertain: &'a Option<String>,
}

impl<'a> EachKind for PlanKind<'a> {
    type Output = futures::future::BoxFuture<'a, Result<Vec<(usize, Result<PlannedResource, String>)>, String>>;
    fn visit<K: ManagedKind>(&mut self) -> Self::Output {
        let PlanKind {
            planner,
            cluster,
            docs,
            uncertain,
        } = *self;
        Box::pin(async move {
            let resolved = cluster.resolve(typed::<K>(docs)).await?;
            // The peers the operator's cache would give the kind, if it reads them.
            let peers: &[Arc<K>] = if K::READS_PEERS { &resolved } else { &[] };
            let mut out = Vec::new();
            for (i, d) in docs.iter().enumerate().filter(|(_, d)| d.value["kind"] == K::KIND) {
                out.push((i, planner.plan_one(d, uncertain.clone(), &resolved, peers).await));
            }
            Ok(out)
        })
    }
}

impl runner::CloudSides for Planner {
    fn claimants(&self, kind: &str) -> Vec<Arc<dyn ClaimsTargets>> {
        self.claimants.iter().filter(|c| c.kind() != kind).cloned().collect()
    }

    /// The cloud side of a resource: its Secret from the input, else the default chain,
    /// keyed by cloud account as the operator keys it. The second value says which, for the
    /// output.
    async fn env_for(
        &self,
        namespace: &str,
        credentials_ref: Option<&CredentialsRef>,
    ) -> Result<(KindEnv, String), CredentialsError> {
        let default_chain = self.default_client.credentials().describe();
        let default_env = || async {
            let account = account_key(&self.default_client, "default".into()).await;
            self.env_with(self.default_client.clone(), account)
        };
        let Some(r) = credentials_ref else {
            return Ok((default_env().await, format!("default chain: {default_chain}")));
        };
        let Some(keys) = self.secrets.get(&(namespace.to_string(), r.name.clone())) else {
            let desc = format!(
                "Secret {namespace}/{} is not in the input; default chain: {default_chain}",
                r.name
            );
            return Ok((default_env().await, desc));
        };
        let key = |name: &'static str| {
            keys.get(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| CredentialsError::MissingKey(format!("{namespace}/{}", r.name), name))
        };
        let (id, secret) = (key("accessKeyId")?, key("accessKeySecret")?);
        let origin = format!("Secret {namespace}/{} from the input", r.name);
        let creds = Credentials::new(id.clone(), secret.clone(), keys.get("securityToken").cloned(), None);
        let fallback = creds.account_key();
        let client = self.default_client.with_credentials(CredentialSource::Static {
            credentials: creds,
            origin: origin.clone(),
        });
        let account = account_key(&client, fallback).await;
        Ok((self.env_with(client, account), format!("{origin} (AccessKeyId {id})")))
    }
}

fn typed<K: ManagedKind>(docs: &[&Doc]) -> Vec<Arc<K>> {
    docs.iter()
        .filter(|d| d.value["kind"] == K::KIND)
        .filter_map(|d| serde_json::from_value::<K>(d.value.clone()).ok())
        .map(Arc::new)
        .collect()
}

/// Reads, validates and plans. Never writes to the cloud.
pub async fn run(args: &PlanArgs) -> Result<PlanReport, String> {
    let mut report = PlanReport::default();
    let files = collect_files(&args.files)?;
    let mut docs = Vec::new();
    for f in &files {
        docs.extend(read_docs(f, &mut report));
    }
    // As kubectl apply -n: documents that name no namespace go to this one.
    let namespace = args.kube.namespace.clone().unwrap_or_else(|| "default".to_string());
    for d in &mut docs {
        if let Some(m) = d.value.get_mut("metadata").and_then(Value::as_object_mut) {
            m.entry("namespace").or_insert_with(|| Value::String(namespace.clone()));
        }
    }
    let group_version = format!("{}/{}", api::GROUP, api::VERSION);
    let mut ours: Vec<&Doc> = Vec::new();
    for d in &docs {
        let kind = d.value["kind"].as_str().unwrap_or("");
        let api_version = d.value["apiVersion"].as_str().unwrap_or("");
        if api_version.starts_with(&format!("{}/", api::GROUP)) {
            if api_version != group_version {
                report.errors.push(format!(
                    "{}: apiVersion: {api_version:?} is not served; use {group_version}",
                    d.source
                ));
            } else if let Some(crd) = registry::crd_of(kind) {
                match api::validate::validate(&crd, &d.value) {
                    Ok(()) => ours.push(d),
                    Err(errs) => {
                        let name = meta(&d.value, "name").unwrap_or("?");
                        for e in errs {
                            report.errors.push(format!("{}: {kind} {name}: {e}", d.source));
                        }
                    }
                }
            } else {
                report.errors.push(format!(
                    "{}: kind: {kind:?} is not a kind of {group_version}; expected {}",
                    d.source,
                    registry::listed()
                ));
            }
        } else if !(kind == "Secret" && api_version == "v1") {
            let name = meta(&d.value, "name").unwrap_or("?");
            report.skipped.push(format!(
                "{}: {api_version} {kind} {name} is not an operator resource; skipped",
                d.source
            ));
        }
    }
    let cluster = Cluster::connect(args).await?;
    report.cluster = cluster.describe();
    let claimants = futures::future::try_join_all(registry::each_kind(&mut Claimants {
        cluster: &cluster,
        docs: &ours,
    }))
    .await?
    .into_iter()
    .flatten()
    .collect();
    let planner = Planner {
        default_client: args.cloud.client(Arc::new(CloudMetrics::default()))?,
        secrets: secrets(&docs),
        snapshots: Arc::new(SnapshotCache::new(Duration::from_secs(60))),
        resync: Duration::from_secs(600),
        claimants,
    };
    let uncertain = cluster.uncertainty();
    let by_kind = registry::each_kind(&mut PlanKind {
        planner: &planner,
        cluster: &cluster,
        docs: &ours,
        uncertain: &uncertain,
    });
    // In input order, whatever the kind.
    let mut planned: Vec<(usize, Result<PlannedResource, String>)> = Vec::new();
    for kind in futures::future::try_join_all(by_kind).await? {
        planned.extend(kind);
    }
    planned.sort_by_key(|(i, _)| *i);
    for (_, p) in planned {
        match p {
            Ok(p) => report.resources.push(p),
            Err(e) => report.errors.push(e),
        }
    }
    Ok(report)
}

/// A cell of a Markdown table: no line breaks, no column separators.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\r', '\n'], " ")
}

/// The plan as Markdown for a pull-request comment: stable (input order, no timestamps or
/// request ids), so the comment diffs cleanly when the manifests change.
pub fn render_markdown(report: &PlanReport) -> String {
    let count = |what: PlanResult| report.resources.iter().filter(|r| r.result == what).count();
    let mut out = format!(
        "### alicloud-ops-operator plan\n\n**{} in sync, {} with changes, {} drifted (ObserveOnly), {} suspended, {} errors**\n\n",
        count(PlanResult::InSync),
        count(PlanResult::Changes),
        count(PlanResult::Drift),
        count(PlanResult::Suspended),
        count(PlanResult::Error) + report.errors.len()
    );
    if !report.resources.is_empty() {
        out.push_str("| resource | result | reason | what the operator would do |\n|---|---|---|---|\n");
        for r in &report.resources {
            let mut actions = if r.actions.is_empty() {
                cell(&r.message)
            } else {
                r.actions
                    .iter()
                    .map(|a| format!("`{}`", cell(a)))
                    .collect::<Vec<_>>()
                    .join("<br>")
            };
            if let Some(u) = &r.uncertain {
                actions.push_str(&format!("<br>_uncertain: {}_", cell(u)));
            }
            out.push_str(&format!(
                "| {} `{}/{}` | {} | {} | {} |\n",
                r.kind,
                cell(&r.namespace),
                cell(&r.name),
                r.result,
                r.reason,
                actions
            ));
        }
    }
    if !report.cluster.is_empty() {
        out.push_str(&format!("\n- cluster: {}", cell(&report.cluster)));
    }
    for e in &report.errors {
        out.push_str(&format!("\n- error: {}", cell(e)));
    }
    for s in &report.skipped {
        out.push_str(&format!("\n- note: {}", cell(s)));
    }
    if !report.cluster.is_empty() || !report.errors.is_empty() || !report.skipped.is_empty() {
        out.push('\n');
    }
    out
}

pub fn render_table(report: &PlanReport) -> String {
    let mut out = String::new();
    for s in &report.skipped {
        out.push_str(&format!("note: {s}\n"));
    }
    for r in &report.resources {
        out.push_str(&format!(
            "{} {}/{}: {} ({}) {}\n",
            r.kind, r.namespace, r.name, r.result, r.reason, r.message
        ));
        if !r.credentials.is_empty() {
            out.push_str(&format!("  credentials: {}\n", r.credentials));
        }
        for a in &r.actions {
            out.push_str(&format!("  + {a}\n"));
        }
        if let Some(u) = &r.uncertain {
            out.push_str(&format!("  uncertain: {u}\n"));
        }
    }
    for e in &report.errors {
        out.push_str(&format!("error: {e}\n"));
    }
    let count = |what: PlanResult| report.resources.iter().filter(|r| r.result == what).count();
    if !report.cluster.is_empty() {
        out.push_str(&format!("Cluster: {}.\n", report.cluster));
    }
    out.push_str(&format!(
        "Plan: {} in sync, {} with changes, {} drifted (ObserveOnly), {} suspended, {} errors.\n",
        count(PlanResult::InSync),
        count(PlanResult::Changes),
        count(PlanResult::Drift),
        count(PlanResult::Suspended),
        count(PlanResult::Error) + report.errors.len()
    ));
    out
}
