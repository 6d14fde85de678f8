//! ecd 2020-09-30, image (FOTA) updates desktop by desktop: ApproveFotaUpdate,
//! DescribeFotaPendingDesktops, DescribeDesktopInfo.
//!
//! The docs: an update runs only on a desktop that is Running with nobody connected, takes
//! 10-15 minutes (`fotaUpdateSeconds` here), and may leave the desktop `Failed`. Where they
//! name no error code the emulator chose one (listed in the README).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::ecd::region;
use super::error::{ApiFailure, ApiResult};
use super::params::{Params, token_page_answer};
use super::state::{CloudState, FotaUpdate};
use crate::cloud::ops::ecd::MAX_DESKTOP_IDS_PER_CALL;

fn no_desktop(id: &str) -> ApiFailure {
    ApiFailure::new(
        404,
        "InvalidDesktopId.NotFound",
        format!("The specified desktops do not exist: {id}"),
    )
}

pub fn approve_fota_update(state: &mut CloudState, params: &Params, now: DateTime<Utc>) -> ApiResult<Value> {
    let id = params.required("DesktopId")?.to_string();
    let version = params.required("AppVersion")?.to_string();
    let r = region(state, params)?;
    if !r.fota_tasks.iter().any(|t| t.app_version == version) {
        return Err(ApiFailure::new(
            404,
            "InvalidAppVersion.NotFound",
            format!("No image update task offers the version {version}."),
        ));
    }
    let d = r
        .desktops
        .iter()
        .find(|d| d.desktop_id == id)
        .ok_or_else(|| no_desktop(&id))?;
    if d.desktop_status != "Running" {
        return Err(ApiFailure::new(
            400,
            "IncorrectDesktopStatus",
            format!(
                "The desktop {id} is {}; only a Running desktop can be updated.",
                d.desktop_status
            ),
        ));
    }
    if d.connected() {
        return Err(ApiFailure::new(
            400,
            "IncorrectDesktopStatus.Connected",
            format!("The desktop {id} has end users connected; it is updated only when nobody is."),
        ));
    }
    let effect = if r.app_version(&id) == version || r.fota_updates.iter().any(|u| u.desktop_id == id) {
        format!("{id}: already at or updating to {version}")
    } else {
        let fails = match r.fota_failures.iter().position(|f| *f == id) {
            Some(i) => {
                r.fota_failures.remove(i);
                true
            }
            None => false,
        };
        let until = now + chrono::Duration::seconds(r.fota_update_seconds.clamp(0, 86_400));
        r.fota_updates.push(FotaUpdate {
            desktop_id: id.clone(),
            app_version: version.clone(),
            until,
            fails,
        });
        format!(
            "{id}: updating {} -> {version} until {until}{}",
            r.app_version(&id),
            if fails { ", to fail" } else { "" }
        )
    };
    state.journal.push(effect);
    Ok(json!({}))
}

pub fn describe_fota_pending_desktops(state: &mut CloudState, params: &Params) -> ApiResult<Value> {
    let uid = params.required("TaskUid")?.to_string();
    let desktop = params.optional("DesktopId").map(str::to_string);
    let site = params.optional("OfficeSiteId").map(str::to_string);
    let r = region(state, params)?;
    let task = r.fota_tasks.iter().find(|t| t.task_uid == uid).ok_or_else(|| {
        ApiFailure::new(
            404,
            "InvalidTaskUid.NotFound",
            format!("The image update task {uid} does not exist."),
        )
    })?;
    let pending: Vec<Value> = r
        .desktops
        .iter()
        .filter(|d| desktop.as_ref().is_none_or(|id| &d.desktop_id == id))
        .filter(|d| site.as_ref().is_none_or(|s| &d.office_site_id == s))
        .filter(|d| r.app_version(&d.desktop_id) != task.app_version)
        .map(|d| {
            json!({
                "DesktopId": d.desktop_id,
                "DesktopName": d.desktop_name,
                "OfficeSiteId": d.office_site_id,
                "CurrentAppVersion": r.app_version(&d.desktop_id),
                "FotaProject": task.fota_project,
                "Status": desktop_status_code(&d.desktop_status),
                "Sessions": d.sessions.iter().map(|s| json!({"EndUserId": s.end_user_id})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut body = token_page_answer("FotaPendingDesktops", &pending, params, 20, 100)?;
    body["Code"] = json!("200");
    Ok(body)
}

/// DescribeFotaPendingDesktops' `Status` is a number.
fn desktop_status_code(status: &str) -> i64 {
    match status {
        "Pending" => 0,
        "Starting" => 1,
        "Running" => 2,
        "Stopping" => 3,
        "Stopped" => 5,
        "Expired" => 6,
        "Deleted" => 7,
        _ => 9,
    }
}

pub fn describe_desktop_info(state: &mut CloudState, params: &Params) -> ApiResult<Value> {
    let ids = params.list("DesktopId", MAX_DESKTOP_IDS_PER_CALL)?;
    if ids.is_empty() {
        return Err(ApiFailure::missing("DesktopId.1"));
    }
    let r = region(state, params)?;
    // The newest version a task offers.
    let newest = r
        .fota_tasks
        .iter()
        .max_by(|a, b| a.publish_time.cmp(&b.publish_time))
        .map(|t| t.app_version.clone())
        .unwrap_or_default();
    let desktops: Vec<Value> = r
        .desktops
        .iter()
        .filter(|d| ids.contains(&d.desktop_id))
        .map(|d| {
            let current = r.app_version(&d.desktop_id);
            let mut flags: Vec<String> = d.management_flags.clone();
            if r.fota_updates.iter().any(|u| u.desktop_id == d.desktop_id) {
                flags.retain(|f| f != "NoFlag");
                flags.push("Updating".into());
            }
            json!({
                "DesktopId": d.desktop_id,
                "DesktopGroupId": d.desktop_group_id,
                "DesktopStatus": d.desktop_status,
                "ConnectionStatus": if d.connected() { "Connected" } else { "Disconnected" },
                "ManagementFlag": flags,
                "CurrentAppVersion": current,
                "NewAppVersion": if newest != current { newest.as_str() } else { "" },
            })
        })
        .collect();
    Ok(json!({"Desktops": desktops}))
}
