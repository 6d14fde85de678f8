use crate::cloud::Product;
use std::sync::Arc;

use crate::api::ota::{OtaSchedule, OtaScheduleStatus};
use crate::cloud::CloudError;
use crate::cloud::ops::appstream::{self, ApproveOtaTask};
use crate::controller::events;
use crate::controller::kind::{Claim, KindEnv, ManagedKind, Stage, older_peers};
use crate::controller::metrics::ResourceGauge;
use crate::reconcile::ota::{Approve, OtaInput, needs_tasks, plan};
use crate::reconcile::{Outcome, PlanContext, Reason, Verdict};

const LIST: &str = "ListAppInstanceGroup";

impl ManagedKind for OtaSchedule {
    fn status_gauges(status: &OtaScheduleStatus) -> Vec<(ResourceGauge, f64)> {
        let approved = |v: &String| status.approved.as_ref().is_some_and(|a| &a.version == v);
        let waiting = status.pending_version.as_ref().is_some_and(|v| !approved(v));
        vec![(ResourceGauge::OtaPendingApproval, if waiting { 1.0 } else { 0.0 })]
    }

    type Status = OtaScheduleStatus;
    type Action = Approve;
    const KIND: &'static str = "OtaSchedule";
    const WRITE: (Product, &'static str) = (Product::AppstreamCenter, "ApproveOtaTask");
    /// Two schedules of one delivery group conflict only within one cloud account: another
    /// account's schedule of a group with the same id is another group, or one it cannot see.
    const PEERS_BY_ACCOUNT: bool = true;
    const FRESH_READ_BEFORE_WRITE: bool = true;
    /// An UpdateRollout that selects the same group is a rival: the older acts.
    const CLAIMS_TARGETS: bool = true;

    fn claims_target(&self, claim: &Claim<'_>) -> bool {
        matches!(claim, Claim::OtaGroup(g) if g.app_instance_group_id == self.spec.app_instance_group_id)
    }

    crate::kind_accessors!(OtaScheduleStatus, biz_region_id);
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
    ) -> Result<Outcome<Approve, OtaScheduleStatus>, CloudError> {
        let previous = self.status.clone().unwrap_or_default();
        if stage == Stage::Cleanup {
            return Ok(Outcome::nothing_to_undo(previous));
        }
        let region = self.spec.biz_region_id.clone();
        // A fresh read (before each approval) is for this resource alone: one group, one
        // page, instead of the region's whole list.
        let only = fresh.then(|| self.spec.app_instance_group_id.clone());
        let groups = env
            .snapshot(LIST, &region, fresh, |cloud| {
                let region = region.clone();
                async move { appstream::list_app_instance_groups(&cloud, &region, only.as_deref()).await }
            })
            .await?;
        let group = groups
            .iter()
            .find(|g| g.app_instance_group_id == self.spec.app_instance_group_id);
        let tasks = if needs_tasks(&previous, group, fresh) {
            Some(appstream::list_ota_tasks(&env.cloud, &region, &self.spec.app_instance_group_id).await?)
        } else {
            None
        };
        let mut older = older_peers(self, peers, |p| {
            p.spec.biz_region_id == self.spec.biz_region_id
                && p.spec.app_instance_group_id == self.spec.app_instance_group_id
                && env.same_account(&p.metadata)
        });
        if let Some(g) = group {
            older.extend(env.older_rivals(&self.metadata, Self::KIND, &region, &Claim::OtaGroup(g)));
        }
        Ok(plan(
            &OtaInput {
                spec: &self.spec,
                group,
                previous: &previous,
                tasks: tasks.as_deref(),
                older_peers: &older,
            },
            ctx,
        ))
    }

    async fn execute(&self, env: &KindEnv, action: &Approve) -> Result<(), CloudError> {
        let r = appstream::approve_ota_task(
            &env.cloud,
            &ApproveOtaTask {
                app_instance_group_id: self.spec.app_instance_group_id.clone(),
                biz_region_id: self.spec.biz_region_id.clone(),
                task_id: action.task_id.clone(),
                ota_type: self.spec.ota_type.as_str().to_string(),
                start_time: action.start_time.clone(),
            },
        )
        .await;
        env.invalidate(LIST, &self.spec.biz_region_id);
        r.map(drop)
    }

    fn event_reason(_: &Approve) -> &'static str {
        events::APPROVED
    }

    fn describe(action: &Approve) -> String {
        format!(
            "ApproveOtaTask TaskId={} version {} StartTime={}",
            action.task_id, action.version, action.start_time
        )
    }

    /// An approval the cloud refused, or that never left, did not happen: forget the intent
    /// so the next plan can approve again. Any other failure may have been applied.
    fn status_after_failure(mut recorded: OtaScheduleStatus, err: &CloudError) -> OtaScheduleStatus {
        if err.refused() || err.certainly_not_applied() {
            recorded.in_flight = None;
        }
        recorded
    }

    fn interpret_error(err: &CloudError) -> Option<Verdict> {
        (err.code() == "OtaTask.Running").then(|| {
            Verdict::ready(
                Reason::UpgradeRunning,
                "an OTA upgrade of this group is running; nothing to approve until it ends",
            )
        })
    }
}
