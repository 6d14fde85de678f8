use std::sync::Arc;

use crate::api::ResourceStatus;
use crate::api::common::CommonSpec;
use crate::api::maintenance::{DesktopMaintenanceWindow, DesktopMaintenanceWindowStatus};
use crate::cloud::CloudError;
use crate::cloud::ops::ecd::{self, Desktop, DesktopFilter};
use crate::controller::kind::{KindEnv, ManagedKind, Stage};
use crate::controller::snapshot::SnapshotKey;
use crate::reconcile::maintenance::{MaintenanceInput, SetMaintenance, plan};
use crate::reconcile::{Outcome, PlanContext};

fn key(env: &KindEnv, region: &str) -> SnapshotKey {
    SnapshotKey {
        list: "DescribeDesktops",
        account: env.account.clone(),
        region: region.to_string(),
    }
}

impl ManagedKind for DesktopMaintenanceWindow {
    type Status = DesktopMaintenanceWindowStatus;
    type Action = SetMaintenance;
    const KIND: &'static str = "DesktopMaintenanceWindow";

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
        &self.spec.region_id
    }
    fn needs_finalizer(&self) -> bool {
        true
    }

    async fn plan(
        &self,
        env: &KindEnv,
        _peers: &[Arc<Self>],
        ctx: &PlanContext,
        stage: Stage,
        fresh: bool,
    ) -> Result<Outcome<SetMaintenance, DesktopMaintenanceWindowStatus>, CloudError> {
        let region = self.spec.region_id.clone();
        let k = key(env, &region);
        if fresh {
            env.snapshots.invalidate(&k);
        }
        let everything = DesktopFilter::default();
        let all = env
            .snapshots
            .get(k, || ecd::describe_desktops(&env.cloud, &region, &everything))
            .await?;
        let listed = crate::reconcile::maintenance::listed_ids(&self.spec);
        let site = self.spec.selector.as_ref().map(|s| s.office_site_id.as_str());
        let targeted = |d: &Desktop| match site {
            Some(site) => d.office_site_id == site,
            None => listed.contains(&d.desktop_id),
        };
        let desktops: Vec<Desktop> = all.iter().filter(|d| targeted(d)).cloned().collect();
        let previous = self.status.clone().unwrap_or_default();
        let elsewhere: Vec<Desktop> = all
            .iter()
            .filter(|d| !targeted(d) && previous.desktops_in_maintenance.contains(&d.desktop_id))
            .cloned()
            .collect();
        Ok(plan(
            &MaintenanceInput {
                spec: &self.spec,
                desktops: &desktops,
                recorded_elsewhere: &elsewhere,
                previous: &previous,
                deleting: stage == Stage::Cleanup,
            },
            ctx,
        ))
    }

    async fn execute(&self, env: &KindEnv, action: &SetMaintenance) -> Result<(), CloudError> {
        let r =
            ecd::set_desktop_maintenance_batched(&env.cloud, &self.spec.region_id, action.mode, &action.desktop_ids)
                .await;
        env.snapshots.invalidate(&key(env, &self.spec.region_id));
        r.map_err(|(_, e)| e)
    }

    fn describe(action: &SetMaintenance) -> String {
        let ids = &action.desktop_ids;
        let shown = if ids.len() > 5 {
            format!("{} ... ({} in all)", ids[..5].join(", "), ids.len())
        } else {
            ids.join(", ")
        };
        format!("SetDesktopMaintenance {} {shown}", action.mode.as_str())
    }
}
