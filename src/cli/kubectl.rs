//! `status` and `reconcile`: what `kubectl alicloud-ops` adds to kubectl when the binary is
//! installed as the plugin `kubectl-alicloud_ops`.

use clap::Args;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use super::kube_args::{Connected, KubeArgs};
use futures::future::BoxFuture;

use crate::controller::context::RECONCILE_REQUESTED_AT;
use crate::controller::kind::ManagedKind;
use crate::controller::registry::{self, EachKind};
use crate::reconcile::Reason;

/// The name kubectl runs the binary by, and the field manager of its writes.
pub const PLUGIN: &str = "kubectl-alicloud_ops";

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

#[derive(Args, Debug)]
pub struct ReconcileArgs {
    /// The resource, as `KIND/NAME` (the kind as in kubectl: `imageshare/app`,
    /// `ImageShare/app`, `imageshares/app`).
    pub resource: String,
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// One line of `status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusRow {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    /// `True`, `False`, or `Unknown` before the operator has looked.
    pub ready: String,
    pub reason: String,
    pub next: String,
    pub message: String,
}

fn api<K: ManagedKind>(c: &Connected, all: bool) -> Api<K> {
    if all {
        Api::all(c.client.clone())
    } else {
        Api::namespaced(c.client.clone(), &c.namespace)
    }
}

async fn rows<K: ManagedKind>(c: &Connected, all: bool) -> Result<Vec<StatusRow>, String> {
    let list = api::<K>(c, all)
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing {}: {e}", K::KIND))?;
    Ok(list
        .items
        .into_iter()
        .map(|obj| {
            let ready = obj
                .status()
                .cloned()
                .and_then(|mut s| K::common_status(&mut s).condition("Ready").cloned());
            let stale = ready.as_ref().and_then(|c| c.observed_generation) != obj.meta().generation;
            let (status, reason, message) = match ready {
                Some(c) => (c.status, c.reason, c.message),
                None => (
                    "Unknown".into(),
                    String::new(),
                    "the operator has not reconciled it yet".into(),
                ),
            };
            let next = if obj.meta().deletion_timestamp.is_some() {
                "deleting: undoes what it did in the cloud, then releases the finalizer".to_string()
            } else if stale {
                "reconciles the new generation".to_string()
            } else {
                Reason::parse(&reason).map_or_else(String::new, |r| r.next_step().to_string())
            };
            StatusRow {
                kind: K::KIND,
                namespace: obj.meta().namespace.clone().unwrap_or_default(),
                name: obj.meta().name.clone().unwrap_or_default(),
                ready: status,
                reason,
                next,
                message,
            }
        })
        .collect())
}

struct Rows<'a> {
    c: &'a Connected,
    all: bool,
}

impl<'a> EachKind for Rows<'a> {
    type Output = BoxFuture<'a, Result<Vec<StatusRow>, String>>;
    fn visit<K: ManagedKind>(&mut self) -> Self::Output {
        Box::pin(rows::<K>(self.c, self.all))
    }
}

/// Every resource of every kind, with its Ready reason and what the operator does next.
pub async fn status(args: &StatusArgs) -> Result<Vec<StatusRow>, String> {
    let c = args.kube.require().await?;
    let lists = registry::each_kind(&mut Rows {
        c: &c,
        all: args.all_namespaces,
    });
    let mut out = Vec::new();
    for rows in futures::future::try_join_all(lists).await? {
        out.extend(rows);
    }
    out.sort_by(|a, b| (&a.namespace, a.kind, &a.name).cmp(&(&b.namespace, b.kind, &b.name)));
    Ok(out)
}

