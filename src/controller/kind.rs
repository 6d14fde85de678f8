//! What differs per kind, written once per kind; everything else is shared.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::core::NamespaceResourceScope;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::metrics::ResourceGauge;
use crate::api::ResourceStatus;
use crate::api::common::{CommonSpec, CredentialsRef};
use crate::cloud::snapshot::{Lookup, Pages, SnapshotCache, SnapshotKey};
use crate::cloud::{CloudClient, CloudError, Product};
use crate::reconcile::{Outcome, PlanContext, Verdict, duration};

/// The cloud side of one reconcile: a client with the resource's credentials, a key for
/// the credential set (see [`crate::cloud::Credentials::account_key`]), and the shared snapshots.
#[derive(Clone)]
pub struct KindEnv {
    pub cloud: CloudClient,
    pub account: String,
    pub snapshots: Arc<SnapshotCache>,
    /// The account keys of the peers (by `namespace/name`), for kinds whose conflicts are
    /// decided by cloud account; filled only for those (see [`ManagedKind::PEERS_BY_ACCOUNT`]).
    pub peer_accounts: Arc<std::collections::BTreeMap<String, String>>,
    /// The oldest shared list this reconcile accepts: the resource's resync interval, so a
    /// steady resync costs one list per interval (the cache may cap it lower).
    pub max_age: Duration,
    /// Resources of other kinds that claim cloud objects ([`Claim`]), with their accounts;
    /// filled only for kinds that do (see [`ManagedKind::CLAIMS_TARGETS`]).
    pub rivals: Arc<Vec<Rival>>,
    /// Brings this resource back to a worker of its controller. With it, a lookup in a shared
    /// list still paging does not hold the worker for a page not read yet
    /// ([`KindEnv::snapshot_lookup`]); without it (`plan`, tests) the lookup waits in place.
    pub recall: Option<Recaller>,
}

/// Reconciles one resource again, soon: what a controller lends a reconcile
/// ([`KindEnv::recall`]).
pub type Recaller = Arc<dyn Fn() + Send + Sync>;

/// A resource of another kind that claims cloud objects ([`Claim`]), and the account its
/// credentials act in (`None`: not known).
#[derive(Clone)]
pub struct Rival {
    pub obj: Arc<dyn ClaimsTargets>,
    pub account: Option<String>,
}

/// A cloud object that resources of more than one kind may act on.
#[derive(Clone, Copy, Debug)]
pub enum Claim<'a> {
    /// Approving OTA updates of this delivery group (OtaSchedule, UpdateRollout).
    OtaGroup(&'a crate::cloud::ops::appstream::AppInstanceGroup),
    /// Deciding the `UserStatus` of this image-update task (its `TaskUid` and `AppVersion`)
    /// against the others: a FotaTaskPolicy that pushes it (`autoPush: true`), a FOTA
    /// UpdateRollout that holds it `Pending`.
    FotaTask { task_uid: &'a str, app_version: &'a str },
}

/// What conflicts between kinds compare: a resource that claims cloud objects ([`Claim`]).
/// Of two that claim one object in one account, the older acts, whatever their kinds, as
/// between two OtaSchedules.
pub trait ClaimsTargets: Send + Sync {
    fn kind(&self) -> &'static str;
    fn object_meta(&self) -> &kube::api::ObjectMeta;
    /// Whether it can act (see [`can_act`]); one that cannot never wins a conflict.
    fn acts(&self) -> bool;
    fn credentials(&self) -> Option<&CredentialsRef>;
    /// Whether it claims `claim` of `region`.
    fn claims(&self, region: &str, claim: &Claim<'_>) -> bool;
}

impl<K: ManagedKind> ClaimsTargets for K {
    fn kind(&self) -> &'static str {
        K::KIND
    }
    fn object_meta(&self) -> &kube::api::ObjectMeta {
        self.meta()
    }
    fn acts(&self) -> bool {
        can_act(self)
    }
    fn credentials(&self) -> Option<&CredentialsRef> {
        self.common().credentials_ref.as_ref()
    }
    fn claims(&self, region: &str, claim: &Claim<'_>) -> bool {
        K::CLAIMS_TARGETS && self.region() == region && self.claims_target(claim)
    }
}

