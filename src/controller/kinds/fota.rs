use crate::cloud::Product;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::api::fota::{FotaTaskPolicy, FotaTaskPolicyStatus};
use crate::cloud::CloudError;
use crate::cloud::ops::ecd;
use crate::controller::events;
use crate::controller::kind::{self, Claim, KindEnv, ManagedKind, Stage, can_act, created_at, peer_name};
use crate::reconcile::fota::{FotaInput, Peer, UpdateTask, plan};
use crate::reconcile::{Outcome, PlanContext};

const LIST: &str = "DescribeFotaTasks";

fn created(p: &FotaTaskPolicy) -> DateTime<Utc> {
    created_at(&p.metadata)
}

fn full_name(p: &FotaTaskPolicy) -> String {
    kind::full_name(&p.metadata)
}

impl ManagedKind for FotaTaskPolicy {
    type Status = FotaTaskPolicyStatus;
    type Action = UpdateTask;
    const KIND: &'static str = "FotaTaskPolicy";
    const WRITE: (Product, &'static str) = (Product::Ecd, "UpdateFotaTask");

    crate::kind_accessors!(FotaTaskPolicyStatus, region_id);
    fn needs_finalizer(&self) -> bool {
        false
    }

    /// Policies of the same region in the same cloud account act on the same tasks,
    /// whichever Secrets hold the key.
    const PEERS_BY_ACCOUNT: bool = true;
    /// A FOTA UpdateRollout holds its task `Pending`: a policy that pushes the task is its
    /// rival, and the older acts.
    const CLAIMS_TARGETS: bool = true;

    fn claims_target(&self, claim: &Claim<'_>) -> bool {
        match claim {
            Claim::FotaTask { task_uid, .. } => {
                self.spec.auto_push
                    && self
                        .spec
                        .task_uids
                        .as_ref()
                        .is_none_or(|u| u.iter().any(|t| t.0 == *task_uid))
            }
            Claim::OtaGroup(_) => false,
        }
    }

    async fn read_and_plan(
        &self,
        env: &KindEnv,
        peers: &[Arc<Self>],
        ctx: &PlanContext,
        stage: Stage,
        fresh: bool,
    ) -> Result<Outcome<UpdateTask, FotaTaskPolicyStatus>, CloudError> {
        let previous = self.status.clone().unwrap_or_default();
        if stage == Stage::Cleanup {
            // Nothing to undo: the tasks keep the state the policy gave them.
            return Ok(Outcome::nothing_to_undo(previous));
        }
        let region = self.spec.region_id.clone();
        // A fresh read is of the policy's own tasks when it names them (every task of the
        // region otherwise); the shared list is the whole region's.
        let only: Vec<String> = match (fresh, &self.spec.task_uids) {
            (true, Some(uids)) => uids.iter().map(|u| u.0.clone()).collect(),
            _ => Vec::new(),
        };
        let tasks = env
            .snapshot(LIST, &region, fresh, |cloud| {
                let region = region.clone();
                async move { ecd::describe_fota_tasks(&cloud, &region, &only).await }
            })
            .await?;
        let peers: Vec<Peer> = peers
            .iter()
            .filter(|p| {
                p.spec.region_id == self.spec.region_id
                    && full_name(p) != full_name(self)
                    && can_act(p.as_ref())
                    && env.same_account(&p.metadata)
            })
            .map(|p| Peer {
                key: full_name(p),
                shown_as: peer_name(&self.metadata, &p.metadata),
                created: created(p),
                auto_push: p.spec.auto_push,
                task_uids: p
                    .spec
                    .task_uids
                    .as_ref()
                    .map(|u| u.iter().map(|t| t.0.clone()).collect()),
            })
            .chain(
                // Older rollouts that hold a task Pending stand as older peers that want it
                // Pending, for that task alone.
                tasks.iter().flat_map(|t| {
                    let claim = Claim::FotaTask {
                        task_uid: &t.task_uid,
                        app_version: &t.app_version,
                    };
                    env.older_rivals(&self.metadata, Self::KIND, &region, &claim)
                        .into_iter()
                        .map(|shown_as| Peer {
                            key: String::new(),
                            shown_as,
                            created: DateTime::<Utc>::MIN_UTC,
                            auto_push: false,
                            task_uids: Some(vec![t.task_uid.clone()]),
                        })
                }),
            )
            .collect();
        let key = full_name(self);
        Ok(plan(
            &FotaInput {
                spec: &self.spec,
                key: &key,
                created: created(self),
                peers: &peers,
                tasks: &tasks,
                previous: &previous,
            },
            ctx,
        ))
    }

    async fn execute(&self, env: &KindEnv, action: &UpdateTask) -> Result<(), CloudError> {
        let region = &self.spec.region_id;
        let result = ecd::update_fota_task(&env.cloud, region, &action.task_uid, &action.user_status).await;
        // Not written through: the region's global switch can keep a task Running after a
        // successful call, and the next read must show that. Task lists are short.
        env.invalidate(LIST, region);
        result
    }

    fn event_reason(action: &UpdateTask) -> &'static str {
        if action.user_status == "Running" {
            events::AUTO_PUSH_SET
        } else {
            events::AUTO_PUSH_CLEARED
        }
    }

    fn describe(action: &UpdateTask) -> String {
        format!("UpdateFotaTask {} UserStatus={}", action.task_uid, action.user_status)
    }
}
