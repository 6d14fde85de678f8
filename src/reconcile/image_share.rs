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
    /// The resourceVersion the plan reads: part of every new ClientToken, so that a count
    /// restarted by a lost status never repeats a token.
    pub resource_version: &'a str,
    /// The image, if the cloud lists it.
    pub image: Option<&'a CustomImage>,
    /// When the list `image` comes from completed: a list from before the operator's last
    /// write cannot show it.
    pub listed_at: DateTime<Utc>,
    pub previous: &'a ImageShareStatus,
}

/// A ClientToken from the resource uid, its generation and resourceVersion, the operation
/// and the count of operations so far. It is recorded before the call, and the same write
/// retried reuses the recorded one; a later repair gets a new one, even after the status
/// (and its count) was lost: the resourceVersion never comes back. ASCII, 64 characters at
/// most, as the API requires.
pub fn client_token(uid: &str, generation: i64, resource_version: &str, op: ShareOperation, sequence: i32) -> String {
    let digest = Sha256::digest(format!(
        "{uid}/{generation}/{resource_version}/{}/{sequence}",
        op.as_str()
    ));
    format!("ishare-{}", &hex::encode(digest)[..48])
}

/// How long a Share or UnShare the cloud answered with success may take to show in its
/// lists before it is sent again (with a new ClientToken, and another of the 10 calls a
/// minute the account has).
pub const SETTLE_GRACE: chrono::Duration = chrono::Duration::minutes(5);

/// What the operator's last write means for what the list shows. Matched by operation, not
/// by generation: deletion and unrelated edits bump the generation while a write settles.
enum LastWrite {
    /// None, or one older than [`SETTLE_GRACE`] that never showed: the list is what it is,
    /// and the record is dropped.
    Nothing,
    /// Recorded before the call, and never answered with success (the call failed, its
    /// answer was lost, or the process stopped first): it may or may not have landed. It is
    /// sent again with the same ClientToken, which the cloud applies at most once.
    Unanswered {
        operation: ShareOperation,
        client_token: String,
    },
    /// Answered with success, and the list started before the answer or does not show it
    /// yet (within the grace): the write stands for the list until `until`.
    Pending {
        in_share: bool,
        message: Option<String>,
        until: DateTime<Utc>,
    },
    /// A list started after the write shows it: from now on a difference is drift.
    Shown,
}

/// Times of writes to the millisecond: they are compared with when lists started.
fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Notes when the cloud answered the write `action` with success: a list that started
/// before then cannot be relied on to show it (not even with the write replayed onto it).
pub fn record_answer(status: &mut ImageShareStatus, action: &ModifyShare, answered_at: DateTime<Utc>) {
    if let Some(w) = &mut status.last_write
        && w.client_token == action.client_token
    {
        w.answered_at = Some(stamp(answered_at));
    }
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    text.parse::<DateTime<Utc>>().ok()
}

fn last_write(input: &ImageShareInput<'_>, image: &CustomImage, ctx: &PlanContext) -> LastWrite {
    let Some(w) = input.previous.last_write.as_ref() else {
        return LastWrite::Nothing;
    };
    let (Some(at), Some(operation)) = (parse_time(&w.at), ShareOperation::parse(&w.operation)) else {
        return LastWrite::Nothing;
    };
    let in_share = operation == ShareOperation::Share;
    let shows = image.in_share == in_share;
    // A record from before answers were recorded has no token: it is taken as answered.
    let answered = match &w.answered_at {
        Some(a) => parse_time(a).unwrap_or(at),
        None if w.client_token.is_empty() => at,
        // A list that started after the intent and shows its effect ends it.
        None if input.listed_at >= at && shows => return LastWrite::Shown,
        None => {
            return LastWrite::Unanswered {
                operation,
                client_token: w.client_token.clone(),
            };
        }
    };
    if input.listed_at >= answered && shows {
        LastWrite::Shown
    } else if input.listed_at < answered {
        LastWrite::Pending {
            in_share,
            message: None,
            until: answered + SETTLE_GRACE,
        }
    } else if ctx.now - answered < SETTLE_GRACE {
        LastWrite::Pending {
            in_share,
            until: answered + SETTLE_GRACE,
            message: Some(format!(
                "{} sent at {}; the cloud does not show it yet (it is sent again if it has not by {})",
                w.operation,
                rfc3339(answered),
                rfc3339(answered + SETTLE_GRACE)
            )),
        }
    } else {
        LastWrite::Nothing
    }
}

/// What one look at the image concludes, with the operator's last write taken into account.
struct Look {
    /// Whether the image counts as shared: the list, or a write of ours that stands for it.
    in_share: bool,
    /// Why a write of ours stands for the list, when one does, and until when.
    pending: Option<(String, DateTime<Utc>)>,
    /// A write whose outcome is unknown, to send again with its own ClientToken.
    unanswered: Option<(ShareOperation, String)>,
}

/// Records what the cloud shows of `image` in `status` (a write of ours that stands for the
/// list is recorded as done, so deletion undoes a Share that has not shown yet).
fn look(input: &ImageShareInput<'_>, image: &CustomImage, ctx: &PlanContext, status: &mut ImageShareStatus) -> Look {
    observe(status, image);
    let mut look = Look {
        in_share: image.in_share,
        pending: None,
        unanswered: None,
    };
    match last_write(input, image, ctx) {
        LastWrite::Nothing | LastWrite::Shown => status.last_write = None,
        LastWrite::Unanswered {
            operation,
            client_token,
        } => look.unanswered = Some((operation, client_token)),
        LastWrite::Pending {
            in_share,
            message,
            until,
        } => {
            status.in_share = Some(in_share);
            look.in_share = in_share;
            let message = message.unwrap_or_else(|| {
                "the last write was answered after the list was read; it stands for the list".into()
            });
            look.pending = Some((message, until));
        }
    }
    look
}

