//! swas-open 2020-06-01: ListCustomImages, ModifyImageShareStatus.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::error::{ApiFailure, ApiResult};
use super::params::Params;
use super::state::{CloudState, Effect, Settling};
use crate::cloud::ops::swas::CustomImage;

/// The documented quota of ModifyImageShareStatus: 10 calls a minute per account.
pub const SHARE_CALLS_PER_MINUTE: usize = 10;

/// How long a ClientToken is remembered; the book holds no more than that window's tokens.
pub const CLIENT_TOKEN_TTL: Duration = Duration::minutes(15);

/// A remembered ClientToken: what it was used for, the answer, and when.
#[derive(Debug)]
struct TokenUse {
    fingerprint: String,
    request_id: String,
    at: DateTime<Utc>,
}

/// ClientTokens used in the last [`CLIENT_TOKEN_TTL`], and recent calls per account for the quota.
#[derive(Debug, Default)]
pub struct ShareBook {
    tokens: HashMap<(String, String), TokenUse>,
    calls: HashMap<String, VecDeque<DateTime<Utc>>>,
}

impl ShareBook {
    fn forget_before(&mut self, now: DateTime<Utc>) {
        self.tokens.retain(|_, u| u.at + CLIENT_TOKEN_TTL > now);
        self.calls.retain(|_, calls| {
            while calls.front().is_some_and(|t| *t + Duration::minutes(1) <= now) {
                calls.pop_front();
            }
            !calls.is_empty()
        });
    }
}

pub fn list_custom_images(state: &mut CloudState, params: &Params) -> ApiResult<Value> {
    let region = params.required("RegionId")?;
    let ids: Option<Vec<String>> = match params.optional("ImageIds") {
        None => None,
        Some(raw) => {
            // The API reference shows a JSON array; the SDK documentation also allows a
            // comma-separated list.
            let ids: Vec<String> = if raw.trim_start().starts_with('[') {
                serde_json::from_str(raw)
                    .map_err(|_| ApiFailure::invalid("ImageIds", "must be a JSON array of strings, e.g. [\"m-xxx\"]"))?
            } else {
                raw.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            };
            if ids.len() > 100 {
                return Err(ApiFailure::invalid("ImageIds", "at most 100 image ids are allowed"));
            }
            Some(ids)
        }
    };
    let share = match params.optional("Share") {
        None => None,
        // The Python SDK sends str(True), "True".
        Some(v) if v.eq_ignore_ascii_case("true") => Some(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Some(false),
        Some(_) => return Err(ApiFailure::invalid("Share", "must be true or false")),
    };
    let page_number = params.int("PageNumber", 1, i64::from(i32::MAX), 1)?;
    let page_size = params.int("PageSize", 1, 100, 10)?;
    let all = state
        .swas
        .get(region)
        .map(|r| r.custom_images.as_slice())
        .unwrap_or_default();
    let matching = |i: &&CustomImage| {
        ids.as_ref().is_none_or(|ids| ids.contains(&i.image_id)) && (share != Some(false) || !i.in_share)
    };
    // Only the page is serialized; nothing else is copied, and the total is counted in place.
    let start = ((page_number - 1) * page_size) as usize;
    let page: Vec<&CustomImage> = all
        .iter()
        .filter(matching)
        .skip(start)
        .take(page_size as usize)
        .collect();
    let total = if ids.is_none() && share != Some(false) {
        all.len()
    } else {
        all.iter().filter(matching).count()
    };
    // The API documents these counts as strings.
    Ok(json!({
        "CustomImages": page,
        "TotalCount": total.to_string(),
        "PageNumber": page_number.to_string(),
        "PageSize": page_size.to_string(),
    }))
}

pub fn modify_image_share_status(
    state: &mut CloudState,
    book: &mut ShareBook,
    account: &str,
    params: &Params,
    now: DateTime<Utc>,
) -> ApiResult<Value> {
    let region = params.required("RegionId")?.to_string();
    let image_id = params.required("ImageId")?.to_string();
    let operation = params.required("Operation")?;
    if operation != "Share" && operation != "UnShare" {
        return Err(ApiFailure::new(
            400,
            "InvalidParam.OperationIllegal",
            "The specified parameter operation is illegal.",
        ));
    }
    let token = params.optional("ClientToken");
    if let Some(t) = token
        && (t.len() > 64 || !t.is_ascii())
    {
        return Err(ApiFailure::invalid(
            "ClientToken",
            "must be ASCII and at most 64 characters",
        ));
    }
    let fingerprint = format!("{region}|{image_id}|{operation}");
    book.forget_before(now);
    if let Some(t) = token
        && let Some(used) = book.tokens.get(&(account.to_string(), t.to_string()))
    {
        if used.fingerprint == fingerprint {
            // Same token, same request: answer as before and do nothing again.
            return Ok(json!({"RequestId": used.request_id}));
        }
        return Err(ApiFailure::new(
            400,
            "IdempotentParameterMismatch",
            "The ClientToken was already used with other parameters.",
        ));
    }
    let calls = book.calls.entry(account.to_string()).or_default();
    if calls.len() >= SHARE_CALLS_PER_MINUTE {
        return Err(ApiFailure::throttled());
    }
    calls.push_back(now);
    let known = state
        .swas
        .get(&region)
        .is_some_and(|r| r.custom_images.iter().any(|i| i.image_id == image_id));
    if !known {
        return Err(ApiFailure::new(
            404,
            "InvalidImageId.NotFound",
            "The specified ImageId does not exist.",
        ));
    }
    let effect = Effect::ImageShare {
        region: region.clone(),
        image_id: image_id.clone(),
        in_share: operation == "Share",
    };
    // Accepted now; it shows now, or once it settles.
    match state.settles_at("ModifyImageShareStatus", now) {
        Some(at) => state.settling.push(Settling { at, effect }),
        None => state.apply(&effect, now),
    }
    let request_id = super::new_request_id();
    if let Some(t) = token {
        book.tokens.insert(
            (account.to_string(), t.to_string()),
            TokenUse {
                fingerprint,
                request_id: request_id.clone(),
                at: now,
            },
        );
    }
    Ok(json!({"RequestId": request_id}))
}
