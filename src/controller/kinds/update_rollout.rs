use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::api::rollout::{UpdateRollout, UpdateRolloutStatus, WaveStatus};
use crate::cloud::ops::appstream::{self, ApproveOtaTask};
use crate::cloud::{CloudError, Product};
use crate::controller::events;
use crate::controller::kind::{KindEnv, ManagedKind, Stage, Transition, older_peers};
use crate::controller::metrics::ResourceGauge;
use crate::reconcile::rollout::Approve;
use crate::reconcile::update_rollout::{PROMOTE, RESUME, RolloutInput, completed, confirm, needs_tasks, plan, selects};
use crate::reconcile::{Outcome, PlanContext};

const LIST: &str = "ListAppInstanceGroup";

fn annotation<'a>(obj: &'a UpdateRollout, key: &str) -> Option<&'a str> {
    obj.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

impl ManagedKind for UpdateRollout {
    type Status = UpdateRolloutStatus;
    type Action = Approve;
    const KIND: &'static str = "UpdateRollout";
    const WRITE: (Product, &'static str) = (Product::AppstreamCenter, "ApproveOtaTask");
    /// Two rollouts approve the same group only within one cloud account.
    const PEERS_BY_ACCOUNT: bool = true;
    /// The TaskId an approval takes rotates after every approval.
    const FRESH_READ_BEFORE_WRITE: bool = true;
    /// An OtaSchedule of one of its groups is a rival: the older acts.
    const CLAIMS_OTA_GROUPS: bool = true;

    fn claims_ota_group(&self, group: &crate::cloud::ops::appstream::AppInstanceGroup) -> bool {
        selects(&self.spec, group)
    }

    fn common(&self) -> &crate::api::common::CommonSpec {
        &self.spec.common
    }
    fn status(&self) -> Option<&UpdateRolloutStatus> {
        self.status.as_ref()
    }
    fn common_status(status: &mut UpdateRolloutStatus) -> &mut crate::api::ResourceStatus {
        &mut status.common
    }
    fn region(&self) -> &str {
        &self.spec.ota.biz_region_id
    }

    /// An approval cannot be withdrawn: deleting a rollout has nothing to undo in the cloud.
    fn needs_finalizer(&self) -> bool {
        false
    }

    async fn read_and_plan(
        &self,
        env: &KindEnv,
        peers: &[Arc<Self>],
        ctx: &PlanContext,
        stage: Stage,
        fresh: bool,
    ) -> Result<Outcome<Approve, UpdateRolloutStatus>, CloudError> {
        let previous = self.status.clone().unwrap_or_default();
        if stage == Stage::Cleanup {
            return Ok(Outcome::nothing_to_undo(previous));
        }
        let region = self.spec.ota.biz_region_id.clone();
        if completed(&previous, ctx.generation) {
            // Done for this spec: nothing to read.
            return Ok(plan(
                &RolloutInput {
                    spec: &self.spec,
                    groups: &[],
                    tasks: &BTreeMap::new(),
                    previous: &previous,
                    promote: None,
                    resume: None,
                    conflicts: &[],
                },
                ctx,
            ));
        }
        let all = env
            .snapshot(LIST, &region, fresh, |cloud| {
                let region = region.clone();
                async move { appstream::list_app_instance_groups(&cloud, &region, None).await }
            })
            .await?;
        // Groups an older rollout or OtaSchedule of the same account approves are left to it.
        let older: Vec<(&Arc<Self>, String)> = peers
            .iter()
            .filter(|p| p.spec.ota.biz_region_id == region && env.same_account(&p.metadata))
            .filter_map(|p| Some((p, older_peers(self, std::slice::from_ref(p), |_| true).pop()?)))
            .collect();
        let mut conflicts = BTreeSet::new();
        let groups: Vec<_> = all
            .iter()
            .filter(|g| {
                let mut claimed: Vec<String> = older
                    .iter()
                    .filter(|(p, _)| selects(&p.spec, g))
                    .map(|(_, name)| name.clone())
                    .collect();
                claimed.extend(env.older_rivals(&self.metadata, Self::KIND, &region, g));
                let mine = selects(&self.spec, g);
                if mine && !claimed.is_empty() {
                    conflicts.extend(claimed);
                    return false;
                }
                true
            })
            .cloned()
            .collect();
        let conflicts: Vec<String> = conflicts.into_iter().collect();
        let mut input = RolloutInput {
            spec: &self.spec,
            groups: &groups,
            tasks: &BTreeMap::new(),
            previous: &previous,
            promote: annotation(self, PROMOTE),
            resume: annotation(self, RESUME),
            conflicts: &conflicts,
        };
        let mut tasks = BTreeMap::new();
        for id in needs_tasks(&input, ctx, fresh) {
            let list = appstream::list_ota_tasks(&env.cloud, &region, &id).await?;
            tasks.insert(id, list);
        }
        input.tasks = &tasks;
        Ok(plan(&input, ctx))
    }

    async fn execute(&self, env: &KindEnv, action: &Approve) -> Result<(), CloudError> {
        let r = appstream::approve_ota_task(
            &env.cloud,
            &ApproveOtaTask {
                app_instance_group_id: action.group_id.clone(),
                biz_region_id: self.spec.ota.biz_region_id.clone(),
                task_id: action.task_id.clone(),
                ota_type: self.spec.ota.ota_type.as_str().to_string(),
                start_time: crate::reconcile::rfc3339(action.start_time),
            },
        )
        .await;
        env.invalidate(LIST, &self.spec.ota.biz_region_id);
        r.map(drop)
    }

    fn event_reason(_: &Approve) -> &'static str {
        events::APPROVED
    }

