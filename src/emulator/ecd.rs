//! ecd 2020-09-30: DescribeFotaTasks, UpdateFotaTask, DescribeDesktops, SetDesktopMaintenance,
//! and the tag actions on cloud computers (TagResources, UntagResources, ListTagResources).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::error::{ApiFailure, ApiResult};
use super::params::{NumberPage, Params, token_page, token_page_answer};
use super::state::{CloudState, EcdRegion, Effect, Settling};
use crate::cloud::ops::ecd::{
    DESKTOP_RESOURCE_TYPE, Desktop, MAX_DESKTOP_IDS_PER_CALL, MAX_TAG_RESOURCE_IDS_PER_CALL, Tag,
};

/// The region `RegionId` names.
pub(super) fn region<'a>(state: &'a mut CloudState, params: &Params) -> ApiResult<&'a mut EcdRegion> {
    let id = params.required("RegionId")?;
    state.ecd.get_mut(id).ok_or_else(|| {
        ApiFailure::new(
            400,
            "InvalidRegionId.NotFound",
            format!("The region {id} does not exist or is not supported."),
        )
    })
}

pub fn describe_fota_tasks(state: &mut CloudState, params: &Params) -> ApiResult<Value> {
    let uids = params.list("TaskUid", 100)?;
    let user_status = match params.optional("UserStatus") {
        Some(_) => Some(params.one_of("UserStatus", &["Running", "Pending"])?),
        None => None,
    };
    let r = region(state, params)?;
    let global = r.global_auto_update;
    let tasks: Vec<_> = r
        .fota_tasks
        .iter()
        .filter(|t| uids.is_empty() || uids.contains(&t.task_uid))
        .map(|t| {
            let mut t = t.clone();
            // While the global switch is on, every task is pushed automatically.
            if global {
                t.status = "Running".into();
            }
            // A region with desktops counts those not on the task's version yet.
            if !r.desktops.is_empty() {
                let pending = r
                    .desktops
                    .iter()
                    .filter(|d| r.app_version(&d.desktop_id) != t.app_version);
                t.pending_desktop_count = pending.count() as i64;
            }
            t
        })
        .filter(|t| user_status.is_none_or(|s| t.status == s))
        .collect();
    let mut body = token_page_answer("FotaTasks", &tasks, params, 20, 100)?;
    body["Code"] = json!("success");
    Ok(body)
}

pub fn update_fota_task(state: &mut CloudState, params: &Params) -> ApiResult<Value> {
    let uid = params.required("TaskUid")?.to_string();
    let status = params.one_of("UserStatus", &["Running", "Pending"])?;
    let r = region(state, params)?;
    let global = r.global_auto_update;
    let task = r.fota_tasks.iter_mut().find(|t| t.task_uid == uid).ok_or_else(|| {
        ApiFailure::new(
            404,
            "InvalidTaskUid.NotFound",
            format!("The image update task {uid} does not exist."),
        )
    })?;
    // With the global switch on the per-task switch has no effect: the call succeeds and
    // the task stays Running, as the API documentation describes.
    if !global {
        task.status = status.to_string();
    }
    Ok(json!({}))
}

