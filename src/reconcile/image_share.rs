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
    /// When the list `image` comes from completed: a list from before the operator's last
    /// write cannot show it.
    pub listed_at: DateTime<Utc>,
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

/// What the operator's last write (for this generation) means for what the list shows.
enum LastWrite {
    /// None, or one the cloud has shown, or one older than [`SETTLE_GRACE`]: the list is
    /// what it is.
    Nothing,
    /// The list completed before the write, so it cannot show it: the write stands for it.
    NotListedYet { in_share: bool },
    /// A later list shows it: from now on a difference is drift.
    Shown,
    /// A later list does not show it yet, within the grace: the cloud may still be applying it.
    Settling { message: String },
}

fn last_write(input: &ImageShareInput<'_>, image: &CustomImage, ctx: &PlanContext) -> LastWrite {
    let Some(w) = input
        .previous
        .last_write
        .as_ref()
        .filter(|w| w.generation == ctx.generation)
    else {
        return LastWrite::Nothing;
    };
    let Ok(at) = w.at.parse::<DateTime<Utc>>() else {
        return LastWrite::Nothing;
    };
    let in_share = w.operation == ShareOperation::Share.as_str();
    if input.listed_at < at {
        LastWrite::NotListedYet { in_share }
    } else if image.in_share == in_share {
        LastWrite::Shown
    } else if ctx.now - at < SETTLE_GRACE {
        LastWrite::Settling {
            message: format!(
                "{} sent at {}; waiting for the cloud to show it (it is sent again if it has not by {})",
                w.operation,
                w.at,
                rfc3339(at + SETTLE_GRACE)
            ),
        }
    } else {
        LastWrite::Nothing
    }
}

/// Records what the cloud shows of `image` in `status`, and returns whether this look should
/// take it as shared, with a wait if the last write may still be settling.
fn observe_with_last_write(
    input: &ImageShareInput<'_>,
    image: &CustomImage,
    ctx: &PlanContext,
    status: &mut ImageShareStatus,
) -> (bool, Option<String>) {
    observe(status, image);
    match last_write(input, image, ctx) {
        LastWrite::Nothing => (image.in_share, None),
        LastWrite::NotListedYet { in_share } => {
            status.in_share = Some(in_share);
            (in_share, None)
        }
        LastWrite::Shown => {
            status.last_write = None;
            (image.in_share, None)
        }
        LastWrite::Settling { message } => (image.in_share, Some(message)),
    }
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
    let (in_share, settling) = observe_with_last_write(input, image, ctx, &mut status);
    if in_share == spec.shared {
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
    // Same generation, so the write that may be settling is this same operation.
    if let Some(message) = settling {
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
    // What the cloud shows now is what is left to undo: a gone image has nothing. A write
    // of ours that may still be settling is waited for first: a Share that lands after the
    // release would leave the image shared.
    let in_share = match input.image {
        Some(image) => {
            let (in_share, settling) = observe_with_last_write(input, image, ctx, &mut status);
            if let Some(message) = settling {
                return wait_for(status, message);
            }
            in_share
        }
        None => {
            status.in_share = None;
            false
        }
    };
    match input.image {
        Some(_) if input.spec.deletion_policy == DeletionPolicy::UnShare && in_share => {
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
