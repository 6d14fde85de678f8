//! App Streaming (appstream-center 2021-09-01): OTA updates of delivery groups.

use serde::{Deserialize, Serialize};

use super::{Page, all_pages, lenient_i64};
use crate::cloud::client::CloudClient;
use crate::cloud::endpoint::Product;
use crate::cloud::error::CloudError;
use crate::cloud::request::RpcRequest;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct OtaInfo {
    pub ota_version: String,
    /// Empty when no new version is available.
    pub new_ota_version: String,
    /// Changes after every successful ApproveOtaTask: read it again before each approval.
    pub task_id: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AppInstanceGroup {
    pub app_instance_group_id: String,
    pub app_instance_group_name: String,
    pub region_id: String,
    pub status: String,
    pub resource_status: String,
    pub ota_info: OtaInfo,
    /// The group's tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<GroupTag>,
}

/// A delivery group's tag, as ListAppInstanceGroup answers it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct GroupTag {
    pub key: String,
    pub value: String,
    /// Who set it (for example `Custom`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scope: String,
}

impl AppInstanceGroup {
    /// Whether the group carries every pair (an empty value: any value).
    pub fn has_tags<'a>(&self, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
        pairs.into_iter().all(|(key, value)| {
            self.tags
                .iter()
                .any(|t| t.key == key && (value.is_empty() || t.value == value))
        })
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ListAppInstanceGroupResponse {
    pub request_id: String,
    #[serde(deserialize_with = "lenient_i64")]
    pub total_count: i64,
    #[serde(deserialize_with = "lenient_i64")]
    pub page_number: i64,
    #[serde(deserialize_with = "lenient_i64")]
    pub page_size: i64,
    pub app_instance_group_models: Vec<AppInstanceGroup>,
}

/// Lists CloudApp delivery groups of a region (or one group), every page.
pub async fn list_app_instance_groups(
    client: &CloudClient,
    biz_region_id: &str,
    app_instance_group_id: Option<&str>,
) -> Result<Vec<AppInstanceGroup>, CloudError> {
    all_pages(|page| async move {
        let req = RpcRequest::new(Product::AppstreamCenter, "ListAppInstanceGroup", biz_region_id)
            .query("ProductType", "CloudApp")
            .query("BizRegionId", biz_region_id)
            .query_opt("AppInstanceGroupId", app_instance_group_id)
            .query("PageNumber", page.to_string())
            .query("PageSize", "100");
        let resp: ListAppInstanceGroupResponse = client.call_typed(&req).await?;
        Ok(Page {
            items: resp.app_instance_group_models,
            page_size: resp.page_size,
            total_count: resp.total_count,
        })
    })
    .await
}

#[derive(Clone, Debug)]
pub struct ApproveOtaTask {
    pub app_instance_group_id: String,
    pub biz_region_id: String,
    pub task_id: String,
    pub ota_type: String,
    /// ISO 8601, e.g. `2022-08-04T14:36:00Z`.
    pub start_time: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ApproveOtaTaskResponse {
    pub request_id: String,
    pub code: String,
}

/// Approves the OTA task for a start time. Not idempotent: it is never resent once it may
/// have reached the server, and a `Code` other than `success` in the 200 body (such as
/// `OtaTask.Running`) is returned as an error.
pub async fn approve_ota_task(client: &CloudClient, r: &ApproveOtaTask) -> Result<ApproveOtaTaskResponse, CloudError> {
    let req = RpcRequest::new(Product::AppstreamCenter, "ApproveOtaTask", r.biz_region_id.clone())
        .write()
        .body("AppInstanceGroupId", r.app_instance_group_id.clone())
        .body("BizRegionId", r.biz_region_id.clone())
        .body("OtaType", r.ota_type.clone())
        .body("StartTime", r.start_time.clone())
        .body("TaskId", r.task_id.clone())
        .not_idempotent();
    // The client checks the body's Code; a write is decoded once, never sent again for it.
    client.call_typed(&req).await
}

/// One approved OTA task of a delivery group, as ListOtaTask reports it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct OtaTask {
    pub task_id: String,
    pub ota_version: String,
    /// When the approved upgrade starts (ISO 8601).
    pub task_start_time: String,
    /// `STANDBY`, `RUNNING`, `FAILED`, `TERMINATED`, `FINISHED` or `PART_FINISHED`.
    pub task_display_status: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ListOtaTaskResponse {
    pub request_id: String,
    #[serde(deserialize_with = "lenient_i64")]
    pub total_count: i64,
    #[serde(deserialize_with = "lenient_i64")]
    pub page_size: i64,
    pub task_list: Vec<OtaTask>,
}

/// The approved OTA tasks of a delivery group, every page. All parameters travel in the
/// form body, as the official SDK sends them.
pub async fn list_ota_tasks(
    client: &CloudClient,
    biz_region_id: &str,
    app_instance_group_id: &str,
) -> Result<Vec<OtaTask>, CloudError> {
    all_pages(|page| async move {
        let req = RpcRequest::new(Product::AppstreamCenter, "ListOtaTask", biz_region_id)
            .body("AppInstanceGroupId", app_instance_group_id)
            .body("OtaType", "Fota")
            .body("PageNumber", page.to_string())
            .body("PageSize", "100");
        let resp: ListOtaTaskResponse = client.call_typed(&req).await?;
        Ok(Page {
            items: resp.task_list,
            page_size: resp.page_size,
            total_count: resp.total_count,
        })
    })
    .await
}