pub fn describe_desktops(state: &mut CloudState, params: &Params) -> ApiResult<Value> {
    let ids = params.list("DesktopId", MAX_DESKTOP_IDS_PER_CALL)?;
    let office_site = params.optional("OfficeSiteId").map(str::to_string);
    let status = params.optional("DesktopStatus").map(str::to_string);
    // "If you specify DesktopId, this DesktopGroupId parameter is ignored."
    let group = params
        .optional("DesktopGroupId")
        .filter(|_| ids.is_empty())
        .map(str::to_string);
    let policy = params.optional("PolicyGroupId").map(str::to_string);
    let users = params.list("EndUserId", MAX_DESKTOP_IDS_PER_CALL)?;
    // Every pair must match (AND: the safe reading; the API does not say).
    let tags = params.pairs_list("Tag", MAX_TAGS_PER_CALL)?;
    let r = region(state, params)?;
    let unfiltered = ids.is_empty()
        && office_site.is_none()
        && status.is_none()
        && group.is_none()
        && policy.is_none()
        && users.is_empty()
        && tags.is_empty();
    // Unfiltered (how the operator lists): the page is cut from the region's list as it is.
    let (page, next, total): (Vec<Desktop>, _, _) = if unfiltered {
        let (page, next) = token_page(&r.desktops, params, 10, 100)?;
        (page, next, r.desktops.len())
    } else {
        let desktops: Vec<&Desktop> = r
            .desktops
            .iter()
            .filter(|d| ids.is_empty() || ids.contains(&d.desktop_id))
            .filter(|d| office_site.as_ref().is_none_or(|o| &d.office_site_id == o))
            .filter(|d| status.as_ref().is_none_or(|s| &d.desktop_status == s))
            .filter(|d| group.as_ref().is_none_or(|g| &d.desktop_group_id == g))
            .filter(|d| policy.as_ref().is_none_or(|p| d.has_policy(p)))
            .filter(|d| users.is_empty() || d.end_user_ids.iter().any(|u| users.contains(u)))
            .filter(|d| d.has_tags(tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
            .collect();
        let (page, next) = token_page(&desktops, params, 10, 100)?;
        (page.into_iter().cloned().collect(), next, desktops.len())
    };
    let mut body = json!({"Desktops": page, "TotalCount": total});
    if let Some(n) = next {
        body["NextToken"] = json!(n);
    }
    Ok(body)
}

pub fn set_desktop_maintenance(state: &mut CloudState, params: &Params, now: DateTime<Utc>) -> ApiResult<Value> {
    let mode = params.required("Mode")?.to_ascii_uppercase();
    if mode != "ENTER" && mode != "EXIT" {
        return Err(ApiFailure::invalid(
            "Mode",
            format!("{mode:?} is not one of ENTER, EXIT"),
        ));
    }
    let ids = params.list("DesktopIds", MAX_DESKTOP_IDS_PER_CALL)?;
    if ids.is_empty() {
        return Err(ApiFailure::missing("DesktopIds.1"));
    }
    let r = region(state, params)?;
    let wanted: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
    let existing: std::collections::HashSet<&str> = r
        .desktops
        .iter()
        .map(|d| d.desktop_id.as_str())
        .filter(|id| wanted.contains(id))
        .collect();
    let unknown: Vec<&String> = ids.iter().filter(|id| !existing.contains(id.as_str())).collect();
    if !unknown.is_empty() {
        let list = unknown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        return Err(ApiFailure::new(
            404,
            "InvalidDesktopId.NotFound",
            format!("The specified desktops do not exist: {list}"),
        ));
    }
    let count = ids.len();
    let effect = Effect::Maintenance {
        region: params.required("RegionId")?.to_string(),
        desktop_ids: ids,
        enter: mode == "ENTER",
    };
    match state.settles_at("SetDesktopMaintenance", now) {
        Some(at) => {
            // Until it settles, a desktop that enters shows the transitional flag.
            if let Effect::Maintenance {
                region,
                desktop_ids,
                enter: true,
            } = &effect
                && let Some(r) = state.ecd.get_mut(region)
            {
                let wanted: std::collections::HashSet<&String> = desktop_ids.iter().collect();
                for d in r.desktops.iter_mut().filter(|d| wanted.contains(&d.desktop_id)) {
                    d.management_flags.retain(|f| f != "NoFlag");
                    if !d.in_maintenance() {
                        d.management_flags.push("EnterMaintenance".into());
                    }
                }
            }
            state
                .journal
                .push(format!("{mode} of {count} desktop(s) settles at {at}"));
            state.settling.push(Settling { at, effect });
        }
        None => state.apply(&effect, now),
    }
    Ok(json!({}))
}

/// The tag APIs' limits (META): 20 tags a call, and a resource holds at most 20.
const MAX_TAGS_PER_CALL: usize = 20;
const MAX_TAGS_PER_RESOURCE: usize = 20;

fn desktop_resource_type(params: &Params) -> ApiResult<()> {
    match params.required("ResourceType")? {
        DESKTOP_RESOURCE_TYPE => Ok(()),
        other => Err(ApiFailure::new(
            400,
            "InvalidResourceType.Invalid",
            format!("The resource type {other} is not supported; use {DESKTOP_RESOURCE_TYPE}."),
        )),
    }
}

/// The ids of a tag call: 1 to 50, every one a desktop of the region.
fn tag_call_ids(r: &EcdRegion, params: &Params) -> ApiResult<Vec<String>> {
    let ids = params.list("ResourceId", MAX_TAG_RESOURCE_IDS_PER_CALL)?;
    if ids.is_empty() {
        return Err(ApiFailure::missing("ResourceId.1"));
    }
    let unknown: Vec<&str> = ids
        .iter()
        .filter(|id| !r.desktops.iter().any(|d| &&d.desktop_id == id))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(ApiFailure::new(
            404,
            "InvalidResourceId.NotFound",
            format!("The specified resources do not exist: {}", unknown.join(", ")),
        ));
    }
    Ok(ids)
}

pub fn tag_resources(state: &mut CloudState, params: &Params) -> ApiResult<Value> {
    desktop_resource_type(params)?;
    let tags = params.pairs_list("Tag", MAX_TAGS_PER_CALL)?;
    if tags.is_empty() {
        return Err(ApiFailure::missing("Tag.1.Key"));
    }
    for (key, value) in &tags {
        if key.starts_with("aliyun") || key.starts_with("acs:") || key.len() > 128 || value.len() > 128 {
            return Err(ApiFailure::new(
                400,
                "InvalidTagKey.Malformed",
                format!(
                    "The tag {key}={value} is invalid: a key is 1-128 characters and does not start with aliyun or acs:, a value at most 128"
                ),
            ));
        }
    }
    let r = region(state, params)?;
    let ids = tag_call_ids(r, params)?;
    // All or nothing: every desktop must have room for its new tags before any is set.
    let mut updated = Vec::new();
    for d in r.desktops.iter().filter(|d| ids.contains(&d.desktop_id)) {
        let mut next = d.tags.clone();
        for (key, value) in &tags {
            match next.iter_mut().find(|t| &t.key == key) {
                Some(t) => t.value = value.clone(),
                None => next.push(Tag {
                    key: key.clone(),
                    value: value.clone(),
                }),
            }
        }
        if next.len() > MAX_TAGS_PER_RESOURCE {
            return Err(ApiFailure::new(
                400,
                "QuotaExceed.TagsPerResource",
                format!(
                    "The resource {} would have more than {MAX_TAGS_PER_RESOURCE} tags.",
                    d.desktop_id
                ),
            ));
        }
        updated.push((d.desktop_id.clone(), next));
    }
    let count = updated.len();
    for (id, next) in updated {
        if let Some(d) = r.desktops.iter_mut().find(|d| d.desktop_id == id) {
            d.tags = next;
        }
    }
    let pairs: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    state
        .journal
        .push(format!("{count} desktop(s) tagged {}", pairs.join(", ")));
    Ok(json!({}))
}

pub fn untag_resources(state: &mut CloudState, params: &Params) -> ApiResult<Value> {
    desktop_resource_type(params)?;
    let keys = params.list("TagKey", MAX_TAGS_PER_CALL)?;
    let all = params.optional("All") == Some("true");
    if keys.is_empty() && !all {
        return Err(ApiFailure::missing("TagKey.1"));
    }
    let r = region(state, params)?;
    let ids = tag_call_ids(r, params)?;
    let mut count = 0;
    for d in r.desktops.iter_mut().filter(|d| ids.contains(&d.desktop_id)) {
        d.tags.retain(|t| !all && !keys.contains(&t.key));
        count += 1;
    }
    let what = if all { "every tag".to_string() } else { keys.join(", ") };
    state.journal.push(format!("{count} desktop(s) untagged: {what}"));
    Ok(json!({}))
}

pub fn list_tag_resources(state: &mut CloudState, params: &Params) -> ApiResult<Value> {
    desktop_resource_type(params)?;
    let ids = params.list("ResourceId", MAX_TAG_RESOURCE_IDS_PER_CALL)?;
    let tags = params.pairs_list("Tag", MAX_TAGS_PER_CALL)?;
    if ids.is_empty() && tags.is_empty() {
        return Err(ApiFailure::missing("ResourceId.1"));
    }
    let r = region(state, params)?;
    // Every given tag must be on the resource; an empty value matches any.
    let entries: Vec<Value> = r
        .desktops
        .iter()
        .filter(|d| ids.is_empty() || ids.contains(&d.desktop_id))
        .filter(|d| {
            tags.iter()
                .all(|(k, v)| d.tag(k).is_some_and(|have| v.is_empty() || have == v))
        })
        .flat_map(|d| {
            d.tags.iter().map(|t| {
                json!({"ResourceId": d.desktop_id, "ResourceType": DESKTOP_RESOURCE_TYPE,
                       "TagKey": t.key, "TagValue": t.value})
            })
        })
        .collect();
    token_page_answer("TagResources", &entries, params, 50, 1000)
}

/// DisconnectDesktopSessions takes at most this many sessions a call (META).
pub const MAX_SESSIONS_PER_DISCONNECT: usize = 20;

pub fn describe_desktop_sessions(state: &mut CloudState, params: &Params, now: DateTime<Utc>) -> ApiResult<Value> {
    let ids = params.list("DesktopId", MAX_DESKTOP_IDS_PER_CALL)?;
    let status = match params.optional("SessionStatus") {
        Some(_) => Some(params.one_of("SessionStatus", &["Connected", "Disconnected"])?),
        None => None,
    };
    let user = params.optional("EndUserId").map(str::to_string);
    let asked = NumberPage::of(params, "PageNumber", 10, 100)?;
    let r = region(state, params)?;
    let since = now - chrono::Duration::days(30);
    let sessions: Vec<Value> = r
        .session_log
        .iter()
        // Refused connections never were sessions; the API keeps 30 days.
        .filter(|s| s.ended_by != "refused" && s.end.is_none_or(|e| e >= since))
        .filter(|s| ids.is_empty() || ids.contains(&s.desktop_id))
        .filter(|s| user.as_ref().is_none_or(|u| &s.end_user_id == u))
        .filter(|s| match status {
            Some("Connected") => s.open(),
            Some(_) => !s.open(),
            None => true,
        })
        .map(|s| {
            let desktop = r.desktops.iter().find(|d| d.desktop_id == s.desktop_id);
            let end = s.end.unwrap_or(now);
            let mut v = json!({
                "DesktopId": s.desktop_id,
                "DesktopName": desktop.map(|d| d.desktop_name.as_str()).unwrap_or_default(),
                "OfficeSiteId": desktop.map(|d| d.office_site_id.as_str()).unwrap_or_default(),
                "EndUserId": s.end_user_id,
                "SessionStatus": if s.open() { "Connected" } else { "Disconnected" },
                "SessionStartTime": s.start.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "SessionIdleTime": s.idle_since.map(|i| (now - i).num_seconds().max(0)).unwrap_or(0),
                "LatestConnectionTime": (end - s.start).num_seconds().max(0),
                "TotalConnectionTime": (end - s.start).num_seconds().max(0),
            });
            if let Some(e) = s.end {
                v["SessionEndTime"] = json!(e.format("%Y-%m-%dT%H:%M:%SZ").to_string());
            }
            v
        })
        .collect();
    let total = sessions.len();
    Ok(json!({"Sessions": asked.slice(sessions), "TotalCount": total}))
}

pub fn disconnect_desktop_sessions(state: &mut CloudState, params: &Params, now: DateTime<Utc>) -> ApiResult<Value> {
    let sessions = params.objects("Sessions", &["DesktopId", "EndUserId"], MAX_SESSIONS_PER_DISCONNECT)?;
    if sessions.is_empty() {
        return Err(ApiFailure::missing("Sessions.1.DesktopId"));
    }
    for (i, s) in sessions.iter().enumerate() {
        for field in ["DesktopId", "EndUserId"] {
            if s.get(field).is_none_or(|v| v.is_empty()) {
                return Err(ApiFailure::missing(&format!("Sessions.{}.{field}", i + 1)));
            }
        }
    }
    let pre_check = params.optional("PreCheck") == Some("true");
    let r = region(state, params)?;
    let mut invalid = Vec::new();
    let mut journal = Vec::new();
    for s in &sessions {
        let (desktop, user) = (&s["DesktopId"], &s["EndUserId"]);
        let connected = r
            .desktops
            .iter()
            .any(|d| &d.desktop_id == desktop && d.sessions.iter().any(|x| &x.end_user_id == user));
        if !connected {
            invalid.push(json!({"DesktopId": desktop, "EndUserId": user}));
            journal.push(format!("{desktop}/{user}: no such session"));
        } else if pre_check {
            journal.push(format!("{desktop}/{user}: would be disconnected (PreCheck)"));
        } else {
            r.end_session(desktop, user, now, "DisconnectDesktopSessions");
            journal.push(format!("{desktop}/{user}: disconnected"));
        }
    }
    state.journal.extend(journal);
    let mut body = json!({});
    if !invalid.is_empty() {
        body["InvalidSessions"] = json!(invalid);
    }
    Ok(body)
}

pub fn send_console_message(state: &mut CloudState, params: &Params, now: DateTime<Utc>) -> ApiResult<Value> {
    let id = params.required("MessageId")?.to_string();
    let message = state
        .console_messages
        .iter()
        .find(|m| m.message_id == id)
        .ok_or_else(|| {
            ApiFailure::new(
                404,
                "InvalidMessageId.NotFound",
                format!("The specified message {id} does not exist."),
            )
        })?;
    if message.status != "Published" {
        return Err(ApiFailure::new(
            400,
            "InvalidMessageStatus",
            format!(
                "The message {id} is {}; only a Published message can be sent.",
                message.status
            ),
        ));
    }
    state.journal.push(format!("message {id} sent"));
    state.console_messages_sent.push(super::state::SentConsoleMessage {
        message_id: id,
        at: now,
    });
    Ok(json!({"Success": true}))
}

pub fn describe_console_messages(state: &mut CloudState, params: &Params) -> ApiResult<Value> {
    let ids = params.list("MessageIds", 100)?;
    let asked = NumberPage::of(params, "PageNum", 200, 200)?;
    let messages: Vec<Value> = state
        .console_messages
        .iter()
        .filter(|m| ids.is_empty() || ids.contains(&m.message_id))
        .map(|m| {
            json!({"MessageId": m.message_id, "Status": m.status, "MessageType": m.message_type,
                   "TargetType": m.target_type})
        })
        .collect();
    // TotalCount is a string in this API.
    let total = messages.len().to_string();
    Ok(json!({"MessageList": asked.slice(messages), "TotalCount": total}))
}
