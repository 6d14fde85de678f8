//! The emulated cloud's state: what `GET /_emulator/state` returns, `PUT` replaces and
//! `--state FILE` loads. Items use the official field names of each API.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::cloud::ops::appstream::{AppInstanceGroup, OtaInfo};
use crate::cloud::ops::ecd::{Desktop, DesktopSession, FotaTask};
use crate::cloud::ops::swas::CustomImage;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct CloudState {
    /// Elastic Desktop Service, by region.
    pub ecd: BTreeMap<String, EcdRegion>,
    /// Simple Application Server, by region.
    pub swas: BTreeMap<String, SwasRegion>,
    /// App Streaming delivery groups (each names its own `BizRegionId`).
    pub appstream: AppstreamState,
    /// How long a write takes to show, in seconds, by action: `ModifyImageShareStatus` (a
    /// share to ECS) and `SetDesktopMaintenance`. Until then reads show the state before it,
    /// except that a desktop entering maintenance shows the transitional `EnterMaintenance`.
    /// Empty: every write shows at once.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub settle_seconds: BTreeMap<String, u32>,
    /// Writes that have not shown yet, with when they will.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub settling: Vec<Settling>,
    /// The other reading of maintenance mode: `SetDesktopMaintenance ENTER` disconnects every
    /// session at once. Off (the documented reading): a desktop with someone connected shows
    /// `EnterMaintenance` until its last session ends, then `UnderMaintenance`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub maintenance_disconnects: bool,
    /// Messages made in the console, which `SendConsoleMessage` sends by id.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub console_messages: Vec<ConsoleMessage>,
    /// Every `SendConsoleMessage` accepted, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub console_messages_sent: Vec<SentConsoleMessage>,
    /// What the request being answered did, line by line, for the request log; taken by the
    /// server after each request (never part of the state).
    #[serde(skip)]
    pub journal: Vec<String>,
}

/// A message made in the console (`DescribeConsoleMessages` names).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConsoleMessage {
    pub message_id: String,
    /// `Init`, `Pushing`, `Published`, `Expired`, `Deleting` or `Failed`: only a `Published`
    /// message can be sent.
    pub status: String,
    /// `OPERATIONAL`, `WALLPAPER`, `NOTIFICATION` or `CUSTOM_WALLPAPER`.
    pub message_type: String,
    /// `AllUsers`, `EndUser`, `Desktop`, `Tag`, ...
    pub target_type: String,
}

/// A `SendConsoleMessage` the emulator accepted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SentConsoleMessage {
    pub message_id: String,
    pub at: DateTime<Utc>,
}

/// A scripted change of one user's session on a desktop, applied when the emulator's clock
/// reaches `at`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionEvent {
    pub at: DateTime<Utc>,
    pub desktop_id: String,
    pub end_user_id: String,
    pub action: SessionAction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionAction {
    /// The user connects (refused while the desktop has a maintenance flag).
    Connect,
    /// The user disconnects.
    Disconnect,
    /// The user stops working; the session counts as idle from then.
    Idle,
    /// The user works again.
    Active,
}

/// One session as the emulator remembers it, for `DescribeDesktopSessions`; also every
/// connection that was refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    pub desktop_id: String,
    pub end_user_id: String,
    pub start: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
    /// Idle since then, while the session lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_since: Option<DateTime<Utc>>,
    /// What ended it: `user`, `DisconnectDesktopSessions` or `SetDesktopMaintenance`; or
    /// `refused` for a connection refused because the desktop was in maintenance.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ended_by: String,
}

impl SessionRecord {
    pub fn open(&self) -> bool {
        self.end.is_none()
    }
}

/// The actions whose effect may take time to show.
pub const SETTLING_ACTIONS: &[&str] = &["ModifyImageShareStatus", "SetDesktopMaintenance"];
/// The longest settle delay the emulator models: an hour.
pub const MAX_SETTLE_SECONDS: u32 = 3600;

