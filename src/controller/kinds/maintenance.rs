use std::sync::Arc;

use crate::api::maintenance::{DesktopMaintenanceWindow, DesktopMaintenanceWindowStatus};
use crate::cloud::CloudError;
use crate::cloud::ops::ecd::{self, Desktop, DesktopFilter};
use crate::controller::kind::{KindEnv, ManagedKind, Stage};
use crate::reconcile::maintenance::{MaintenanceInput, SetMaintenance, plan};
use crate::reconcile::{Outcome, PlanContext};

const LIST: &str = "DescribeDesktops";

impl ManagedKind for DesktopMaintenanceWindow {
    type Status = DesktopMaintenanceWindowStatus;
    type Action = SetMaintenance;
    const KIND: &'static str = "DesktopMaintenanceWindow";

    crate::kind_accessors!(DesktopMaintenanceWindowStatus, region_id);
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
        let everything = DesktopFilter::default();
        let all = env
            .snapshot(LIST, &region, fresh, || {
                ecd::describe_desktops(&env.cloud, &region, &everything)
            })
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
        let region = &self.spec.region_id;
        let r = ecd::set_desktop_maintenance_batched(&env.cloud, region, action.mode, &action.desktop_ids).await;
        match &r {
            Ok(()) => env.write_through(LIST, region, |desktops: &mut Vec<Desktop>| {
                let ids: std::collections::HashSet<&String> = action.desktop_ids.iter().collect();
                for d in desktops.iter_mut().filter(|d| ids.contains(&d.desktop_id)) {
                    d.management_flags
                        .retain(|f| !matches!(f.as_str(), "NoFlag" | "UnderMaintenance" | "EnterMaintenance"));
                    if action.mode == ecd::MaintenanceMode::Enter {
                        d.management_flags.push("UnderMaintenance".into());
                    }
                    if d.management_flags.is_empty() {
                        d.management_flags.push("NoFlag".into());
                    }
                }
            }),
            Err(_) => env.invalidate(LIST, region),
        }
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