fn observe(status: &mut ImageShareStatus, image: &CustomImage) {
    status.in_share = Some(image.in_share);
    status.image_name = Some(image.name.clone());
    status.image_status = Some(image.status.clone());
}

/// The write of `op`: the intent (recorded before the call: the observed status with the
/// write unanswered) and the status once the cloud answers it with success. An unanswered
/// write of the same operation is sent again with its own ClientToken; any other gets a
/// new one.
fn write(
    input: &ImageShareInput<'_>,
    ctx: &PlanContext,
    op: ShareOperation,
    unanswered: Option<(ShareOperation, String)>,
    observed: ImageShareStatus,
) -> (ModifyShare, ImageShareStatus, ImageShareStatus) {
    let mut intent = observed;
    let client_token = match unanswered {
        Some((o, token)) if o == op => token,
        _ => {
            // The count is recorded before the call, so a call that reached the cloud is
            // never followed by a repair with the same token.
            let sequence = input.previous.share_operations.saturating_add(1);
            let token = client_token(input.uid, ctx.generation, input.resource_version, op, sequence);
            intent.share_operations = sequence;
            intent.last_write = Some(ShareWrite {
                operation: op.as_str().to_string(),
                at: stamp(ctx.now),
                generation: ctx.generation,
                client_token: token.clone(),
                answered_at: None,
            });
            token
        }
    };
    // The answer's time is set by [`record_answer`] when it comes; until then, the plan's.
    let mut answered = intent.clone();
    if let Some(w) = &mut answered.last_write {
        w.answered_at = Some(stamp(ctx.now));
    }
    answered.in_share = Some(op == ShareOperation::Share);
    (
        ModifyShare {
            operation: op,
            client_token,
        },
        intent,
        answered,
    )
}

fn send(
    input: &ImageShareInput<'_>,
    ctx: &PlanContext,
    op: ShareOperation,
    look: Look,
    observed: ImageShareStatus,
    message: String,
) -> Outcome<ModifyShare, ImageShareStatus> {
    let (action, intent, status) = write(input, ctx, op, look.unanswered, observed);
    Outcome {
        actions: vec![action],
        intent: Some(intent),
        status,
        verdict: Verdict::not_ready(Reason::Applying, message),
        requeue_after: Some(VERIFY_AFTER),
    }
}

/// Waits for a write of ours that may still be settling, instead of sending another.
fn wait_for(status: ImageShareStatus, message: String) -> Outcome<ModifyShare, ImageShareStatus> {
    Outcome {
        actions: vec![],
        intent: None,
        status,
        verdict: Verdict::not_ready(Reason::Applying, message),
        requeue_after: Some(VERIFY_AFTER),
    }
}

pub fn plan(input: &ImageShareInput<'_>, ctx: &PlanContext) -> Outcome<ModifyShare, ImageShareStatus> {
    let spec = input.spec;
    let mut status = input.previous.clone();
    let Some(image) = input.image else {
        status.in_share = None;
        status.last_write = None;
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
    let look = look(input, image, ctx, &mut status);
    if look.in_share == spec.shared {
        let state = if spec.shared {
            "shared to ECS"
        } else {
            "not shared to ECS"
        };
        // A write that stands for the list keeps Ready as it is (the cloud answered it);
        // it is looked at again once it should have shown.
        let (message, requeue_after) = match &look.pending {
            Some((p, until)) => (
                format!("image {} is {state} ({p})", image.image_id),
                Some(super::until(ctx.now, *until).max(VERIFY_AFTER)),
            ),
            None => (format!("image {} is {state}", image.image_id), None),
        };
        return Outcome {
            actions: vec![],
            intent: None,
            status,
            verdict: Verdict::ready(Reason::InSync, message),
            requeue_after,
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
    let message = format!("{} image {}", op.as_str(), image.image_id);
    send(input, ctx, op, look, status, message)
}

/// On deletion: unshare when `deletionPolicy: UnShare` and the image is shared, or a Share
/// of ours may still land. What remains is what the cloud shows now, plus our own writes
/// that have not shown yet.
pub fn cleanup(input: &ImageShareInput<'_>, ctx: &PlanContext) -> Outcome<ModifyShare, ImageShareStatus> {
    let mut status = input.previous.clone();
    let done = |status| Outcome {
        actions: vec![],
        intent: None,
        status,
        verdict: Verdict::ready(Reason::InSync, "nothing to clean up"),
        requeue_after: None,
    };
    // A gone image has nothing to undo.
    let Some(image) = input.image else {
        status.in_share = None;
        status.last_write = None;
        return done(status);
    };
    let look = look(input, image, ctx, &mut status);
    if input.spec.deletion_policy != DeletionPolicy::UnShare {
        return done(status);
    }
    // A write of ours that the cloud answered and does not show yet is waited for first: an
    // UnShare sent while a Share settles could be overtaken by it, and an UnShare that has
    // not shown yet is not a clean cloud.
    if let Some((message, _)) = look.pending {
        return wait_for(status, message);
    }
    // A Share whose outcome is unknown may have landed: unshare anyway.
    let share_unknown = matches!(&look.unanswered, Some((ShareOperation::Share, _)));
    if look.in_share || share_unknown {
        return send(
            input,
            ctx,
            ShareOperation::UnShare,
            look,
            status,
            "unsharing before deletion".into(),
        );
    }
    done(status)
}
