use std::sync::Arc;

use crate::api::ResourceStatus;
use crate::api::common::CommonSpec;
use crate::api::image_share::{DeletionPolicy, ImageShare, ImageShareStatus};
use crate::cloud::CloudError;
use crate::cloud::ops::swas;
use crate::controller::kind::{KindEnv, ManagedKind, Stage};
use crate::controller::snapshot::SnapshotKey;
use crate::reconcile::image_share::{ImageShareInput, ModifyShare, cleanup, plan};
use crate::reconcile::{Outcome, PlanContext};

fn key(env: &KindEnv, region: &str) -> SnapshotKey {
    SnapshotKey {
        list: "ListCustomImages",
        account: env.account.clone(),
        region: region.to_string(),
    }
}

impl ManagedKind for ImageShare {
    type Status = ImageShareStatus;
    type Action = ModifyShare;
    const KIND: &'static str = "ImageShare";

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
        self.spec.deletion_policy == DeletionPolicy::UnShare
    }

    async fn plan(
        &self,
        env: &KindEnv,
        _peers: &[Arc<Self>],
        ctx: &PlanContext,
        stage: Stage,
        fresh: bool,
    ) -> Result<Outcome<ModifyShare, ImageShareStatus>, CloudError> {
        let region = self.spec.region_id.clone();
        let k = key(env, &region);
        if fresh {
            env.snapshots.invalidate(&k);
        }
        let images = env
            .snapshots
            .get(k, || swas::list_custom_images(&env.cloud, &region, &[]))
            .await?;
        let previous = self.status.clone().unwrap_or_default();
        let uid = self.metadata.uid.clone().unwrap_or_default();
        let input = ImageShareInput {
            spec: &self.spec,
            uid: &uid,
            image: images.iter().find(|i| i.image_id == self.spec.image_id),
            previous: &previous,
        };
        Ok(match stage {
            Stage::Apply => plan(&input, ctx),
            Stage::Cleanup => cleanup(&input, ctx),
        })
    }

    async fn execute(&self, env: &KindEnv, action: &ModifyShare) -> Result<(), CloudError> {
        let r = swas::modify_image_share_status(
            &env.cloud,
            &self.spec.region_id,
            &self.spec.image_id,
            action.operation,
            &action.client_token,
        )
        .await;
        env.snapshots.invalidate(&key(env, &self.spec.region_id));
        r
    }

    fn describe(action: &ModifyShare) -> String {
        format!(
            "ModifyImageShareStatus Operation={} ClientToken={}",
            action.operation.as_str(),
            action.client_token
        )
    }
}