/// `status` as an aligned table, as kubectl prints one.
pub fn render_status(rows: &[StatusRow], all_namespaces: bool) -> String {
    if rows.is_empty() {
        return "No resources found.\n".into();
    }
    let mut table: Vec<Vec<String>> = vec![];
    let header = ["NAMESPACE", "KIND", "NAME", "READY", "REASON", "NEXT", "MESSAGE"];
    let skip = usize::from(!all_namespaces);
    table.push(header[skip..].iter().map(|h| h.to_string()).collect());
    for r in rows {
        let cells = [
            r.namespace.clone(),
            r.kind.to_string(),
            r.name.clone(),
            r.ready.clone(),
            r.reason.clone(),
            r.next.clone(),
            r.message.replace('\n', " "),
        ];
        table.push(cells[skip..].to_vec());
    }
    let columns = table[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|i| table.iter().map(|row| row[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i + 1 == columns {
                    cell.clone()
                } else {
                    format!("{cell:<width$}", width = widths[i])
                }
            })
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

async fn request<K: ManagedKind>(c: &Connected, name: &str, at: &str) -> Result<(), String> {
    let patch = json!({"metadata": {"annotations": {RECONCILE_REQUESTED_AT: at}}});
    let params = PatchParams {
        field_manager: Some(PLUGIN.into()),
        ..Default::default()
    };
    Api::<K>::namespaced(c.client.clone(), &c.namespace)
        .patch(name, &params, &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| format!("{} {}/{name}: {e}", K::KIND, c.namespace))
}

/// Sets the reconcile-requested-at annotation: the operator reconciles the resource at once,
/// reading the cloud afresh. Returns the line to print.
pub async fn reconcile(args: &ReconcileArgs) -> Result<String, String> {
    let (kind, name) = args
        .resource
        .split_once('/')
        .filter(|(_, n)| !n.is_empty())
        .ok_or_else(|| format!("{:?}: expected KIND/NAME, e.g. imageshare/app-image", args.resource))?;
    let kind = registry::find(kind)
        .ok_or_else(|| {
            format!(
                "{kind:?} is not a kind of ops.alicloud.dev; expected {}",
                registry::listed()
            )
        })?
        .kind;
    let c = args.kube.require().await?;
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    struct Request<'a> {
        c: &'a Connected,
        name: &'a str,
        at: &'a str,
    }
    impl<'a> EachKind for Request<'a> {
        type Output = BoxFuture<'a, Result<(), String>>;
        fn visit<K: ManagedKind>(&mut self) -> Self::Output {
            Box::pin(request::<K>(self.c, self.name, self.at))
        }
    }
    registry::visit_kind(kind, &mut Request { c: &c, name, at: &at })
        .expect("a registered kind")
        .await?;
    Ok(format!("{kind}/{name} in {}: reconcile requested at {at}", c.namespace))
}

#[derive(Args, Debug)]
pub struct RolloutArgs {
    /// The UpdateRollout's name.
    pub name: String,
    /// `promote` only: the wave to promote. Default: the rollout's current wave.
    #[arg(long)]
    pub wave: Option<String>,
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// What a person can tell a rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RolloutCommand {
    /// Let the next wave start once the named wave (a `Manual` one) is done and soaked.
    Promote,
    /// Approve nothing more (`spec.paused: true`).
    Pause,
    /// `spec.paused: false`, and accept the failures so far if they stopped the rollout.
    Resume,
}

/// Carries out `promote`, `pause` or `resume` on an UpdateRollout. Returns the line to print.
pub async fn rollout(command: RolloutCommand, args: &RolloutArgs) -> Result<String, String> {
    use crate::api::rollout::UpdateRollout;
    use crate::reconcile::update_rollout::{PROMOTE, RESUME};
    let c = args.kube.require().await?;
    let api = Api::<UpdateRollout>::namespaced(c.client.clone(), &c.namespace);
    let name = &args.name;
    let r = api
        .get(name)
        .await
        .map_err(|e| format!("UpdateRollout {}/{name}: {e}", c.namespace))?;
    let status = r.status.clone().unwrap_or_default();
    let (patch, said) = match command {
        RolloutCommand::Promote => {
            let wave = args
                .wave
                .clone()
                .or(status.current_wave.clone())
                .ok_or("the rollout has no current wave yet; name one with --wave")?;
            if !r.spec.waves.iter().any(|w| w.name == wave) {
                let names: Vec<&str> = r.spec.waves.iter().map(|w| w.name.as_str()).collect();
                return Err(format!("{name} has no wave {wave:?}; its waves: {}", names.join(", ")));
            }
            let when = match status.phase {
                Some(crate::api::rollout::RolloutPhase::WaitingForPromotion) => "; the next wave starts now",
                _ => "; it takes effect once the wave is done and soaked",
            };
            (
                json!({"metadata": {"annotations": {PROMOTE: wave}}}),
                format!("wave {wave} promoted{when}"),
            )
        }
        RolloutCommand::Pause => (
            json!({"spec": {"paused": true}}),
            "paused: nothing more is approved (what was approved goes on in the cloud)".to_string(),
        ),
        RolloutCommand::Resume => {
            let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let failures = if status.paused_by_failures {
                format!("; the {} failure(s) so far are accepted", status.failures.len())
            } else {
                String::new()
            };
            (
                json!({"metadata": {"annotations": {RESUME: at}}, "spec": {"paused": false}}),
                format!("resumed{failures}"),
            )
        }
    };
    let params = PatchParams {
        field_manager: Some(PLUGIN.into()),
        ..Default::default()
    };
    api.patch(name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|e| format!("UpdateRollout {}/{name}: {e}", c.namespace))?;
    Ok(format!("UpdateRollout/{name} in {}: {said}", c.namespace))
}