impl KindEnv {
    pub fn new(cloud: CloudClient, account: String, snapshots: Arc<SnapshotCache>) -> Self {
        KindEnv {
            cloud,
            account,
            snapshots,
            peer_accounts: Arc::default(),
            max_age: Duration::MAX,
            rivals: Arc::default(),
            recall: None,
        }
    }

    /// The resources of other kinds that claim `claim` of `region` and win over `this`: older
    /// (by creation, then kind and name), able to act, and in this env's account; named as
    /// [`peer_name`] names peers, with their kind.
    pub fn older_rivals(
        &self,
        this: &kube::api::ObjectMeta,
        this_kind: &str,
        region: &str,
        claim: &Claim<'_>,
    ) -> Vec<String> {
        let mine = (created_at(this), this_kind, full_name(this));
        let mut older: Vec<String> = self
            .rivals
            .iter()
            .filter(|r| r.account.as_deref() == Some(self.account.as_str()) && r.obj.acts())
            .filter(|r| r.obj.claims(region, claim))
            .filter(|r| {
                (
                    created_at(r.obj.object_meta()),
                    r.obj.kind(),
                    full_name(r.obj.object_meta()),
                ) < mine
            })
            .map(|r| format!("{} {}", r.obj.kind(), peer_name(this, r.obj.object_meta())))
            .collect();
        older.sort();
        older.dedup();
        older
    }

    /// Whether `peer` acts in the same cloud account (the same AccessKey) as this env.
    pub fn same_account(&self, peer: &kube::api::ObjectMeta) -> bool {
        self.peer_accounts.get(&full_name(peer)) == Some(&self.account)
    }

    /// The shared list `list` of `region` for these credentials, no older than
    /// [`KindEnv::max_age`]. `fetch` gets a client that lists on behalf of every reader.
    /// `fresh` reads the cloud now for this caller alone, with its own client: the shared list
    /// stays for the others (a requested reconcile of one resource costs one read, not one
    /// per resource), and `fetch` should read only the resource's own objects where the API
    /// reads by id.
    pub async fn snapshot<T, F, Fut>(
        &self,
        list: &'static str,
        region: &str,
        fresh: bool,
        fetch: F,
    ) -> Result<Arc<T>, CloudError>
    where
        T: Send + Sync + 'static,
        F: FnOnce(CloudClient) -> Fut,
        Fut: Future<Output = Result<T, CloudError>> + Send + 'static,
    {
        self.snapshot_listed(list, region, fresh, fetch).await.map(|(v, _)| v)
    }

    /// As [`KindEnv::snapshot`], with the time the list started (see
    /// [`SnapshotCache::get_listed`]).
    pub async fn snapshot_listed<T, F, Fut>(
        &self,
        list: &'static str,
        region: &str,
        fresh: bool,
        fetch: F,
    ) -> Result<(Arc<T>, chrono::DateTime<chrono::Utc>), CloudError>
    where
        T: Send + Sync + 'static,
        F: FnOnce(CloudClient) -> Fut,
        Fut: Future<Output = Result<T, CloudError>> + Send + 'static,
    {
        if fresh {
            // For this resource alone, so it acts for it: a read the rate limits cannot send
            // at once is deferred (the resource keeps its turn) rather than waited for in a
            // worker.
            let started = chrono::Utc::now();
            let value = fetch(self.cloud.clone()).await?;
            return Ok((Arc::new(value), started));
        }
        let cloud = self.cloud.shared();
        self.snapshots
            .get_listed(self.key(list, region), self.max_age, || fetch(cloud))
            .await
    }

