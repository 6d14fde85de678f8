//! appstream-center 2021-09-01: ListAppInstanceGroup, ApproveOtaTask, ListOtaTask.

use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};
use serde_json::{Value, json};

use super::error::{ApiFailure, ApiResult};
use super::params::Params;
use super::state::{ApprovedTask, CloudState, ScheduledUpgrade};

pub fn list_app_instance_group(state: &mut CloudState, params: &Params) -> ApiResult<Value> {
    let product = params.required("ProductType")?;
    if product != "CloudApp" {
        return Err(ApiFailure::invalid(
            "ProductType",
            format!("{product:?} is not supported; use CloudApp"),
        ));
    }
    let statuses = params.list("Status", 10)?;
    let page_number = params.int("PageNumber", 1, i64::from(i32::MAX), 1)?;
    let page_size = params.int("PageSize", 1, 100, 20)?;
    let region = params.optional("BizRegionId");
    let id = params.optional("AppInstanceGroupId");
    // Every pair given must be on the group (the docs: "an AND relationship").
    let tags = params.pairs_list("Tag", 20)?;
    let groups: Vec<_> = state
        .appstream
        .app_instance_groups
        .iter()
        .filter(|g| region.is_none_or(|r| g.biz_region_id == r))
        .filter(|g| id.is_none_or(|i| g.group.app_instance_group_id == i))
        .filter(|g| statuses.is_empty() || statuses.contains(&g.group.status))
        .filter(|g| g.group.has_tags(tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
        .map(|g| g.group.clone())
        .collect();
    let start = ((page_number - 1) * page_size) as usize;
    let page: Vec<_> = groups.iter().skip(start).take(page_size as usize).cloned().collect();
    Ok(json!({
        "AppInstanceGroupModels": page,
        "TotalCount": groups.len(),
        "PageNumber": page_number,
        "PageSize": page_size,
    }))
}

/// ISO 8601 as the API takes it: with seconds or without (`yyyy-MM-ddTHH:mmZ`), `Z` or an offset.
fn parse_start_time(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Some(t.with_timezone(&Utc));
    }
    if let Some(naive) = value.strip_suffix('Z') {
        return NaiveDateTime::parse_from_str(naive, "%Y-%m-%dT%H:%M")
            .ok()
            .map(|n| n.and_utc());
    }
    DateTime::<FixedOffset>::parse_from_str(value, "%Y-%m-%dT%H:%M%:z")
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub fn approve_ota_task(state: &mut CloudState, params: &Params, now: DateTime<Utc>) -> ApiResult<Value> {
    let group_id = params.required("AppInstanceGroupId")?;
    let region = params.required("BizRegionId")?;
    let task_id = params.required("TaskId")?;
    params.one_of("OtaType", &["Fota"])?;
    let raw_start = params.required("StartTime")?;
    let start = parse_start_time(raw_start).ok_or_else(|| {
        ApiFailure::invalid(
            "StartTime",
            format!("{raw_start:?} is not an ISO 8601 time such as 2022-08-04T14:36:00+08:00"),
        )
    })?;
    let g = state
        .appstream
        .app_instance_groups
        .iter_mut()
        .find(|g| g.group.app_instance_group_id == group_id && g.biz_region_id == region)
        .ok_or_else(|| {
            ApiFailure::new(
                404,
                "InvalidAppInstanceGroupId.NotFound",
                format!("The delivery group {group_id} does not exist in {region}."),
            )
        })?;
    if let Some(up) = &g.scheduled_upgrade
        && now >= up.start_time
    {
        return Ok(json!({"Code": "OtaTask.Running", "Message": "The task is running and cannot be sumitted."}));
    }
    if g.group.ota_info.new_ota_version.is_empty() || g.group.ota_info.task_id.is_empty() {
        return Err(ApiFailure::new(
            400,
            "OtaTask.NotFound",
            format!("The delivery group {group_id} has no OTA update waiting."),
        ));
    }
    if g.group.ota_info.task_id != task_id {
        return Err(ApiFailure::invalid(
            "TaskId",
            format!(
                "{task_id} is not the current OTA task of {group_id}; call ListAppInstanceGroup for the latest TaskId"
            ),
        ));
    }
    if start < now - chrono::Duration::minutes(1) {
        return Err(ApiFailure::invalid("StartTime", format!("{raw_start} is in the past")));
    }
    let outcome = match g.upgrade_outcomes.is_empty() {
        true => "FINISHED".to_string(),
        false => g.upgrade_outcomes.remove(0),
    };
    g.scheduled_upgrade = Some(ScheduledUpgrade {
        approved_task_id: task_id.to_string(),
        start_time: start,
        version: g.group.ota_info.new_ota_version.clone(),
        outcome: outcome.clone(),
    });
    g.ota_tasks.push(ApprovedTask {
        task_id: task_id.to_string(),
        ota_version: g.group.ota_info.new_ota_version.clone(),
        task_start_time: start,
        outcome: outcome.clone(),
    });
    let journal = format!(
        "{group_id}: {} approved for {start}, to end {outcome}",
        g.group.ota_info.new_ota_version
    );
    g.group.ota_info.task_id = format!("ota-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    state.journal.push(journal);
    state.advance_to(now);
    Ok(json!({"Code": "success"}))
}

/// ListOtaTask: the approved tasks of a delivery group, newest first. Every parameter
/// travels in the form body and is required, as in the API reference.
pub fn list_ota_task(state: &mut CloudState, params: &Params, now: DateTime<Utc>) -> ApiResult<Value> {
    let group_id = params.required("AppInstanceGroupId")?;
    params.one_of("OtaType", &["Fota"])?;
    let page_number = params.int("PageNumber", 1, i64::from(i32::MAX), 1)?;
    let page_size = params.int("PageSize", 1, 100, 20)?;
    params.required("PageNumber")?;
    params.required("PageSize")?;
    let g = state
        .appstream
        .app_instance_groups
        .iter()
        .find(|g| g.group.app_instance_group_id == group_id)
        .ok_or_else(|| {
            ApiFailure::new(
                404,
                "InvalidAppInstanceGroupId.NotFound",
                format!("The delivery group {group_id} does not exist."),
            )
        })?;
    let running_for = CloudState::upgrade_duration(g);
    let tasks: Vec<Value> = g
        .ota_tasks
        .iter()
        .rev()
        .map(|t| {
            let status = if now < t.task_start_time {
                "STANDBY"
            } else if t
                .task_start_time
                .checked_add_signed(running_for)
                .is_some_and(|end| now < end)
            {
                "RUNNING"
            } else {
                t.outcome.as_str()
            };
            json!({
                "TaskId": t.task_id,
                "OtaVersion": t.ota_version,
                "TaskStartTime": t.task_start_time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "TaskDisplayStatus": status,
            })
        })
        .collect();
    let start = usize::try_from((page_number - 1).saturating_mul(page_size)).unwrap_or(usize::MAX);
    let page: Vec<Value> = tasks.iter().skip(start).take(page_size as usize).cloned().collect();
    Ok(json!({
        "TaskList": page,
        "TotalCount": tasks.len(),
        "PageNumber": page_number,
        "PageSize": page_size,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_times_in_the_documented_formats() {
        let want = "2022-08-04T06:36:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(parse_start_time("2022-08-04T14:36:00+08:00"), Some(want));
        assert_eq!(parse_start_time("2022-08-04T06:36Z"), Some(want));
        assert_eq!(parse_start_time("2022-08-04T14:36+08:00"), Some(want));
        assert_eq!(parse_start_time("tomorrow"), None);
    }
}
