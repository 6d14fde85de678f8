use std::sync::Arc;

use crate::api::ResourceStatus;
use crate::api::common::CommonSpec;
use crate::api::ota::{OtaSchedule, OtaScheduleStatus};
use crate::cloud::CloudError;
use crate::cloud::ops::appstream::{self, ApproveOtaTask};
use crate::controller::kind::{KindEnv, ManagedKind, Stage};
use crate::controller::snapshot::SnapshotKey;
use crate::reconcile::ota::{Approve, OtaInput, plan};
use crate::reconcile::{Outcome, PlanContext, Reason, Verdict};

fn key(env: &KindEnv, region: &str) -> SnapshotKey {
    SnapshotKey {
        list: "ListAppInstanceGroup",
        account: env.account.clone(),
        region: region.to_string(),
    }
}

impl ManagedKind for OtaSchedule {
    type Status = OtaScheduleStatus;
    type Action = Approve;
    const KIND: &'static str = "OtaSchedule";
    const FRESH_READ_BEFORE_WRITE: bool = true;

    fn common(&self) -> &CommonSpec {
        &self.spec.common
    }
    fn status(&self) -> Option<&Self::Status> {
        self.status.as_ref()
    }
    fn common_status(status: &mut Self::Status) -> &mut ResourceStatus {
        &mut status.common
    }
    fn region(&self) -> &str {
        &self.spec.biz_region_id
    }
    fn needs_finalizer(&self) -> bool {
        false
    }

    async fn plan(
        &self,
        env: &KindEnv,
        _peers: &[Arc<Self>],
        ctx: &PlanContext,
        stage: Stage,
        fresh: bool,
    ) -> Result<Outcome<Approve, OtaScheduleStatus>, CloudError> {
        let previous = self.status.clone().unwrap_or_default();
        if stage == Stage::Cleanup {
            return Ok(Outcome {
                actions: vec![],
                intent: None,
                status: previous,
                verdict: Verdict::ready(Reason::InSync, "deleted"),
                requeue_after: None,
            });
        }
        let region = self.spec.biz_region_id.clone();
        let k = key(env, &region);
        if fresh {
            env.snapshots.invalidate(&k);
        }
        let groups = env
            .snapshots
            .get(k, || appstream::list_app_instance_groups(&env.cloud, &region, None))
            .await?;
        let group = groups
            .iter()
            .find(|g| g.app_instance_group_id == self.spec.app_instance_group_id);
        Ok(plan(
            &OtaInput {
                spec: &self.spec,
                group,
                previous: &previous,
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
        env.snapshots.invalidate(&key(env, &self.spec.biz_region_id));
        r.map(drop)
    }

    fn describe(action: &Approve) -> String {
        format!(
            "ApproveOtaTask TaskId={} version {} StartTime={}",
            action.task_id, action.version, action.start_time
        )
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