    /// One item of the shared list `list` of `region` (see [`SnapshotCache::lookup`]): answered
    /// by the first page that holds it while the list is in flight, so a resource whose item
    /// comes early need not wait for the last page. With a [`KindEnv::recall`], a resource
    /// whose page has not come yet does not wait for it either: the answer is
    /// [`CloudError::NotListedYet`], and the page brings the resource back. `fetch` gets a
    /// client that lists on behalf of every reader, and the [`Pages`] to publish each page to.
    pub async fn snapshot_lookup<T, R, F, Fut>(
        &self,
        list: &'static str,
        region: &str,
        fetch: F,
        look: impl Fn(&T) -> Option<R> + Send + 'static,
    ) -> Result<(Option<R>, chrono::DateTime<chrono::Utc>), CloudError>
    where
        T: Default + Send + Sync + 'static,
        F: FnOnce(CloudClient, Pages<T>) -> Fut,
        Fut: Future<Output = Result<T, CloudError>> + Send + 'static,
    {
        let cloud = self.cloud.shared();
        let key = self.key(list, region);
        let fetch = |pages| fetch(cloud, pages);
        let Some(recall) = self.recall.clone() else {
            return self.snapshots.lookup(key, self.max_age, fetch, look).await;
        };
        match self
            .snapshots
            .lookup_or_recall(key, self.max_age, fetch, look, Box::new(move || recall()))
            .await?
        {
            Lookup::Found(found, listed_at) => Ok((found, listed_at)),
            Lookup::Later => Err(CloudError::NotListedYet(list)),
        }
    }

    /// Forgets the shared list after a write whose effect is unknown (it failed).
    pub fn invalidate(&self, list: &'static str, region: &str) {
        self.snapshots.invalidate(&self.key(list, region));
    }

    /// Applies a successful write to the shared list, so N writes do not cost N lists.
    pub fn write_through<T: Clone + Send + Sync + 'static>(
        &self,
        list: &'static str,
        region: &str,
        f: impl Fn(&mut T) + Send + 'static,
    ) {
        self.snapshots.update(&self.key(list, region), f);
    }

    fn key(&self, list: &'static str, region: &str) -> SnapshotKey {
        SnapshotKey {
            list,
            account: self.account.clone(),
            region: region.to_string(),
        }
    }
}

/// How a cloud account is keyed among resources (snapshots, conflicts, peer accounts).
pub fn account_name(account_id: &str) -> String {
    format!("account:{account_id}")
}

/// What resources of one cloud account share: the account STS names for `cloud`'s
/// credentials, or `fallback` (the credential set) while the cloud cannot say.
pub async fn account_key(cloud: &CloudClient, fallback: String) -> String {
    match cloud.account().await {
        Ok(account) => account_name(&account),
        Err(e) => {
            tracing::debug!(error = %e, "the cloud account is not known yet; keyed by the credentials");
            fallback
        }
    }
}

