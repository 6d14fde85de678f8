use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::api::rollout::{UpdateRollout, UpdateRolloutStatus, WaveStatus};
use crate::cloud::ops::appstream::{self, ApproveOtaTask};
use crate::cloud::ops::ecd::{self, DesktopFilter};
use crate::cloud::{CloudError, Product};
use crate::controller::events;
use crate::controller::kind::{Claim, KindEnv, ManagedKind, Stage, Transition, older_peers};
use crate::controller::metrics::ResourceGauge;
use crate::reconcile::update_rollout::{
    PROMOTE, RESUME, RolloutAction, RolloutCloud, RolloutInput, completed, confirm, desktops_to_read, fota_task,
    needs_tasks, plan, selects, selects_desktop,
};
use crate::reconcile::{Outcome, PlanContext};

const LIST: &str = "ListAppInstanceGroup";
/// The region's image-update tasks, shared with FotaTaskPolicy.
const FOTA_TASKS: &str = "DescribeFotaTasks";

fn annotation<'a>(obj: &'a UpdateRollout, key: &str) -> Option<&'a str> {
    obj.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The older rollouts of the same region and account, with how people see them named.
fn older_rollouts<'a>(
    this: &UpdateRollout,
    env: &KindEnv,
    peers: &'a [Arc<UpdateRollout>],
) -> Vec<(&'a Arc<UpdateRollout>, String)> {
    peers
        .iter()
        .filter(|p| p.spec.region() == this.spec.region() && env.same_account(&p.metadata))
        .filter_map(|p| Some((p, older_peers(this, std::slice::from_ref(p), |_| true).pop()?)))
        .collect()
}