    fn describe(action: &Approve) -> String {
        format!(
            "ApproveOtaTask {} TaskId={} version {} StartTime={}",
            action.group_id,
            action.task_id,
            action.version,
            crate::reconcile::rfc3339(action.start_time)
        )
    }

    fn record_answer(status: &mut UpdateRolloutStatus, action: &Approve, _: chrono::DateTime<chrono::Utc>) {
        confirm(status, action);
    }

    fn status_gauges(status: &UpdateRolloutStatus) -> Vec<(ResourceGauge, f64)> {
        let failed: i32 = status.waves.iter().map(|w| w.failed).sum();
        vec![
            (
                ResourceGauge::RolloutPausedByFailures,
                if status.paused_by_failures { 1.0 } else { 0.0 },
            ),
            (ResourceGauge::RolloutTargetsFailed, f64::from(failed)),
        ]
    }

    fn transitions(before: &UpdateRolloutStatus, after: &UpdateRolloutStatus) -> Vec<Transition> {
        let mut out = Vec::new();
        for w in &after.waves {
            let was = before.waves.iter().find(|b| b.name == w.name);
            let newly = |f: fn(&WaveStatus) -> bool| f(w) && !was.is_some_and(f);
            if newly(|w| w.started_at.is_some()) {
                out.push(Transition::normal(
                    events::WAVE_STARTED,
                    format!("wave {} started ({} group(s))", w.name, w.targets),
                ));
            }
            if newly(|w| w.completed_at.is_some()) {
                out.push(Transition::normal(
                    events::WAVE_SUCCEEDED,
                    format!(
                        "wave {} is done: {} succeeded, {} failed of {}",
                        w.name, w.succeeded, w.failed, w.targets
                    ),
                ));
            }
            if newly(|w| w.promoted_at.is_some()) {
                out.push(Transition::normal(
                    events::WAVE_PROMOTED,
                    format!("wave {} promoted", w.name),
                ));
            }
        }
        if after.paused_by_failures && !before.paused_by_failures {
            out.push(Transition {
                reason: events::WAVE_PAUSED,
                note: format!(
                    "{}; nothing more is approved until a person resumes the rollout",
                    after.paused_reason.as_deref().unwrap_or("too many failures")
                ),
                warning: true,
            });
        }
        for f in &after.failures {
            if !before.failures.iter().any(|b| b.target == f.target) {
                out.push(Transition::normal(
                    events::TARGET_FAILED,
                    format!("{} (wave {}): {}", f.target, f.wave, f.detail),
                ));
            }
        }
        out
    }
}