/// A write that shows at `at`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settling {
    pub at: DateTime<Utc>,
    pub effect: Effect,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Effect {
    ImageShare {
        region: String,
        image_id: String,
        in_share: bool,
    },
    Maintenance {
        region: String,
        desktop_ids: Vec<String>,
        enter: bool,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct EcdRegion {
    /// The console's global image auto-update switch. While it is on, every task is pushed
    /// automatically whatever UpdateFotaTask says.
    pub global_auto_update: bool,
    pub fota_tasks: Vec<FotaTask>,
    pub desktops: Vec<Desktop>,
    /// Scripted session changes, applied in time order as the clock passes them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub session_events: Vec<SessionEvent>,
    /// Every session seen (open ones have no end) and every connection refused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub session_log: Vec<SessionRecord>,
    /// The image version (FOTA `AppVersion`) every desktop runs unless `appVersions` says
    /// otherwise.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub base_app_version: String,
    /// The image version each desktop runs, where it differs from `baseAppVersion`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub app_versions: BTreeMap<String, String>,
    /// How long an image update approved with ApproveFotaUpdate takes, in seconds (0: done
    /// at the next request; the docs say 10-15 minutes).
    #[serde(skip_serializing_if = "is_zero")]
    pub fota_update_seconds: i64,
    /// Desktops whose next image update fails (each once): the desktop ends `Failed`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fota_failures: Vec<String>,
    /// Image updates in progress.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fota_updates: Vec<FotaUpdate>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// An image update of one desktop, approved and running until `until`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FotaUpdate {
    pub desktop_id: String,
    pub app_version: String,
    pub until: DateTime<Utc>,
    pub fails: bool,
}

impl EcdRegion {
    /// The image version `desktop_id` runs.
    pub fn app_version(&self, desktop_id: &str) -> &str {
        self.app_versions
            .get(desktop_id)
            .map(String::as_str)
            .unwrap_or(&self.base_app_version)
    }

    /// Ends the image updates due by `now`: the desktop runs the new version, or is `Failed`.
    fn finish_fota_updates(&mut self, now: DateTime<Utc>) {
        let (done, running): (Vec<FotaUpdate>, Vec<FotaUpdate>) = std::mem::take(&mut self.fota_updates)
            .into_iter()
            .partition(|u| u.until <= now);
        self.fota_updates = running;
        for u in done {
            if u.fails {
                if let Some(d) = self.desktops.iter_mut().find(|d| d.desktop_id == u.desktop_id) {
                    d.desktop_status = "Failed".into();
                }
            } else {
                self.app_versions.insert(u.desktop_id, u.app_version);
            }
        }
    }
}

/// The time format of `Sessions[].EstablishmentTime` (`2021-03-07T08:23Z`).
pub const ESTABLISHMENT_TIME: &str = "%Y-%m-%dT%H:%MZ";

impl EcdRegion {
    /// Ends `user`'s session on `desktop_id` at `at` (by `by`), if it is connected.
    pub fn end_session(&mut self, desktop_id: &str, user: &str, at: DateTime<Utc>, by: &str) -> bool {
        let Some(d) = self.desktops.iter_mut().find(|d| d.desktop_id == desktop_id) else {
            return false;
        };
        let before = d.sessions.len();
        d.sessions.retain(|s| s.end_user_id != user);
        if d.sessions.len() == before {
            return false;
        }
        if d.sessions.is_empty() {
            d.connection_status = "Disconnected".into();
        }
        for r in self
            .session_log
            .iter_mut()
            .filter(|r| r.open() && r.desktop_id == desktop_id && r.end_user_id == user)
        {
            r.end = Some(at);
            r.idle_since = None;
            r.ended_by = by.to_string();
        }
        true
    }

    /// Applies one scripted change.
    fn apply_session_event(&mut self, e: &SessionEvent) {
        match e.action {
            SessionAction::Connect => {
                let Some(d) = self.desktops.iter_mut().find(|d| d.desktop_id == e.desktop_id) else {
                    return;
                };
                if d.in_maintenance() {
                    self.session_log.push(SessionRecord {
                        desktop_id: e.desktop_id.clone(),
                        end_user_id: e.end_user_id.clone(),
                        start: e.at,
                        end: Some(e.at),
                        idle_since: None,
                        ended_by: "refused".into(),
                    });
                } else if !d.sessions.iter().any(|s| s.end_user_id == e.end_user_id) {
                    d.sessions.push(DesktopSession {
                        end_user_id: e.end_user_id.clone(),
                        establishment_time: e.at.format(ESTABLISHMENT_TIME).to_string(),
                        external_user_name: String::new(),
                    });
                    self.session_log.push(SessionRecord {
                        desktop_id: e.desktop_id.clone(),
                        end_user_id: e.end_user_id.clone(),
                        start: e.at,
                        end: None,
                        idle_since: None,
                        ended_by: String::new(),
                    });
                }
            }
            SessionAction::Disconnect => {
                self.end_session(&e.desktop_id, &e.end_user_id, e.at, "user");
            }
            SessionAction::Idle | SessionAction::Active => {
                let idle = (e.action == SessionAction::Idle).then_some(e.at);
                for r in self
                    .session_log
                    .iter_mut()
                    .filter(|r| r.open() && r.desktop_id == e.desktop_id && r.end_user_id == e.end_user_id)
                {
                    r.idle_since = idle;
                }
            }
        }
    }

    /// Brings what follows from the desktops' `Sessions` up to date at `now`, however they
    /// changed (a scripted event, or the state edited through `PUT /_emulator/state`): a
    /// session listed on a desktop in maintenance is refused, the log opens and closes
    /// sessions, `ConnectionStatus` follows, and a draining desktop whose last user has left
    /// is in maintenance (unless its ENTER has not settled yet: `pending`).
    fn follow_sessions(&mut self, now: DateTime<Utc>, pending: &std::collections::HashSet<String>) {
        let EcdRegion {
            desktops, session_log, ..
        } = self;
        // The open sessions by desktop, indexed once: this runs before every request.
        let mut open_by_desktop: std::collections::HashMap<String, Vec<usize>> = Default::default();
        for (i, r) in session_log.iter().enumerate().filter(|(_, r)| r.open()) {
            open_by_desktop.entry(r.desktop_id.clone()).or_default().push(i);
        }
        let mut new_records = Vec::new();
        for d in desktops.iter_mut() {
            let open = open_by_desktop.remove(&d.desktop_id).unwrap_or_default();
            if d.sessions.is_empty() && open.is_empty() {
                if d.connection_status == "Connected" {
                    d.connection_status = "Disconnected".into();
                }
                if !pending.contains(&d.desktop_id) {
                    d.finish_draining();
                }
                continue;
            }
            // Open sessions whose users are no longer listed: they disconnected.
            for &i in &open {
                let r = &mut session_log[i];
                if !d.sessions.iter().any(|s| s.end_user_id == r.end_user_id) {
                    r.end = Some(now);
                    r.idle_since = None;
                    r.ended_by = "user".into();
                }
            }
            // Users listed without an open session: new connections, refused in maintenance.
            let in_maintenance = d.in_maintenance();
            let mut refused = Vec::new();
            for s in &d.sessions {
                if open.iter().any(|&i| session_log[i].end_user_id == s.end_user_id) {
                    continue;
                }
                let at = chrono::NaiveDateTime::parse_from_str(&s.establishment_time, ESTABLISHMENT_TIME)
                    .map(|t| t.and_utc())
                    .unwrap_or(now);
                new_records.push(SessionRecord {
                    desktop_id: d.desktop_id.clone(),
                    end_user_id: s.end_user_id.clone(),
                    start: at,
                    end: in_maintenance.then_some(now),
                    idle_since: None,
                    ended_by: if in_maintenance {
                        "refused".into()
                    } else {
                        String::new()
                    },
                });
                if in_maintenance {
                    refused.push(s.end_user_id.clone());
                }
            }
            d.sessions.retain(|s| !refused.contains(&s.end_user_id));
            if !d.sessions.is_empty() {
                d.connection_status = "Connected".into();
            } else if d.connection_status == "Connected" {
                d.connection_status = "Disconnected".into();
            }
            if !pending.contains(&d.desktop_id) {
                d.finish_draining();
            }
        }
        session_log.extend(new_records);
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct SwasRegion {
    pub custom_images: Vec<CustomImage>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct AppstreamState {
    pub app_instance_groups: Vec<DeliveryGroup>,
}

/// A delivery group, with what the emulator tracks about its OTA upgrade.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeliveryGroup {
    pub biz_region_id: String,
    #[serde(flatten)]
    pub group: AppInstanceGroup,
    /// The approved upgrade, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_upgrade: Option<ScheduledUpgrade>,
    /// How long an upgrade runs after its start time (0: it completes at the start time).
    /// While it runs, ApproveOtaTask answers `OtaTask.Running`.
    pub upgrade_duration_seconds: i64,
    /// Every approval, oldest first, as ListOtaTask reports them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ota_tasks: Vec<ApprovedTask>,
    /// How the coming upgrades end, in turn (each approval takes the first): `FINISHED` (the
    /// default once the list is empty), `FAILED`, `PART_FINISHED` or `TERMINATED`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upgrade_outcomes: Vec<String>,
}

/// How an OTA upgrade can end (`TaskDisplayStatus`).
pub const UPGRADE_OUTCOMES: &[&str] = &["FINISHED", "FAILED", "PART_FINISHED", "TERMINATED"];

fn finished() -> String {
    "FINISHED".into()
}

/// An approved OTA task: the TaskId the approval was sent with, its version and start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ApprovedTask {
    pub task_id: String,
    pub ota_version: String,
    pub task_start_time: DateTime<Utc>,
    /// How its upgrade ends (see [`DeliveryGroup::upgrade_outcomes`]).
    #[serde(default = "finished")]
    pub outcome: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScheduledUpgrade {
    pub approved_task_id: String,
    pub start_time: DateTime<Utc>,
    pub version: String,
    /// How it ends (see [`DeliveryGroup::upgrade_outcomes`]).
    #[serde(default = "finished")]
    pub outcome: String,
}

/// The longest upgrade the emulator models: ten years.
pub const MAX_UPGRADE_DURATION_SECONDS: i64 = 10 * 366 * 86_400;

impl CloudState {
    /// Refuses values the emulator cannot model, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        for (i, g) in self.appstream.app_instance_groups.iter().enumerate() {
            for (j, o) in g.upgrade_outcomes.iter().enumerate() {
                if !UPGRADE_OUTCOMES.contains(&o.as_str()) {
                    return Err(format!(
                        "appstream.appInstanceGroups[{i}].UpgradeOutcomes[{j}]: {o:?} is not one of {}",
                        UPGRADE_OUTCOMES.join(", ")
                    ));
                }
            }
        }
        for (action, seconds) in &self.settle_seconds {
            if !SETTLING_ACTIONS.contains(&action.as_str()) {
                return Err(format!(
                    "settleSeconds.{action}: not an action whose effect can settle (one of {})",
                    SETTLING_ACTIONS.join(", ")
                ));
            }
            if *seconds > MAX_SETTLE_SECONDS {
                return Err(format!(
                    "settleSeconds.{action}: {seconds} is more than {MAX_SETTLE_SECONDS}"
                ));
            }
        }
        for (i, g) in self.appstream.app_instance_groups.iter().enumerate() {
            if !(0..=MAX_UPGRADE_DURATION_SECONDS).contains(&g.upgrade_duration_seconds) {
                return Err(format!(
                    "appstream.appInstanceGroups[{i}].UpgradeDurationSeconds: {} is not between 0 and {MAX_UPGRADE_DURATION_SECONDS}",
                    g.upgrade_duration_seconds
                ));
            }
        }
        Ok(())
    }

    /// How long an upgrade of `g` runs (bounded, whatever the state says).
    pub fn upgrade_duration(g: &DeliveryGroup) -> chrono::Duration {
        chrono::Duration::seconds(g.upgrade_duration_seconds.clamp(0, MAX_UPGRADE_DURATION_SECONDS))
    }

    /// When a write of `action` made at `now` shows, if not at once.
    pub fn settles_at(&self, action: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let seconds = self
            .settle_seconds
            .get(action)
            .copied()
            .unwrap_or(0)
            .min(MAX_SETTLE_SECONDS);
        (seconds > 0).then(|| now + chrono::Duration::seconds(i64::from(seconds)))
    }

    /// Makes a write's effect true now.
    pub fn apply(&mut self, effect: &Effect, at: DateTime<Utc>) {
        match effect {
            Effect::ImageShare {
                region,
                image_id,
                in_share,
            } => {
                if let Some(i) = self
                    .swas
                    .get_mut(region)
                    .and_then(|r| r.custom_images.iter_mut().find(|i| &i.image_id == image_id))
                {
                    i.in_share = *in_share;
                }
            }
            Effect::Maintenance {
                region,
                desktop_ids,
                enter,
            } => self.apply_maintenance(region, desktop_ids, *enter, at),
        }
    }

    /// Maintenance mode as documented: a desktop nobody uses is in maintenance at once; one
    /// with users connected drains (`EnterMaintenance`) until the last one leaves, or, with
    /// `maintenanceDisconnects`, has them disconnected now. EXIT clears both flags.
    fn apply_maintenance(&mut self, region: &str, desktop_ids: &[String], enter: bool, at: DateTime<Utc>) {
        let disconnects = enter && self.maintenance_disconnects;
        let ids: std::collections::HashSet<&String> = desktop_ids.iter().collect();
        let Some(r) = self.ecd.get_mut(region) else { return };
        if disconnects {
            let connected: Vec<(String, String)> = r
                .desktops
                .iter()
                .filter(|d| ids.contains(&d.desktop_id))
                .flat_map(|d| d.sessions.iter().map(|s| (d.desktop_id.clone(), s.end_user_id.clone())))
                .collect();
            for (id, user) in connected {
                if r.end_session(&id, &user, at, "SetDesktopMaintenance") {
                    self.journal.push(format!("{id}/{user}: session ended"));
                }
            }
        }
        for d in r.desktops.iter_mut().filter(|d| ids.contains(&d.desktop_id)) {
            let before = d.management_flags.join("+");
            d.apply_maintenance_mode(enter);
            let users: Vec<&str> = d.sessions.iter().map(|s| s.end_user_id.as_str()).collect();
            let connected = match users.as_slice() {
                [] => String::new(),
                users => format!(" ({} connected)", users.join(", ")),
            };
            self.journal.push(format!(
                "{}: {before} -> {}{connected}",
                d.desktop_id,
                d.management_flags.join("+")
            ));
        }
    }

    /// Applies everything the clock has made happen: writes settle, and scheduled OTA
    /// upgrades complete once their start time (plus duration) has passed.
    pub fn advance_to(&mut self, now: DateTime<Utc>) {
        if self.settling.iter().any(|s| s.at <= now) {
            let (due, later): (Vec<Settling>, Vec<Settling>) = std::mem::take(&mut self.settling)
                .into_iter()
                .partition(|s| s.at <= now);
            self.settling = later;
            for s in due {
                self.apply(&s.effect, s.at);
            }
        }
        // Sessions: the scripted changes that are due, in time order, then what follows.
        let pending: std::collections::HashSet<String> = self
            .settling
            .iter()
            .filter_map(|s| match &s.effect {
                Effect::Maintenance {
                    desktop_ids,
                    enter: true,
                    ..
                } => Some(desktop_ids.iter().cloned()),
                _ => None,
            })
            .flatten()
            .collect();
        for r in self.ecd.values_mut() {
            if r.session_events.iter().any(|e| e.at <= now) {
                let (mut due, later): (Vec<SessionEvent>, Vec<SessionEvent>) = std::mem::take(&mut r.session_events)
                    .into_iter()
                    .partition(|e| e.at <= now);
                r.session_events = later;
                due.sort_by_key(|e| e.at);
                for e in &due {
                    r.apply_session_event(e);
                }
            }
            r.follow_sessions(now, &pending);
            r.finish_fota_updates(now);
        }
        for g in &mut self.appstream.app_instance_groups {
            let Some(up) = &g.scheduled_upgrade else { continue };
            let done = up.start_time.checked_add_signed(Self::upgrade_duration(g));
            if done.is_none_or(|done| now >= done) {
                // As the group ends its upgrade: the version moves only when it succeeded
                // (PART_FINISHED is "succeeded" in the zh metadata: an assumption).
                let (status, resource, moved) = match up.outcome.as_str() {
                    "FAILED" => ("MAINTAIN_FAILED", "UNAVAILABLE", false),
                    "TERMINATED" => ("PUBLISHED", "AVAILABLE", false),
                    _ => ("PUBLISHED", "AVAILABLE", true),
                };
                if moved {
                    g.group.ota_info.ota_version = up.version.clone();
                    if g.group.ota_info.new_ota_version == up.version {
                        g.group.ota_info.new_ota_version.clear();
                    }
                }
                g.group.status = status.into();
                g.group.resource_status = resource.into();
                g.scheduled_upgrade = None;
            } else if now >= up.start_time {
                g.group.status = "MAINTAINING".into();
                g.group.resource_status = "UPGRADING".into();
            }
        }
    }

    /// The dataset the emulator starts with when no `--state` is given.
    pub fn default_dataset() -> CloudState {
        let mut s = CloudState::default();
        s.ecd.insert("cn-hangzhou".into(), ecd_region("hz", 3, 100, 4));
        s.ecd.insert("cn-shanghai".into(), ecd_region("sh", 1, 20, 1));
        s.swas
            .insert("cn-hangzhou".into(), swas_region("cn-hangzhou", "hz", 6, 2));
        s.swas
            .insert("cn-shanghai".into(), swas_region("cn-shanghai", "sh", 2, 1));
        for i in 1..=4 {
            s.appstream
                .app_instance_groups
                .push(group("cn-hangzhou", &format!("aig-hz{i:04}"), i <= 3));
        }
        s.appstream
            .app_instance_groups
            .push(group("cn-shanghai", "aig-sh0001", true));
        s
    }
}

fn ecd_region(tag: &str, sites: usize, per_site: usize, foreign_maintenance: usize) -> EcdRegion {
    let region = if tag == "hz" { "cn-hangzhou" } else { "cn-shanghai" };
    let fota_tasks = (1..=3)
        .map(|i| FotaTask {
            task_uid: format!("aot-{tag}{i:04}"),
            app_version: format!("2.{i}.0-R-20261{i}01.120000"),
            status: if i == 1 { "Running" } else { "Pending" }.into(),
            publish_time: format!("2026-1{}-0{i}T04:28:48Z", i - 1),
            release_note: format!("Image update {i}: security fixes and client improvements"),
            size: 568_533_470 + i as i64,
            pending_desktop_count: 10 * i as i64,
            pending_custom_image_count: i as i64,
            ..Default::default()
        })
        .collect();
    let mut desktops = Vec::new();
    for site in 1..=sites {
        for n in 1..=per_site {
            let idx = desktops.len();
            desktops.push(Desktop {
                desktop_id: format!("ecd-{tag}{site}{n:04}"),
                desktop_name: format!("{tag}-site{site}-desk{n:03}"),
                desktop_status: if n % 10 == 0 { "Stopped" } else { "Running" }.into(),
                office_site_id: format!("{region}+dir-{site:010}"),
                management_flags: vec![
                    if idx < foreign_maintenance {
                        "UnderMaintenance"
                    } else {
                        "NoFlag"
                    }
                    .into(),
                ],
                ..Default::default()
            });
        }
    }
    EcdRegion {
        global_auto_update: false,
        fota_tasks,
        desktops,
        // Every desktop one image behind the oldest task.
        base_app_version: "2.0.0-R-20261001.120000".into(),
        ..Default::default()
    }
}

fn swas_region(region: &str, tag: &str, count: usize, shared: usize) -> SwasRegion {
    SwasRegion {
        custom_images: (1..=count)
            .map(|i| CustomImage {
                image_id: format!("m-{tag}{i:04}"),
                name: format!("{tag}-app-image-{i}"),
                description: format!("custom image {i}"),
                in_share: i <= shared,
                in_share_user: false,
                status: "1".into(),
                region_id: region.into(),
            })
            .collect(),
    }
}

fn group(region: &str, id: &str, new_version: bool) -> DeliveryGroup {
    DeliveryGroup {
        biz_region_id: region.into(),
        group: AppInstanceGroup {
            app_instance_group_id: id.into(),
            app_instance_group_name: format!("{id}-office-apps"),
            region_id: region.into(),
            status: "PUBLISHED".into(),
            resource_status: "AVAILABLE".into(),
            ota_info: OtaInfo {
                ota_version: "1.4.0-R-20261001.100000".into(),
                new_ota_version: if new_version {
                    "1.5.0-R-20261115.100000".into()
                } else {
                    String::new()
                },
                task_id: if new_version {
                    format!("ota-{}-1", id.trim_start_matches("aig-"))
                } else {
                    String::new()
                },
            },
            // A ring per group, to choose the groups of a rollout's waves by.
            tags: vec![crate::cloud::ops::appstream::GroupTag {
                key: "ring".into(),
                value: match id {
                    "aig-hz0001" => "canary",
                    "aig-hz0002" => "early",
                    _ => "broad",
                }
                .into(),
                scope: "Custom".into(),
            }],
        },
        scheduled_upgrade: None,
        upgrade_duration_seconds: 0,
        ota_tasks: vec![],
        upgrade_outcomes: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_dataset_has_what_the_readme_promises() {
        let s = CloudState::default_dataset();
        let hz = &s.ecd["cn-hangzhou"];
        assert_eq!(hz.desktops.len(), 300);
        assert!(hz.fota_tasks.iter().any(|t| t.status == "Running"));
        assert!(hz.fota_tasks.iter().any(|t| t.status == "Pending"));
        assert!(s.swas["cn-hangzhou"].custom_images.iter().any(|i| i.in_share));
        assert!(s.swas["cn-hangzhou"].custom_images.iter().any(|i| !i.in_share));
        assert!(
            s.appstream
                .app_instance_groups
                .iter()
                .any(|g| g.biz_region_id == "cn-hangzhou" && !g.group.ota_info.new_ota_version.is_empty())
        );
        assert!(s.ecd.contains_key("cn-shanghai") && s.swas.contains_key("cn-shanghai"));
    }

    #[test]
    fn state_round_trips_through_json_with_official_field_names() {
        let s = CloudState::default_dataset();
        let json = serde_json::to_value(&s).unwrap();
        assert!(json["ecd"]["cn-hangzhou"]["desktops"][0]["ManagementFlags"].is_array());
        assert!(json["appstream"]["appInstanceGroups"][0]["OtaInfo"]["TaskId"].is_string());
        let back: CloudState = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn writes_show_once_they_settle_and_settle_delays_are_checked() {
        let mut s = CloudState::default_dataset();
        let t0 = Utc::now();
        s.settle_seconds.insert("ModifyImageShareStatus".into(), 30);
        let at = s.settles_at("ModifyImageShareStatus", t0).unwrap();
        assert_eq!(s.settles_at("SetDesktopMaintenance", t0), None);
        let image = s.swas["cn-hangzhou"].custom_images[5].clone();
        assert!(!image.in_share);
        s.settling.push(Settling {
            at,
            effect: Effect::ImageShare {
                region: "cn-hangzhou".into(),
                image_id: image.image_id.clone(),
                in_share: true,
            },
        });
        s.advance_to(t0 + chrono::Duration::seconds(29));
        assert!(!s.swas["cn-hangzhou"].custom_images[5].in_share, "not yet");
        s.advance_to(t0 + chrono::Duration::seconds(30));
        assert!(s.swas["cn-hangzhou"].custom_images[5].in_share);
        assert!(s.settling.is_empty());
        assert!(s.validate().is_ok());
        s.settle_seconds.insert("UpdateFotaTask".into(), 5);
        assert!(s.validate().unwrap_err().contains("settleSeconds.UpdateFotaTask"));
        s.settle_seconds.remove("UpdateFotaTask");
        s.settle_seconds
            .insert("SetDesktopMaintenance".into(), MAX_SETTLE_SECONDS + 1);
        assert!(
            s.validate()
                .unwrap_err()
                .contains("settleSeconds.SetDesktopMaintenance")
        );
    }

    #[test]
    fn unknown_top_level_fields_are_rejected() {
        let err = serde_json::from_str::<CloudState>(r#"{"ecs": {}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `ecs`"), "{err}");
    }
}
