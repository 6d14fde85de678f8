//! Elastic Desktop Service (ecd 2020-09-30): image-update (FOTA) tasks and maintenance mode.

use serde::{Deserialize, Serialize};

use super::all_token_pages;
use crate::cloud::client::CloudClient;
use crate::cloud::endpoint::Product;
use crate::cloud::error::CloudError;
use crate::cloud::request::RpcRequest;

/// SetDesktopMaintenance and DescribeDesktops take at most this many ids per call.
pub const MAX_DESKTOP_IDS_PER_CALL: usize = 100;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct FotaTask {
    pub task_uid: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fota_project: String,
    pub app_version: String,
    /// Whether the task is pushed automatically: `Running` or `Pending`. The docs' example
    /// shows `valid`, so callers treat anything else as unknown.
    pub status: String,
    /// The push state under the name UpdateFotaTask writes, when the answer carries it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user_status: String,
    pub publish_time: String,
    pub release_note: String,
    pub size: i64,
    pub pending_desktop_count: i64,
    pub pending_custom_image_count: i64,
}

impl FotaTask {
    /// `Running` or `Pending`, from `Status` or else `UserStatus`; `None` when neither says
    /// (the API metadata's example of `Status` is `valid`).
    pub fn push_state(&self) -> Option<&str> {
        [self.status.as_str(), self.user_status.as_str()]
            .into_iter()
            .find(|s| matches!(*s, "Running" | "Pending"))
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DescribeFotaTasksResponse {
    pub request_id: String,
    pub fota_tasks: Vec<FotaTask>,
    pub next_token: Option<String>,
}

/// Reads every FOTA task of a region (optionally only `task_uids`), following NextToken.
pub async fn describe_fota_tasks(
    client: &CloudClient,
    region: &str,
    task_uids: &[String],
) -> Result<Vec<FotaTask>, CloudError> {
    let mut out = Vec::new();
    for chunk in chunks_or_all(task_uids, 100) {
        out.extend(
            all_token_pages(|token| async move {
                let req = RpcRequest::new(Product::Ecd, "DescribeFotaTasks", region)
                    .query("RegionId", region)
                    .query("MaxResults", "100")
                    .query_list("TaskUid", chunk)
                    .query_opt("NextToken", token);
                let page: DescribeFotaTasksResponse = client.call_typed(&req).await?;
                Ok((page.fota_tasks, page.next_token))
            })
            .await?,
        );
    }
    Ok(out)
}

/// `UserStatus`: `Running` pushes the image update automatically, `Pending` does not.
pub async fn update_fota_task(
    client: &CloudClient,
    region: &str,
    task_uid: &str,
    user_status: &str,
) -> Result<(), CloudError> {
    let req = RpcRequest::new(Product::Ecd, "UpdateFotaTask", region)
        .write()
        .query("RegionId", region)
        .query("TaskUid", task_uid)
        .query("UserStatus", user_status);
    client.call(&req).await.map(drop)
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Desktop {
    pub desktop_id: String,
    pub desktop_name: String,
    pub desktop_status: String,
    pub office_site_id: String,
    /// `UnderMaintenance` and `EnterMaintenance` both mean "in maintenance" (the zh and en
    /// docs disagree about which is which).
    pub management_flags: Vec<String>,
    /// The desktop's tags (a window records the desktops it entered in one of its own).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
}

/// A tag of a cloud resource.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

impl Desktop {
    /// The value of the tag `key`, if the desktop has it.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
    }

    pub fn in_maintenance(&self) -> bool {
        self.management_flags
            .iter()
            .any(|f| f == "UnderMaintenance" || f == "EnterMaintenance")
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DescribeDesktopsResponse {
    pub request_id: String,
    pub desktops: Vec<Desktop>,
    pub next_token: Option<String>,
    pub total_count: i64,
}

/// Which desktops to read.
#[derive(Clone, Debug, Default)]
pub struct DesktopFilter {
    pub desktop_ids: Vec<String>,
    pub office_site_id: Option<String>,
}

/// Reads every matching desktop, following NextToken; ids are asked for 100 at a time.
pub async fn describe_desktops(
    client: &CloudClient,
    region: &str,
    filter: &DesktopFilter,
) -> Result<Vec<Desktop>, CloudError> {
    let mut out = Vec::new();
    for chunk in chunks_or_all(&filter.desktop_ids, MAX_DESKTOP_IDS_PER_CALL) {
        out.extend(
            all_token_pages(|token| async move {
                let req = RpcRequest::new(Product::Ecd, "DescribeDesktops", region)
                    .query("RegionId", region)
                    .query("MaxResults", "100")
                    .query_list("DesktopId", chunk)
                    .query_opt("OfficeSiteId", filter.office_site_id.clone())
                    .query_opt("NextToken", token);
                let page: DescribeDesktopsResponse = client.call_typed(&req).await?;
                Ok((page.desktops, page.next_token))
            })
            .await?,
        );
    }
    Ok(out)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaintenanceMode {
    Enter,
    Exit,
}

impl MaintenanceMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MaintenanceMode::Enter => "ENTER",
            MaintenanceMode::Exit => "EXIT",
        }
    }
}

/// One SetDesktopMaintenance call: at most 100 ids.
pub async fn set_desktop_maintenance(
    client: &CloudClient,
    region: &str,
    mode: MaintenanceMode,
    desktop_ids: &[String],
) -> Result<(), CloudError> {
    if desktop_ids.is_empty() || desktop_ids.len() > MAX_DESKTOP_IDS_PER_CALL {
        return Err(CloudError::InvalidRequest(format!(
            "SetDesktopMaintenance takes 1 to {MAX_DESKTOP_IDS_PER_CALL} DesktopIds, got {}",
            desktop_ids.len()
        )));
    }
    let req = RpcRequest::new(Product::Ecd, "SetDesktopMaintenance", region)
        .write()
        .query("RegionId", region)
        .query("Mode", mode.as_str())
        .query_list("DesktopIds", desktop_ids);
    client.call(&req).await.map(drop)
}

/// SetDesktopMaintenance for any number of ids, in calls of 100. Returns the ids done
/// before the first failure together with the error, so the caller can record them.
pub async fn set_desktop_maintenance_batched(
    client: &CloudClient,
    region: &str,
    mode: MaintenanceMode,
    desktop_ids: &[String],
) -> Result<(), (Vec<String>, CloudError)> {
    let mut done = Vec::new();
    for chunk in desktop_ids.chunks(MAX_DESKTOP_IDS_PER_CALL) {
        if let Err(e) = set_desktop_maintenance(client, region, mode, chunk).await {
            return Err((done, e));
        }
        done.extend_from_slice(chunk);
    }
    Ok(())
}

/// TagResources, UntagResources and ListTagResources take at most this many ids per call.
pub const MAX_TAG_RESOURCE_IDS_PER_CALL: usize = 50;
/// The tag APIs' resource type of a cloud computer.
pub const DESKTOP_RESOURCE_TYPE: &str = "ALIYUN::GWS::INSTANCE";

/// Sets the tag `key` = `value` on every desktop of `desktop_ids`, 50 a call (a tag of
/// the same key is overwritten, so a repeated call changes nothing).
pub async fn tag_desktops(
    client: &CloudClient,
    region: &str,
    desktop_ids: &[String],
    key: &str,
    value: &str,
) -> Result<(), CloudError> {
    let req = RpcRequest::new(Product::Ecd, "TagResources", region)
        .query("Tag.1.Key", key)
        .query("Tag.1.Value", value);
    tag_call(client, region, req, desktop_ids).await
}

/// Removes the tag `key` from every desktop of `desktop_ids`, 50 a call.
pub async fn untag_desktops(
    client: &CloudClient,
    region: &str,
    desktop_ids: &[String],
    key: &str,
) -> Result<(), CloudError> {
    let req = RpcRequest::new(Product::Ecd, "UntagResources", region).query("TagKey.1", key);
    tag_call(client, region, req, desktop_ids).await
}

/// The tag write `req` (its action and tag parameters) over any number of desktops, in calls
/// of 50 ids.
async fn tag_call(
    client: &CloudClient,
    region: &str,
    req: RpcRequest,
    desktop_ids: &[String],
) -> Result<(), CloudError> {
    for chunk in desktop_ids.chunks(MAX_TAG_RESOURCE_IDS_PER_CALL) {
        let call = req
            .clone()
            .write()
            .query("RegionId", region)
            .query("ResourceType", DESKTOP_RESOURCE_TYPE)
            .query_list("ResourceId", chunk);
        client.call(&call).await?;
    }
    Ok(())
}

/// Splits ids into chunks, or yields one empty chunk (meaning "no id filter").
fn chunks_or_all(ids: &[String], size: usize) -> Vec<&[String]> {
    if ids.is_empty() {
        vec![&[]]
    } else {
        ids.chunks(size).collect()
    }
}