/// The accessors every kind implements the same way, given its status type and the spec
/// field that holds its region.
#[macro_export]
macro_rules! kind_accessors {
    ($status:ty, $region:ident) => {
        fn common(&self) -> &$crate::api::common::CommonSpec {
            &self.spec.common
        }
        fn status(&self) -> Option<&$status> {
            self.status.as_ref()
        }
        fn common_status(status: &mut $status) -> &mut $crate::api::ResourceStatus {
            &mut status.common
        }
        fn region(&self) -> &str {
            &self.spec.$region
        }
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Make the cloud match the spec.
    Apply,
    /// The resource is being deleted: undo what it did, where its policy says so.
    Cleanup,
}

/// A custom resource the operator reconciles against the cloud.
pub trait ManagedKind:
    kube::Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + kube::CustomResourceExt
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    type Status: Clone + Debug + Default + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static;
    type Action: Clone + Debug + Send + Sync + 'static;

    const KIND: &'static str;
    /// The cloud call that carries out this kind's actions (see [`ManagedKind::write_of`]):
    /// admission to the client-side limits is asked for it before anything is recorded or
    /// sent.
    const WRITE: (Product, &'static str);
    /// Read the cloud again, bypassing snapshots, right before writing (OtaSchedule: the
    /// TaskId changes after every approval).
    const FRESH_READ_BEFORE_WRITE: bool = false;

    /// The cloud call that carries out `action` (a kind with more than one write says which).
    fn write_of(_action: &Self::Action) -> (Product, &'static str) {
        Self::WRITE
    }

    /// Whether this resource reads fresh before writing (a kind with more than one target
    /// may need it for one only).
    fn fresh_read_before_write(&self) -> bool {
        Self::FRESH_READ_BEFORE_WRITE
    }

    fn common(&self) -> &CommonSpec;
    fn status(&self) -> Option<&Self::Status>;
    fn common_status(status: &mut Self::Status) -> &mut ResourceStatus;

    /// The region the resource's cloud objects live in.
    fn region(&self) -> &str;

    /// The product the resource's cloud objects belong to (`doctor` reads it there).
    fn cloud_product(&self) -> Product {
        Self::WRITE.0
    }

    /// Whether deleting this resource has cloud work to do, so it needs a finalizer.
    fn needs_finalizer(&self) -> bool;

    /// Whether [`ManagedKind::read_and_plan`] reads its peers (the other resources of the kind).
    /// Kinds that do not are given none, instead of a copy of the whole cache each time.
    const READS_PEERS: bool = true;

    /// Conflicts with peers are decided by cloud account, so the controller resolves each
    /// peer's credentials to an account key before planning (FotaTaskPolicy).
    const PEERS_BY_ACCOUNT: bool = false;

    /// The kind claims cloud objects that other kinds act on too ([`ManagedKind::claims_target`]):
    /// the resources of the other such kinds are its rivals ([`KindEnv::rivals`]).
    const CLAIMS_TARGETS: bool = false;

    /// Whether this resource claims `claim` (in its region).
    fn claims_target(&self, _claim: &Claim<'_>) -> bool {
        false
    }

    /// Reads the cloud (through the snapshots unless `fresh`) and plans.
    fn read_and_plan(
        &self,
        env: &KindEnv,
        peers: &[Arc<Self>],
        ctx: &PlanContext,
        stage: Stage,
        fresh: bool,
    ) -> impl Future<Output = Result<Outcome<Self::Action, Self::Status>, CloudError>> + Send;

    /// Performs one write.
    fn execute(&self, env: &KindEnv, action: &Self::Action) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// One line for people: Events, logs and `plan` output.
    fn describe(action: &Self::Action) -> String;

    /// Events for what changed between the status before a reconcile and after it, beyond
    /// the writes (UpdateRollout: a wave started, succeeded, was promoted or paused; a group
    /// failed).
    fn transitions(_before: &Self::Status, _after: &Self::Status) -> Vec<Transition> {
        Vec::new()
    }

    /// Figures from the status for dashboards and alerts.
    fn status_gauges(_status: &Self::Status) -> Vec<(ResourceGauge, f64)> {
        Vec::new()
    }

    /// [`Self::describe`] for `plan`, about a resource that may not exist yet: whatever is
    /// made from its uid is left out until the uid is known.
    fn describe_planned(action: &Self::Action, uid_known: bool) -> String {
        let _ = uid_known;
        Self::describe(action)
    }

    /// The reason of the Event that reports `action` (see [`super::events`]).
    fn event_reason(action: &Self::Action) -> &'static str;

    /// Some cloud answers mean "nothing to do" rather than failure (OtaTask.Running).
    fn interpret_error(_err: &CloudError) -> Option<Verdict> {
        None
    }

    /// Notes in `status` (the status once every write succeeded) that the cloud answered
    /// `action` with success at `answered_at`, for kinds that tell a sent write from an
    /// intent (ImageShare: a list started before the answer cannot be relied on to show it).
    fn record_answer(_status: &mut Self::Status, _action: &Self::Action, _answered_at: chrono::DateTime<chrono::Utc>) {}

    /// The status to keep when the client-side limits held the writes back: nothing was
    /// recorded or sent, so `previous` stays, but a kind may take from `intent` (the status
    /// it would have recorded) what it observed of the cloud, so that what deletion still
    /// owes is computed from what the cloud shows now.
    fn status_held_back(previous: Self::Status, _intent: Option<&Self::Status>) -> Self::Status {
        previous
    }

    /// The status to keep after a write failed: `recorded` is the intent written before it
    /// (or the previous status). A kind may drop an intent the error proves was not applied.
    fn status_after_failure(recorded: Self::Status, _err: &CloudError) -> Self::Status {
        recorded
    }

    /// What `status` records as done in the cloud by this resource, which deletion must
    /// undo before the finalizer goes (one line each, for Events).
    fn recorded(&self, _status: &Self::Status) -> Vec<String> {
        vec![]
    }

    /// The credentials that made the recorded writes, for kinds whose writes must be undone
    /// with them (`None`: the kind does not record them).
    fn recorded_with(_status: &Self::Status) -> Option<MadeWith> {
        None
    }
}

/// Something a reconcile changed that people should hear about (see
/// [`ManagedKind::transitions`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The Event's reason (see [`super::events`]).
    pub reason: &'static str,
    pub note: String,
    /// A Warning Event, else Normal.
    pub warning: bool,
}

