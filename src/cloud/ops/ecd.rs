//! Elastic Desktop Service (ecd 2020-09-30): image-update (FOTA) tasks and maintenance mode.

use serde::{Deserialize, Serialize};

use super::all_token_pages;
use crate::cloud::client::CloudClient;
use crate::cloud::endpoint::Product;
use crate::cloud::error::CloudError;
use crate::cloud::request::RpcRequest;

/// SetDesktopMaintenance and DescribeDesktops take at most this many ids per call.
pub const MAX_DESKTOP_IDS_PER_CALL: usize = 100;

/// ApproveFotaUpdate: allow one Running desktop to take the image update to `app_version`
/// (a task's `AppVersion`). Whether the cloud updates at once or offers the update is not
/// documented, so success is only ever read from the desktop's `CurrentAppVersion`.
pub async fn approve_fota_update(
    client: &CloudClient,
    region: &str,
    desktop_id: &str,
    app_version: &str,
) -> Result<(), CloudError> {
    let req = RpcRequest::new(Product::Ecd, "ApproveFotaUpdate", region)
        .write()
        .query("RegionId", region)
        .query("DesktopId", desktop_id)
        .query("AppVersion", app_version)
        // No ClientToken: a lost answer is settled from the desktop's state at the next
        // look (the approval is recorded before it is sent), not by sending it again here.
        .not_idempotent();
    client.call(&req).await.map(drop)
}

/// One desktop as DescribeDesktopInfo answers: its state and image versions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DesktopInfo {
    pub desktop_id: String,
    /// `Running`, `Stopped`, `Failed`, `Starting`, `Stopping`, `Expired`, `Deleted`, `Pending`.
    pub desktop_status: String,
    /// `Connected` or `Disconnected`.
    pub connection_status: String,
    /// An array here (a string in DescribeDesktops); `Updating` while an image update runs.
    pub management_flag: Vec<String>,
    pub current_app_version: String,
    /// The newest version offered, empty when none.
    pub new_app_version: String,
}

impl DesktopInfo {
    pub fn updating(&self) -> bool {
        self.management_flag.iter().any(|f| f == "Updating")
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DescribeDesktopInfoResponse {
    desktops: Vec<DesktopInfo>,
}

/// DescribeDesktopInfo for any number of ids, 100 a call.
pub async fn describe_desktop_info(
    client: &CloudClient,
    region: &str,
    desktop_ids: &[String],
) -> Result<Vec<DesktopInfo>, CloudError> {
    let mut out = Vec::new();
    for chunk in desktop_ids.chunks(MAX_DESKTOP_IDS_PER_CALL) {
        let req = RpcRequest::new(Product::Ecd, "DescribeDesktopInfo", region)
            .query("RegionId", region)
            .query_list("DesktopId", chunk);
        let page: DescribeDesktopInfoResponse = client.call_typed(&req).await?;
        out.extend(page.desktops);
    }
    Ok(out)
}

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
    /// The end users' connection: `Connected`, `Disconnected` or `Unknown`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub connection_status: String,
    /// The sessions connected now.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<DesktopSession>,
    /// The end users the desktop is assigned to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub end_user_ids: Vec<String>,
    /// The pool (desktop group) the desktop belongs to; empty for a dedicated desktop.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub desktop_group_id: String,
    /// The cloud computer policy.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub policy_group_id: String,
    /// Every policy attached, when there are several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy_group_id_list: Vec<String>,
}

/// A session connected to a desktop, as `DescribeDesktops` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DesktopSession {
    pub end_user_id: String,
    /// When the session was established (ISO 8601 UTC, e.g. `2021-03-07T08:23Z`).
    pub establishment_time: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub external_user_name: String,
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

    /// Either maintenance flag: an EXIT is owed for it.
    pub fn in_maintenance(&self) -> bool {
        self.management_flags
            .iter()
            .any(|f| f == "UnderMaintenance" || f == "EnterMaintenance")
    }

    /// In maintenance and drained: `UnderMaintenance` (the zh metadata's reading: the
    /// desktop is in maintenance once its last user has left).
    pub fn maintained(&self) -> bool {
        self.management_flags.iter().any(|f| f == "UnderMaintenance")
    }

    /// Someone is connected: a session listed, or `ConnectionStatus` `Connected`.
    pub fn connected(&self) -> bool {
        !self.sessions.is_empty() || self.connection_status == "Connected"
    }

    /// Entered but not yet in maintenance: someone is still connected, or the cloud still
    /// shows `EnterMaintenance`.
    pub fn draining(&self) -> bool {
        self.connected() || (self.in_maintenance() && !self.maintained())
    }

    /// What SetDesktopMaintenance does to the flags, as Alibaba documents it: ENTER is
    /// `UnderMaintenance` for a desktop nobody uses and `EnterMaintenance` while someone is
    /// connected; EXIT clears both. (The emulator plays it; the operator's copy of a list
    /// follows its own writes with it.)
    pub fn apply_maintenance_mode(&mut self, enter: bool) {
        self.management_flags
            .retain(|f| !matches!(f.as_str(), "NoFlag" | "UnderMaintenance" | "EnterMaintenance"));
        if enter {
            let flag = if self.connected() {
                "EnterMaintenance"
            } else {
                "UnderMaintenance"
            };
            self.management_flags.push(flag.into());
        }
        if self.management_flags.is_empty() {
            self.management_flags.push("NoFlag".into());
        }
    }

