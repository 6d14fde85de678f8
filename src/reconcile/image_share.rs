//! ImageShare: share or unshare, with a ClientToken that makes retries harmless.

use sha2::{Digest, Sha256};

use chrono::{DateTime, Utc};

use super::{Outcome, PlanContext, Reason, VERIFY_AFTER, Verdict, rfc3339};
use crate::api::image_share::{DeletionPolicy, ImageShareSpec, ImageShareStatus, ShareWrite};
use crate::cloud::ops::swas::{CustomImage, ShareOperation};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModifyShare {
    pub operation: ShareOperation,
    pub client_token: String,
}

pub struct ImageShareInput<'a> {
    pub spec: &'a ImageShareSpec,
    /// The resource's uid: part of every ClientToken.
    pub uid: &'a str,
    /// The image, if the cloud lists it.
    pub image: Option<&'a CustomImage>,
    pub previous: &'a ImageShareStatus,
}

/// A ClientToken from the resource uid, its generation, the operation and the count of
/// operations so far: the same write retried reuses it, a later repair gets a new one.
/// ASCII, 64 characters at most, as the API requires.
pub fn client_token(uid: &str, generation: i64, op: ShareOperation, sequence: i32) -> String {
    let digest = Sha256::digest(format!("{uid}/{generation}/{}/{sequence}", op.as_str()));
    format!("ishare-{}", &hex::encode(digest)[..48])
}

/// How long a sent Share or UnShare may take to show in the cloud before it is sent again
/// (with a new ClientToken, and another of the 10 calls a minute the account has).
pub const SETTLE_GRACE: chrono::Duration = chrono::Duration::minutes(5);

/// The same operation, for the same generation, sent less than [`SETTLE_GRACE`] ago: the
/// cloud may still be applying it.
fn still_settling(previous: &ImageShareStatus, op: ShareOperation, ctx: &PlanContext) -> Option<String> {
    let w = previous.last_write.as_ref()?;
    let at: DateTime<Utc> = w.at.parse().ok()?;
    let settling = w.operation == op.as_str() && w.generation == ctx.generation && ctx.now - at < SETTLE_GRACE;
    settling.then(|| {
        format!(
            "{} sent at {}; waiting for the cloud to show it (it is sent again if it has not by {})",
            op.as_str(),
            w.at,
            rfc3339(at + SETTLE_GRACE)
        )
    })
}

/// Waits for a write that may still be settling, instead of sending it again.
fn wait_for(status: ImageShareStatus, message: String) -> Outcome<ModifyShare, ImageShareStatus> {
    Outcome {
        actions: vec![],
        intent: None,
        status,
        verdict: Verdict::not_ready(Reason::Applying, message),
        requeue_after: Some(VERIFY_AFTER),
    }
}

fn observe(status: &mut ImageShareStatus, image: &CustomImage) {
    status.in_share = Some(image.in_share);
    status.image_name = Some(image.name.clone());
    status.image_status = Some(image.status.clone());
}

fn write(
    input: &ImageShareInput<'_>,
    ctx: &PlanContext,
    op: ShareOperation,
    status: &mut ImageShareStatus,
) -> (ModifyShare, ImageShareStatus) {
    let sequence = input.previous.share_operations.saturating_add(1);
    let action = ModifyShare {
        operation: op,
        client_token: client_token(input.uid, ctx.generation, op, sequence),
    };
    // The count is recorded before the call, so a call that reached the cloud is never
    // followed by a repair with the same token.
    let mut intent = input.previous.clone();
    intent.share_operations = sequence;
    status.share_operations = sequence;
    let sent = Some(ShareWrite {
        operation: op.as_str().to_string(),
        at: rfc3339(ctx.now),
        generation: ctx.generation,
    });
    intent.last_write = sent.clone();
    status.last_write = sent;
    status.in_share = Some(op == ShareOperation::Share);
    (action, intent)
}

pub fn plan(input: &ImageShareInput<'_>, ctx: &PlanContext) -> Outcome<ModifyShare, ImageShareStatus> {
    let spec = input.spec;
    let mut status = input.previous.clone();
    let Some(image) = input.image else {
        status.in_share = None;
        return Outcome {
            actions: vec![],
            intent: None,
            status,
            verdict: Verdict::not_ready(
                Reason::NotFound,
                format!(
                    "custom image {} does not exist in {}; it is checked again at every resync",
                    spec.image_id, spec.region_id
                ),
            ),
            requeue_after: None,
        };
    };
    observe(&mut status, image);
    if image.in_share == spec.shared {
        let state = if spec.shared {
            "shared to ECS"
        } else {
            "not shared to ECS"
        };
        return Outcome {
            actions: vec![],
            intent: None,
            status,
            verdict: Verdict::ready(Reason::InSync, format!("image {} is {state}", image.image_id)),
            requeue_after: None,
        };
    }
    let op = if spec.shared {
        ShareOperation::Share
    } else {
        ShareOperation::UnShare
    };
    if !ctx.manages() {
        let msg = format!(
            "image {} should be {}; ObserveOnly, nothing written",
            image.image_id,
            if spec.shared { "shared" } else { "unshared" }
        );
        return Outcome {
            actions: vec![],
            intent: None,
            status,
            verdict: Verdict::not_ready(Reason::DriftDetected, msg),
            requeue_after: None,
        };
    }
    if let Some(message) = still_settling(input.previous, op, ctx) {
        return wait_for(status, message);
    }
    let (action, intent) = write(input, ctx, op, &mut status);
    Outcome {
        actions: vec![action],
        intent: Some(intent),
        status,
        verdict: Verdict::not_ready(Reason::Applying, format!("{} image {}", op.as_str(), image.image_id)),
        requeue_after: Some(VERIFY_AFTER),
    }
}

/// On deletion: unshare when `deletionPolicy: UnShare` and the image is shared.
pub fn cleanup(input: &ImageShareInput<'_>, ctx: &PlanContext) -> Outcome<ModifyShare, ImageShareStatus> {
    let mut status = input.previous.clone();
    let done = |status| Outcome {
        actions: vec![],
        intent: None,
        status,
        verdict: Verdict::ready(Reason::InSync, "nothing to clean up"),
        requeue_after: None,
    };
    // What the cloud shows now is what is left to undo: a gone image has nothing.
    match input.image {
        Some(image) => observe(&mut status, image),
        None => status.in_share = None,
    }
    match input.image {
        Some(image) if input.spec.deletion_policy == DeletionPolicy::UnShare && image.in_share => {
            if let Some(message) = still_settling(input.previous, ShareOperation::UnShare, ctx) {
                return wait_for(status, message);
            }
            let (action, intent) = write(input, ctx, ShareOperation::UnShare, &mut status);
            Outcome {
                actions: vec![action],
                intent: Some(intent),
                status,
                verdict: Verdict::not_ready(Reason::Applying, "unsharing before deletion"),
                requeue_after: None,
            }
        }
        _ => done(status),
    }
}