impl Transition {
    pub fn normal(reason: &'static str, note: String) -> Self {
        Transition {
            reason,
            note,
            warning: false,
        }
    }
}

/// Which credentials made a resource's recorded writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MadeWith {
    /// The operator's own (the default chain).
    Operator,
    /// The Secret the spec named then.
    Secret(CredentialsRef),
}

impl MadeWith {
    pub fn from_ref(credentials_ref: Option<CredentialsRef>) -> Self {
        credentials_ref.map_or(MadeWith::Operator, MadeWith::Secret)
    }

    /// As a spec's `credentialsRef` names them.
    pub fn credentials_ref(&self) -> Option<&CredentialsRef> {
        match self {
            MadeWith::Operator => None,
            MadeWith::Secret(r) => Some(r),
        }
    }
}

/// When the object was created (older resources win conflicts). Unknown (a manifest that
/// `plan` reads, not yet in the cluster) counts as the earliest instant, the same for all,
/// so the name decides, the same way every time.
pub fn created_at(meta: &kube::api::ObjectMeta) -> chrono::DateTime<chrono::Utc> {
    meta.creation_timestamp
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}

/// The resource's own resync interval, or `default` when it names none. A value the CRD's
/// validation let through but that is out of bounds is an error naming the field, never a
/// silent fallback.
pub fn resync_for<K: ManagedKind>(obj: &K, default: Duration) -> Result<Duration, String> {
    match obj.common().resync_interval.as_deref() {
        None => Ok(default),
        Some(r) => duration::parse_within("spec.resyncInterval", r, duration::RESYNC_MIN, duration::RESYNC_MAX),
    }
}

/// Which object: its kind, namespace and name. Metrics, backoff and logs key objects by it;
/// it prints as `Kind/namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn of<K: ManagedKind>(obj: &K) -> Self {
        ObjectKey {
            kind: K::KIND,
            namespace: obj.meta().namespace.clone().unwrap_or_default(),
            name: obj.meta().name.clone().unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// `namespace/name`, for messages and tie-breaks.
pub fn full_name(meta: &kube::api::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or("")
    )
}

/// Whether `peer` can act on the cloud, and so can win a conflict: a suspended or
/// ObserveOnly resource, or one being deleted, never blocks one that can act.
pub fn can_act<K: ManagedKind>(peer: &K) -> bool {
    let common = peer.common();
    peer.meta().deletion_timestamp.is_none()
        && !common.suspend
        && common.management_policy == crate::api::ManagementPolicy::Manage
}

/// How a conflict message names `peer` to the owner of `this`: `namespace/name` in its own
/// namespace; another namespace's objects are not named (they may be another tenant's).
pub fn peer_name(this: &kube::api::ObjectMeta, peer: &kube::api::ObjectMeta) -> String {
    if peer.namespace == this.namespace {
        full_name(peer)
    } else {
        "a resource in another namespace".to_string()
    }
}

/// The peers that win over `this`: created earlier (by name on a tie), able to act (see
/// [`can_act`]), and for which `same_target` holds; named as [`peer_name`] does.
pub fn older_peers<K: ManagedKind>(this: &K, peers: &[Arc<K>], same_target: impl Fn(&K) -> bool) -> Vec<String> {
    let mine = (created_at(this.meta()), full_name(this.meta()));
    let mut older: Vec<String> = peers
        .iter()
        .filter(|p| p.meta().uid != this.meta().uid && can_act(p.as_ref()))
        .filter(|p| same_target(p))
        .filter(|p| (created_at(p.meta()), full_name(p.meta())) < mine)
        .map(|p| peer_name(this.meta(), p.meta()))
        .collect();
    older.sort();
    older.dedup();
    older
}