    /// A draining desktop whose last user has left is in maintenance.
    pub fn finish_draining(&mut self) {
        if self.sessions.is_empty() && self.management_flags.iter().any(|f| f == "EnterMaintenance") {
            self.management_flags.retain(|f| f != "EnterMaintenance");
            self.management_flags.push("UnderMaintenance".into());
        }
    }

    /// Whether the desktop has every tag of `tags` (an empty list matches any desktop).
    pub fn has_tags<'a>(&self, mut tags: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
        tags.all(|(k, v)| self.tag(k) == Some(v))
    }

    /// Whether the desktop belongs to the policy `id` (alone or among several).
    pub fn has_policy(&self, id: &str) -> bool {
        self.policy_group_id == id || self.policy_group_id_list.iter().any(|p| p == id)
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

/// DisconnectDesktopSessions takes at most this many sessions a call.
pub const MAX_SESSIONS_PER_DISCONNECT: usize = 20;

/// One session as `DescribeDesktopSessions` reports it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SessionInfo {
    pub desktop_id: String,
    pub end_user_id: String,
    /// `Connected` or `Disconnected`.
    pub session_status: String,
    pub session_start_time: String,
    /// How long the session has been idle, in seconds.
    pub session_idle_time: i64,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DescribeDesktopSessionsResponse {
    sessions: Vec<SessionInfo>,
    total_count: i64,
}

/// The connected sessions of `desktop_ids` (100 ids a call, every page of 100).
pub async fn describe_connected_sessions(
    client: &CloudClient,
    region: &str,
    desktop_ids: &[String],
) -> Result<Vec<SessionInfo>, CloudError> {
    let mut out = Vec::new();
    for chunk in desktop_ids.chunks(MAX_DESKTOP_IDS_PER_CALL) {
        let read = |page: i64| async move {
            let req = RpcRequest::new(Product::Ecd, "DescribeDesktopSessions", region)
                .query("RegionId", region)
                .query("SessionStatus", "Connected")
                .query("PageSize", "100")
                .query("PageNumber", page.to_string())
                .query_list("DesktopId", chunk);
            let resp: DescribeDesktopSessionsResponse = client.call_typed(&req).await?;
            Ok(super::Page {
                items: resp.sessions,
                page_size: 100,
                total_count: resp.total_count,
            })
        };
        super::each_page(read, |items| out.extend(items)).await?;
    }
    Ok(out)
}

/// One user's session on one desktop.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SessionRef {
    pub desktop_id: String,
    pub end_user_id: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DisconnectDesktopSessionsResponse {
    invalid_sessions: Vec<SessionRef>,
}

/// One DisconnectDesktopSessions call (1 to 20 sessions). Returns the sessions the cloud
/// called invalid (not connected any more, for one).
pub async fn disconnect_desktop_sessions(
    client: &CloudClient,
    region: &str,
    sessions: &[SessionRef],
) -> Result<Vec<SessionRef>, CloudError> {
    if sessions.is_empty() || sessions.len() > MAX_SESSIONS_PER_DISCONNECT {
        return Err(CloudError::InvalidRequest(format!(
            "DisconnectDesktopSessions takes 1 to {MAX_SESSIONS_PER_DISCONNECT} sessions, got {}",
            sessions.len()
        )));
    }
    let mut req = RpcRequest::new(Product::Ecd, "DisconnectDesktopSessions", region)
        .write()
        .query("RegionId", region);
    for (i, s) in sessions.iter().enumerate() {
        req = req
            .query(&format!("Sessions.{}.DesktopId", i + 1), &s.desktop_id)
            .query(&format!("Sessions.{}.EndUserId", i + 1), &s.end_user_id);
    }
    let resp: DisconnectDesktopSessionsResponse = client.call_typed(&req).await?;
    Ok(resp.invalid_sessions)
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct SendConsoleMessageResponse {
    success: bool,
}

/// Sends the console message `message_id` (made and published in the console) to its
/// targets. `Ok(false)` when the cloud did not accept it.
pub async fn send_console_message(client: &CloudClient, region: &str, message_id: &str) -> Result<bool, CloudError> {
    let req = RpcRequest::new(Product::Ecd, "SendConsoleMessage", region)
        .write()
        .query("MessageId", message_id);
    let resp: SendConsoleMessageResponse = client.call_typed(&req).await?;
    Ok(resp.success)
}

/// Splits ids into chunks, or yields one empty chunk (meaning "no id filter").
fn chunks_or_all(ids: &[String], size: usize) -> Vec<&[String]> {
    if ids.is_empty() {
        vec![&[]]
    } else {
        ids.chunks(size).collect()
    }
}