impl ManagedKind for UpdateRollout {
    type Status = UpdateRolloutStatus;
    type Action = RolloutAction;
    const KIND: &'static str = "UpdateRollout";
    const WRITE: (Product, &'static str) = (Product::AppstreamCenter, "ApproveOtaTask");

    fn write_of(action: &RolloutAction) -> (Product, &'static str) {
        match action {
            RolloutAction::ApproveGroup(_) => Self::WRITE,
            RolloutAction::ApproveDesktop(_) => (Product::Ecd, "ApproveFotaUpdate"),
            RolloutAction::HoldTask { .. } => (Product::Ecd, "UpdateFotaTask"),
        }
    }

    /// OTA only: a FOTA rollout reads its computers by id at every look already.
    fn fresh_read_before_write(&self) -> bool {
        self.spec.ota.is_some()
    }
    /// Two rollouts approve the same group only within one cloud account.
    const PEERS_BY_ACCOUNT: bool = true;
    /// OTA: the TaskId an approval takes rotates after every approval.
    const FRESH_READ_BEFORE_WRITE: bool = true;
    /// An OtaSchedule of one of its groups is a rival, and so is a FotaTaskPolicy that pushes
    /// the task a FOTA rollout holds: the older acts.
    const CLAIMS_TARGETS: bool = true;

    fn claims_target(&self, claim: &Claim<'_>) -> bool {
        match claim {
            Claim::OtaGroup(g) => selects(&self.spec, g),
            Claim::FotaTask { task_uid, app_version } => {
                let status = self.status.as_ref();
                let done = status.and_then(|s| s.phase) == Some(crate::api::rollout::RolloutPhase::Completed);
                // Its task, as recorded, or the task of the version it pins or will pin.
                let version = status.and_then(|s| s.pinned_version.as_deref()).or(self
                    .spec
                    .fota
                    .as_ref()
                    .and_then(|f| f.app_version.as_deref()));
                self.spec.fota.is_some()
                    && !done
                    && (status.and_then(|s| s.fota_task_uid.as_deref()) == Some(*task_uid)
                        || version == Some(*app_version))
            }
        }
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
        self.spec.region()
    }
    /// A FOTA rollout's computers are EDS's; an OTA rollout's groups App Streaming's.
    fn cloud_product(&self) -> Product {
        match self.spec.fota {
            Some(_) => Product::Ecd,
            None => Product::AppstreamCenter,
        }
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
    ) -> Result<Outcome<RolloutAction, UpdateRolloutStatus>, CloudError> {
        let previous = self.status.clone().unwrap_or_default();
        if stage == Stage::Cleanup {
            return Ok(Outcome::nothing_to_undo(previous));
        }
        let region = self.spec.region().to_string();
        let input = |cloud| RolloutInput {
            spec: &self.spec,
            cloud,
            previous: &previous,
            promote: annotation(self, PROMOTE),
            resume: annotation(self, RESUME),
            conflicts: &[],
        };
        if completed(&previous, ctx.generation) {
            // Done for this spec: nothing to read.
            let nothing = BTreeMap::new();
            return Ok(plan(
                &input(RolloutCloud::Ota {
                    groups: &[],
                    tasks: &nothing,
                }),
                ctx,
            ));
        }
        if self.spec.fota.is_some() {
            return self.read_and_plan_fota(env, peers, ctx, fresh).await;
        }
        let all = env
            .snapshot(LIST, &region, fresh, |cloud| {
                let region = region.clone();
                async move { appstream::list_app_instance_groups(&cloud, &region, None).await }
            })
            .await?;
        // Groups an older rollout or OtaSchedule of the same account approves are left to it.
        let older = older_rollouts(self, env, peers);
        let mut conflicts = BTreeSet::new();
        let groups: Vec<_> = all
            .iter()
            .filter(|g| {
                let mut claimed: Vec<String> = older
                    .iter()
                    .filter(|(p, _)| selects(&p.spec, g))
                    .map(|(_, name)| name.clone())
                    .collect();
                claimed.extend(env.older_rivals(&self.metadata, Self::KIND, &region, &Claim::OtaGroup(g)));
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
        let nothing = BTreeMap::new();
        let unread = RolloutInput {
            conflicts: &conflicts,
            ..input(RolloutCloud::Ota {
                groups: &groups,
                tasks: &nothing,
            })
        };
        let mut tasks = BTreeMap::new();
        for id in needs_tasks(&unread, ctx, fresh) {
            let list = appstream::list_ota_tasks(&env.cloud, &region, &id).await?;
            tasks.insert(id, list);
        }
        Ok(plan(
            &RolloutInput {
                cloud: RolloutCloud::Ota {
                    groups: &groups,
                    tasks: &tasks,
                },
                ..unread
            },
            ctx,
        ))
    }

    async fn execute(&self, env: &KindEnv, action: &RolloutAction) -> Result<(), CloudError> {
        let region = self.spec.region();
        match action {
            RolloutAction::ApproveGroup(a) => {
                let ota = self.spec.ota.as_ref().ok_or_else(|| {
                    CloudError::InvalidRequest("an OTA approval for a rollout without spec.ota".into())
                })?;
                let r = appstream::approve_ota_task(
                    &env.cloud,
                    &ApproveOtaTask {
                        app_instance_group_id: a.group_id.clone(),
                        biz_region_id: ota.biz_region_id.clone(),
                        task_id: a.task_id.clone(),
                        ota_type: ota.ota_type.as_str().to_string(),
                        start_time: crate::reconcile::rfc3339(a.start_time),
                    },
                )
                .await;
                env.invalidate(LIST, region);
                r.map(drop)
            }
            RolloutAction::ApproveDesktop(a) => {
                ecd::approve_fota_update(&env.cloud, region, &a.desktop_id, &a.version).await
            }
            RolloutAction::HoldTask { task_uid } => {
                let r = ecd::update_fota_task(&env.cloud, region, task_uid, "Pending").await;
                // The next look must see whether the global switch keeps it pushed.
                env.invalidate(FOTA_TASKS, region);
                r
            }
        }
    }

    fn event_reason(action: &RolloutAction) -> &'static str {
        match action {
            RolloutAction::HoldTask { .. } => events::AUTO_PUSH_CLEARED,
            _ => events::APPROVED,
        }
    }

    fn describe(action: &RolloutAction) -> String {
        match action {
            RolloutAction::ApproveGroup(a) => format!(
                "ApproveOtaTask {} TaskId={} version {} StartTime={}",
                a.group_id,
                a.task_id,
                a.version,
                crate::reconcile::rfc3339(a.start_time)
            ),
            RolloutAction::ApproveDesktop(a) => format!("ApproveFotaUpdate {} AppVersion={}", a.desktop_id, a.version),
            RolloutAction::HoldTask { task_uid } => format!("UpdateFotaTask {task_uid} UserStatus=Pending"),
        }
    }

    fn record_answer(status: &mut UpdateRolloutStatus, action: &RolloutAction, _: chrono::DateTime<chrono::Utc>) {
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
        // Only a FOTA rollout holds a task.
        let noun = if after.fota_task_uid.is_some() {
            "computer(s)"
        } else {
            "group(s)"
        };
        for w in &after.waves {
            let was = before.waves.iter().find(|b| b.name == w.name);
            let newly = |f: fn(&WaveStatus) -> bool| f(w) && !was.is_some_and(f);
            if newly(|w| w.started_at.is_some()) {
                out.push(Transition::normal(
                    events::WAVE_STARTED,
                    format!("wave {} started ({} {noun})", w.name, w.targets),
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

impl UpdateRollout {
    /// A FOTA rollout reads the region's computers from the shared list (for its selectors),
    /// its tasks, and the computers of its waves up to the one that acts by id
    /// (DescribeDesktopInfo, 100 a call), always fresh: their state is what it decides on.
    async fn read_and_plan_fota(
        &self,
        env: &KindEnv,
        peers: &[Arc<Self>],
        ctx: &PlanContext,
        fresh: bool,
    ) -> Result<Outcome<RolloutAction, UpdateRolloutStatus>, CloudError> {
        let previous = self.status.clone().unwrap_or_default();
        let region = self.spec.region().to_string();
        let tasks = env
            .snapshot(FOTA_TASKS, &region, fresh, |cloud| {
                let region = region.clone();
                async move { ecd::describe_fota_tasks(&cloud, &region, &[]).await }
            })
            .await?;
        // The selection only: the computers' state is read by id below.
        let (all, _) = super::maintenance::region_desktops(env, &region, false, vec![DesktopFilter::default()]).await?;
        // An older FotaTaskPolicy that pushes the task this rollout holds: it acts, and the
        // rollout stands back whole.
        let task_rivals = match fota_task(&self.spec, &previous, &tasks) {
            Some(task) => {
                let claim = Claim::FotaTask {
                    task_uid: &task.task_uid,
                    app_version: &task.app_version,
                };
                env.older_rivals(&self.metadata, Self::KIND, &region, &claim)
            }
            None => Vec::new(),
        };
        let mut conflicts = BTreeSet::new();
        let desktops: Vec<_> = if task_rivals.is_empty() {
            // Computers an older rollout of the same account takes are left to it.
            let older = older_rollouts(self, env, peers);
            all.iter()
                .filter(|d| {
                    let claimed: Vec<String> = older
                        .iter()
                        .filter(|(p, _)| selects_desktop(&p.spec, d))
                        .map(|(_, name)| name.clone())
                        .collect();
                    if selects_desktop(&self.spec, d) && !claimed.is_empty() {
                        conflicts.extend(claimed);
                        return false;
                    }
                    true
                })
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let conflicts: Vec<String> = conflicts.into_iter().collect();
        let mut infos = BTreeMap::new();
        // What was asked for, answered or not (a computer deleted meanwhile is not).
        let mut asked = BTreeSet::new();
        let mut upto = None;
        loop {
            let input = RolloutInput {
                spec: &self.spec,
                cloud: RolloutCloud::Fota {
                    desktops: &desktops,
                    infos: &infos,
                    tasks: &tasks,
                    task_rivals: &task_rivals,
                },
                previous: &previous,
                promote: annotation(self, PROMOTE),
                resume: annotation(self, RESUME),
                conflicts: &conflicts,
            };
            let (wanted, read_upto) = desktops_to_read(&input, ctx, upto);
            let missing: Vec<String> = wanted.into_iter().filter(|id| !asked.contains(id)).collect();
            if !missing.is_empty() {
                let read = ecd::describe_desktop_info(&env.cloud, &region, &missing).await?;
                asked.extend(missing);
                infos.extend(read.into_iter().map(|i| (i.desktop_id.clone(), i)));
                continue;
            }
            let outcome = plan(&input, ctx);
            // The wave that acts may be past the waves read (one finished in this look):
            // read on up to it before approving.
            let acting = outcome
                .status
                .current_wave
                .as_ref()
                .and_then(|name| self.spec.waves.iter().position(|w| &w.name == name));
            match acting {
                Some(i) if i > read_upto => upto = Some(i),
                _ => return Ok(outcome),
            }
        }
    }
}
