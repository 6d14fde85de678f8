use crate::cloud::Product;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::api::image_share::{DeletionPolicy, ImageShare, ImageShareStatus};
use crate::cloud::CloudError;
use crate::cloud::ops::swas;
use crate::cloud::snapshot::Pages;
use crate::controller::events;
use crate::controller::kind::{KindEnv, ManagedKind, Stage};
use crate::reconcile::image_share::{ImageShareInput, ModifyShare, cleanup, plan};
use crate::reconcile::{Outcome, PlanContext};

const LIST: &str = "ListCustomImages";

/// A region's images by id: every resource of the region looks its own up (10,000 resources
/// over 10,000 images would otherwise cost 10^8 comparisons per round). A B-tree grows node by
/// node as pages come: a hash map of 10,000 images doubles its table on the way, holding the
/// old and the new (6 MiB at the peak).
type Images = BTreeMap<Box<str>, Listed>;

/// What the shared list keeps of an image: what a resource reads of it (its id is the key).
/// The answer's other fields (description, region, sharing to accounts) would take as much
/// again, for every image of the region.
#[derive(Clone)]
struct Listed {
    name: Box<str>,
    status: Box<str>,
    in_share: bool,
}

impl Listed {
    fn image(&self, id: &str) -> swas::CustomImage {
        swas::CustomImage {
            image_id: id.to_string(),
            name: self.name.to_string(),
            status: self.status.to_string(),
            in_share: self.in_share,
            ..Default::default()
        }
    }
}

fn by_id(images: Vec<swas::CustomImage>) -> impl Iterator<Item = (Box<str>, Listed)> {
    images.into_iter().map(|i| {
        let listed = Listed {
            name: i.name.into(),
            status: i.status.into(),
            in_share: i.in_share,
        };
        (i.image_id.into(), listed)
    })
}

impl ManagedKind for ImageShare {
    type Status = ImageShareStatus;
    type Action = ModifyShare;
    const KIND: &'static str = "ImageShare";
    const WRITE: (Product, &'static str) = (Product::SwasOpen, "ModifyImageShareStatus");
    const READS_PEERS: bool = false;
    /// Every write is decided on a read of its own image (one call): a list that is
    /// minutes old must not send a second Share while the first one propagates.
    const FRESH_READ_BEFORE_WRITE: bool = true;

    crate::kind_accessors!(ImageShareStatus, region_id);
    fn needs_finalizer(&self) -> bool {
        self.spec.deletion_policy == DeletionPolicy::UnShare
    }

    async fn read_and_plan(
        &self,
        env: &KindEnv,
        _peers: &[Arc<Self>],
        ctx: &PlanContext,
        stage: Stage,
        fresh: bool,
    ) -> Result<Outcome<ModifyShare, ImageShareStatus>, CloudError> {
        let region = self.spec.region_id.clone();
        // Deletion reads its own image fresh: the finalizer goes on what the cloud shows now.
        let id = &self.spec.image_id;
        let (image, listed_at) = if fresh || stage == Stage::Cleanup {
            let listed_at = chrono::Utc::now();
            let ids = [id.clone()];
            // Its own client: a read the limits cannot send at once is deferred, not waited for.
            let images = swas::list_custom_images(&env.cloud, &region, &ids).await?;
            (images.into_iter().find(|i| &i.image_id == id), listed_at)
        } else {
            // Answered by the first page that holds the image: at a cold start, the writes of
            // the resources whose images come early start while the list still pages.
            env.snapshot_lookup(
                LIST,
                &region,
                |cloud, pages: Pages<Images>| {
                    let region = region.clone();
                    async move {
                        // The pages, filed by id as they come, are the list: one copy of it.
                        let publish = |page: Vec<swas::CustomImage>| {
                            pages.publish(|so_far: &mut Images| so_far.extend(by_id(page)))
                        };
                        swas::list_custom_images_paged(&cloud, &region, &[], publish).await?;
                        Ok(pages.into_listed())
                    }
                },
                {
                    let id = id.clone();
                    move |images: &Images| images.get(id.as_str()).map(|l| l.image(&id))
                },
            )
            .await?
        };
        let previous = self.status.clone().unwrap_or_default();
        let uid = self.metadata.uid.clone().unwrap_or_default();
        let resource_version = self.metadata.resource_version.clone().unwrap_or_default();
        let input = ImageShareInput {
            spec: &self.spec,
            uid: &uid,
            resource_version: &resource_version,
            image: image.as_ref(),
            listed_at,
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
        match &r {
            Ok(()) => {
                let image_id = self.spec.image_id.clone();
                let in_share = action.operation == swas::ShareOperation::Share;
                env.write_through(LIST, &self.spec.region_id, move |images: &mut Images| {
                    if let Some(i) = images.get_mut(image_id.as_str()) {
                        i.in_share = in_share;
                    }
                })
            }
            Err(_) => env.invalidate(LIST, &self.spec.region_id),
        }
        r
    }

    /// With `deletionPolicy: UnShare`, deletion owes an unshare while the image is shared,
    /// and waits for a write of ours that has not shown in the cloud yet.
    fn recorded(&self, status: &ImageShareStatus) -> Vec<String> {
        if self.spec.deletion_policy != DeletionPolicy::UnShare {
            return vec![];
        }
        if status.in_share == Some(true) {
            return vec![format!("image {} shared to ECS", self.spec.image_id)];
        }
        match &status.last_write {
            Some(w) => vec![format!(
                "{} of image {} recorded at {}, not shown by the cloud yet",
                w.operation, self.spec.image_id, w.at
            )],
            None => vec![],
        }
    }

    /// What the cloud shows of the image, without the write that was not sent.
    fn status_held_back(previous: ImageShareStatus, intent: Option<&ImageShareStatus>) -> ImageShareStatus {
        match intent {
            Some(observed) => ImageShareStatus {
                in_share: observed.in_share,
                image_name: observed.image_name.clone(),
                image_status: observed.image_status.clone(),
                ..previous
            },
            None => previous,
        }
    }

    fn record_answer(status: &mut ImageShareStatus, action: &ModifyShare, answered_at: chrono::DateTime<chrono::Utc>) {
        crate::reconcile::image_share::record_answer(status, action, answered_at);
    }

    fn event_reason(action: &ModifyShare) -> &'static str {
        match action.operation {
            swas::ShareOperation::Share => events::SHARED,
            swas::ShareOperation::UnShare => events::UNSHARED,
        }
    }

    fn describe(action: &ModifyShare) -> String {
        format!(
            "ModifyImageShareStatus Operation={} ClientToken={}",
            action.operation.as_str(),
            action.client_token
        )
    }

    fn describe_planned(action: &ModifyShare, uid_known: bool) -> String {
        if uid_known {
            return Self::describe(action);
        }
        format!(
            "ModifyImageShareStatus Operation={} ClientToken=(made from the uid the cluster gives it)",
            action.operation.as_str()
        )
    }
}
