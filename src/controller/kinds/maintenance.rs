use crate::cloud::Product;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::api::ManagementPolicy;
use crate::api::maintenance::{DesktopMaintenanceWindow, DesktopMaintenanceWindowStatus};
use crate::cloud::ops::ecd::{self, Desktop, DesktopFilter};
use crate::cloud::{CloudError, ErrorClass};
use crate::controller::events;
use crate::controller::kind::{KindEnv, MadeWith, ManagedKind, Stage};
use crate::controller::metrics::ResourceGauge;
use crate::reconcile::maintenance::{
    DesktopAction, MaintenanceInput, SetMaintenance, chosen, excluded, plan, schedule, selects,
};
use crate::reconcile::{Outcome, PlanContext};

const LIST: &str = "DescribeDesktops";

/// The region's cloud computers: the list every reader of the account and region shares
/// (`filters` the default one), or, when `fresh`, what `filters` read for this caller alone;
/// with the time the list started.
pub(crate) async fn region_desktops(
    env: &KindEnv,
    region: &str,
    fresh: bool,
    filters: Vec<DesktopFilter>,
) -> Result<(Arc<Vec<Desktop>>, DateTime<Utc>), CloudError> {
    env.snapshot_listed(LIST, region, fresh, |cloud| {
        let region = region.to_string();
        async move {
            let mut all: Vec<Desktop> = Vec::new();
            let mut seen = HashSet::new();
            for filter in &filters {
                for d in ecd::describe_desktops(&cloud, &region, filter).await? {
                    if seen.insert(d.desktop_id.clone()) {
                        all.push(d);
                    }
                }
            }
            Ok(all)
        }
    })
    .await
}

/// Desktops that other live windows of the same region recorded and still hold: their
/// window is open and they are not being deleted.
fn held_by_others(
    this: &DesktopMaintenanceWindow,
    peers: &[Arc<DesktopMaintenanceWindow>],
    now: DateTime<Utc>,
) -> BTreeSet<String> {
    other_windows(this, peers, false)
        .filter_map(|p| p.status.as_ref())
        .filter(|s| {
            s.current_window
                .as_ref()
                .and_then(|w| w.end.parse::<DateTime<Utc>>().ok())
                .is_some_and(|end| end > now)
        })
        .flat_map(|s| s.desktops_in_maintenance.iter().cloned())
        .collect()
}

/// Every window's record tag starts with this.
pub const RECORD_TAG_PREFIX: &str = "ops.alicloud.dev/window-";

/// The tag a window sets on each desktop before it enters it, and removes after it exits
/// it: the key names the window (`namespace/name`, hashed to stay within the cloud's 128
/// characters and to let overlapping windows tag one desktop each), the value says which
/// for people. A restore keeps the name, so a restored window finds its desktops again.
pub fn record_tag(window: &DesktopMaintenanceWindow) -> (String, String) {
    use sha2::{Digest, Sha256};
    let name = crate::controller::kind::full_name(&window.metadata);
    let digest = hex::encode(Sha256::digest(name.as_bytes()));
    let value: String = name.chars().take(128).collect();
    (format!("{RECORD_TAG_PREFIX}{}", &digest[..16]), value)
}

/// The other live windows of the same region (not being deleted, unless `deleting_too`).
fn other_windows<'a>(
    this: &'a DesktopMaintenanceWindow,
    peers: &'a [Arc<DesktopMaintenanceWindow>],
    deleting_too: bool,
) -> impl Iterator<Item = &'a DesktopMaintenanceWindow> + 'a {
    peers
        .iter()
        .map(|p| p.as_ref())
        .filter(move |p| p.metadata.uid != this.metadata.uid && p.spec.region_id == this.spec.region_id)
        .filter(move |p| deleting_too || p.metadata.deletion_timestamp.is_none())
}

/// Desktops that other windows of the region have recorded, open or not, deleting or not
/// (a window at its end, or being deleted, has not exited them yet).
fn recorded_by_others(this: &DesktopMaintenanceWindow, peers: &[Arc<DesktopMaintenanceWindow>]) -> BTreeSet<String> {
    other_windows(this, peers, true)
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| s.desktops_in_maintenance.iter().cloned())
        .collect()
}

/// Of `ours`, the desktops another live window wants in maintenance now: its schedule is
/// open, it may write, and it targets them. Only our own record is looked up, so the cost
/// is that record times the open windows, not the region's desktops.
fn wanted_by_others(
    this: &DesktopMaintenanceWindow,
    peers: &[Arc<DesktopMaintenanceWindow>],
    all: &[Desktop],
    ours: &[String],
    now: DateTime<Utc>,
) -> BTreeSet<String> {
    let open: Vec<&DesktopMaintenanceWindow> = other_windows(this, peers, false)
        .filter(|p| !p.spec.common.suspend && p.spec.common.management_policy == ManagementPolicy::Manage)
        .filter(|p| schedule(&p.spec).is_ok_and(|s| s.at(now).current.is_some()))
        .collect();
    if open.is_empty() || ours.is_empty() {
        return BTreeSet::new();
    }
    let ours: HashSet<&str> = ours.iter().map(String::as_str).collect();
    all.iter()
        .filter(|d| ours.contains(d.desktop_id.as_str()))
        .filter(|d| open.iter().any(|p| targets(p, d)))
        .map(|d| d.desktop_id.clone())
        .collect()
}

/// Whether `window`'s selection takes `desktop`.
fn targets(window: &DesktopMaintenanceWindow, desktop: &Desktop) -> bool {
    let listed: HashSet<&str> = window
        .spec
        .desktop_ids
        .iter()
        .flatten()
        .map(|id| id.0.as_str())
        .collect();
    selects(&window.spec, &listed, desktop)
}

/// SetDesktopMaintenance refuses a whole batch when one id is unknown. The ids the cloud
/// no longer lists are dropped (nothing is left to do for them) and the rest are sent again.
async fn set_maintenance_of_known(
    env: &KindEnv,
    region: &str,
    action: &SetMaintenance,
) -> Result<(), (Vec<String>, CloudError)> {
    let first = ecd::set_desktop_maintenance_batched(&env.cloud, region, action.mode, &action.desktop_ids).await;
    let Err((done, err)) = first else { return Ok(()) };
    if err.class() != ErrorClass::NotFound {
        return Err((done, err));
    }
    let sent: HashSet<&String> = done.iter().collect();
    let rest: Vec<String> = action
        .desktop_ids
        .iter()
        .filter(|id| !sent.contains(id))
        .cloned()
        .collect();
    let known = still_listed(env, region, &rest).await.map_err(|e| (done.clone(), e))?;
    if known.len() == rest.len() {
        // Every id still exists: the refusal was about something else.
        return Err((done, err));
    }
    ecd::set_desktop_maintenance_batched(&env.cloud, region, action.mode, &known)
        .await
        .map_err(|(more, e)| ([done, more].concat(), e))
}

/// A change of a window's record tag on desktops.
enum TagChange<'a> {
    Set { key: &'a str, value: &'a str },
    Remove { key: &'a str },
}

async fn change_tags(env: &KindEnv, region: &str, ids: &[String], change: &TagChange<'_>) -> Result<(), CloudError> {
    match change {
        TagChange::Set { key, value } => ecd::tag_desktops(&env.cloud, region, ids, key, value).await,
        TagChange::Remove { key } => ecd::untag_desktops(&env.cloud, region, ids, key).await,
    }
}

/// Changes the tag on the desktops of `ids` the cloud still has (one may have been released
/// since the list: the tag calls refuse a whole batch for one unknown id, as
/// SetDesktopMaintenance does).
async fn change_tags_of_known(
    env: &KindEnv,
    region: &str,
    ids: &[String],
    change: &TagChange<'_>,
) -> Result<(), CloudError> {
    match change_tags(env, region, ids, change).await {
        Err(e) if e.class() == ErrorClass::NotFound => {
            let known = still_listed(env, region, ids).await?;
            change_tags(env, region, &known, change).await
        }
        r => r,
    }
}

/// Of `ids`, those the cloud still lists.
async fn still_listed(env: &KindEnv, region: &str, ids: &[String]) -> Result<Vec<String>, CloudError> {
    let filter = DesktopFilter {
        desktop_ids: ids.to_vec(),
        office_site_id: None,
    };
    let wanted: HashSet<&String> = ids.iter().collect();
    Ok(ecd::describe_desktops(&env.cloud, region, &filter)
        .await?
        .into_iter()
        .map(|d| d.desktop_id)
        .filter(|id| wanted.contains(id))
        .collect())
}

/// A desktop is tagged with the window's record tag before it enters, and untagged after
/// it exits, so the record outlives the status.
/// A shared list younger than a draining window's look is read again by id no sooner: the
/// look right after a write (to confirm it) is answered by the list, and the reads by id,
/// which share the rate limits with the entering calls, come only at the 30 s looks.
const SHARED_LIST_FRESH_ENOUGH: chrono::Duration =
    chrono::Duration::seconds(crate::reconcile::maintenance::DRAIN_RECHECK.as_secs() as i64);

/// People leave on their own time, and the region's shared list may be a resync old: the
/// computers a window waits on (its own still draining, and with SkipBusy the busy targets
/// of the window it has opened) are read again by id, 100 a call, for this window alone, so
/// that it sees people leave at its next look rather than at the next list of the region.
async fn read_again_what_the_window_waits_on(
    window: &DesktopMaintenanceWindow,
    env: &KindEnv,
    previous: &DesktopMaintenanceWindowStatus,
    targets: &mut [Desktop],
    elsewhere: &mut [Desktop],
) -> Result<(), CloudError> {
    let skip_busy = window
        .spec
        .drain
        .as_ref()
        .is_some_and(|d| d.policy == crate::api::maintenance::DrainPolicy::SkipBusy)
        && previous.current_window.is_some();
    let ours: HashSet<&str> = previous.desktops_in_maintenance.iter().map(String::as_str).collect();
    let waits_on: Vec<String> = targets
        .iter()
        .chain(elsewhere.iter())
        .filter(|d| {
            (ours.contains(d.desktop_id.as_str()) && d.draining())
                || (skip_busy && d.connected() && !d.in_maintenance())
        })
        .map(|d| d.desktop_id.clone())
        .collect();
    if waits_on.is_empty() {
        return Ok(());
    }
    let filter = DesktopFilter {
        desktop_ids: waits_on,
        office_site_id: None,
    };
    let mut now: std::collections::HashMap<String, Desktop> =
        ecd::describe_desktops(&env.cloud, &window.spec.region_id, &filter)
            .await?
            .into_iter()
            .map(|d| (d.desktop_id.clone(), d))
            .collect();
    for d in targets.iter_mut().chain(elsewhere.iter_mut()) {
        if let Some(read) = now.remove(&d.desktop_id) {
            *d = read;
        }
    }
    Ok(())
}

async fn set_maintenance(
    window: &DesktopMaintenanceWindow,
    env: &KindEnv,
    action: &SetMaintenance,
) -> Result<(), CloudError> {
    let region = &window.spec.region_id;

    let (key, value) = record_tag(window);
    let r = match action.mode {
        ecd::MaintenanceMode::Enter => match change_tags_of_known(
            env,
            region,
            &action.desktop_ids,
            &TagChange::Set {
                key: &key,
                value: &value,
            },
        )
        .await
        {
            Ok(()) => set_maintenance_of_known(env, region, action).await,
            Err(e) => Err((Vec::new(), e)),
        },
        ecd::MaintenanceMode::Exit => match set_maintenance_of_known(env, region, action).await {
            Ok(()) => change_tags_of_known(env, region, &action.desktop_ids, &TagChange::Remove { key: &key })
                .await
                .map_err(|e| (action.desktop_ids.clone(), e)),
            Err(e) => Err(e),
        },
    };
    match &r {
        Ok(()) => env.write_through(LIST, region, {
            let ids: HashSet<String> = action.desktop_ids.iter().cloned().collect();
            let mode = action.mode;
            move |desktops: &mut Vec<Desktop>| {
                for d in desktops.iter_mut().filter(|d| ids.contains(&d.desktop_id)) {
                    d.tags.retain(|t| t.key != key);
                    if mode == ecd::MaintenanceMode::Enter {
                        d.tags.push(ecd::Tag {
                            key: key.clone(),
                            value: value.clone(),
                        });
                    }
                    d.apply_maintenance_mode(mode == ecd::MaintenanceMode::Enter);
                }
            }
        }),
        Err(_) => env.invalidate(LIST, region),
    }
    r.map_err(|(_, e)| e)
}

/// Disconnects `sessions`, 20 a call. A session the cloud calls invalid has ended already.
async fn disconnect(
    window: &DesktopMaintenanceWindow,
    env: &KindEnv,
    sessions: &[ecd::SessionRef],
) -> Result<(), CloudError> {
    let region = &window.spec.region_id;
    for chunk in sessions.chunks(ecd::MAX_SESSIONS_PER_DISCONNECT) {
        if let Err(e) = ecd::disconnect_desktop_sessions(&env.cloud, region, chunk).await {
            env.invalidate(LIST, region);
            return Err(e);
        }
    }
    let gone: HashSet<ecd::SessionRef> = sessions.iter().cloned().collect();
    env.write_through(LIST, region, move |desktops: &mut Vec<Desktop>| {
        for d in desktops.iter_mut() {
            d.sessions.retain(|s| {
                !gone.contains(&ecd::SessionRef {
                    desktop_id: d.desktop_id.clone(),
                    end_user_id: s.end_user_id.clone(),
                })
            });
            if d.sessions.is_empty() {
                d.connection_status = "Disconnected".into();
                d.finish_draining();
            }
        }
    });
    Ok(())
}

impl ManagedKind for DesktopMaintenanceWindow {
    fn status_gauges(status: &DesktopMaintenanceWindowStatus) -> Vec<(ResourceGauge, f64)> {
        let held = status.desktops_in_maintenance.len();
        let mut gauges = vec![
            (ResourceGauge::DesktopsInMaintenance, held as f64),
            (
                ResourceGauge::DesktopsDraining,
                f64::from(status.desktops_draining_count),
            ),
            (
                ResourceGauge::DesktopsWaitingBusy,
                f64::from(status.desktops_waiting_busy_count),
            ),
            (
                ResourceGauge::DesktopsNeverMaintained,
                status.skipped_desktops.len() as f64,
            ),
        ];
        // The end the desktops were entered for: past it, they should have been exited.
        let end = status
            .current_window
            .as_ref()
            .and_then(|w| chrono::DateTime::parse_from_rfc3339(&w.end).ok());
        if let Some(end) = end.filter(|_| held > 0) {
            gauges.push((ResourceGauge::MaintenanceWindowEnd, end.timestamp() as f64));
        }
        gauges
    }

    type Status = DesktopMaintenanceWindowStatus;
    type Action = DesktopAction;
    const KIND: &'static str = "DesktopMaintenanceWindow";
    const WRITE: (Product, &'static str) = (Product::Ecd, "SetDesktopMaintenance");

    crate::kind_accessors!(DesktopMaintenanceWindowStatus, region_id);
    fn needs_finalizer(&self) -> bool {
        true
    }

    async fn read_and_plan(
        &self,
        env: &KindEnv,
        peers: &[Arc<Self>],
        ctx: &PlanContext,
        stage: Stage,
        fresh: bool,
    ) -> Result<Outcome<DesktopAction, DesktopMaintenanceWindowStatus>, CloudError> {
        let region = self.spec.region_id.clone();
        let previous = self.status.clone().unwrap_or_default();
        // A fresh read is of this window's own desktops: its ids (or its office site) and
        // the ones it recorded; the shared list is the whole region's.
        let filters = match (fresh, &self.spec.selector) {
            (false, _) => vec![DesktopFilter::default()],
            (true, selector) => {
                let mut ids = crate::reconcile::maintenance::listed_ids(&self.spec);
                ids.extend(previous.desktops_in_maintenance.iter().cloned());
                ids.sort();
                ids.dedup();
                let mut filters = Vec::new();
                if !ids.is_empty() {
                    filters.push(DesktopFilter {
                        desktop_ids: ids,
                        office_site_id: None,
                    });
                }
                // An office site is read by itself; other criteria are matched here, on the
                // region's list (the cloud's tag filter is not documented as all-pairs).
                match selector {
                    Some(s) if s.office_site_id.is_some() => filters.push(DesktopFilter {
                        desktop_ids: Vec::new(),
                        office_site_id: s.office_site_id.clone(),
                    }),
                    Some(_) => filters = vec![DesktopFilter::default()],
                    None => {}
                }
                filters
            }
        };
        let (all, listed_at) = region_desktops(env, &region, fresh, filters).await?;
        // Sets, not lists: a region may hold 10,000 desktops and a window 1,000 ids.
        let ids = crate::reconcile::maintenance::listed_ids(&self.spec);
        let listed: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let targeted = |d: &Desktop| selects(&self.spec, &listed, d);
        // One pass: the targets, and how many the exclusion keeps out.
        let mut desktops: Vec<Desktop> = Vec::new();
        let mut excluded_count = 0;
        for d in all.iter().filter(|d| chosen(&self.spec, &listed, d)) {
            if excluded(&self.spec, d) {
                excluded_count += 1;
            } else {
                desktops.push(d.clone());
            }
        }
        let recorded: HashSet<&String> = previous.desktops_in_maintenance.iter().collect();
        let (tag_key, _) = record_tag(self);
        let tagged: BTreeSet<String> = all
            .iter()
            .filter(|d| d.tag(&tag_key).is_some())
            .map(|d| d.desktop_id.clone())
            .collect();
        let elsewhere: Vec<Desktop> = all
            .iter()
            .filter(|d| !targeted(d) && (recorded.contains(&d.desktop_id) || tagged.contains(&d.desktop_id)))
            .cloned()
            .collect();
        let (mut desktops, mut elsewhere) = (desktops, elsewhere);
        if !fresh && stage == Stage::Apply && ctx.now - listed_at > SHARED_LIST_FRESH_ENOUGH {
            read_again_what_the_window_waits_on(self, env, &previous, &mut desktops, &mut elsewhere).await?;
        }
        let held_by_others = held_by_others(self, peers, ctx.now);
        // Another window's tag is its record too, whatever its status says now.
        let mut recorded_by_others = recorded_by_others(self, peers);
        recorded_by_others.extend(
            all.iter()
                .filter(|d| {
                    d.tags
                        .iter()
                        .any(|t| t.key.starts_with(RECORD_TAG_PREFIX) && t.key != tag_key)
                })
                .map(|d| d.desktop_id.clone()),
        );
        let wanted_by_others = wanted_by_others(self, peers, &all, &previous.desktops_in_maintenance, ctx.now);
        // SkipBusy with idleAfter: how long the connected targets have been idle, read for
        // them only (DescribeDesktopSessions, 100 a call), never for the whole region.
        let idle_after = self
            .spec
            .drain
            .as_ref()
            .filter(|d| d.policy == crate::api::maintenance::DrainPolicy::SkipBusy && d.idle_after.is_some());
        let mut idle_seconds = std::collections::BTreeMap::new();
        if idle_after.is_some() && stage == Stage::Apply {
            let busy: Vec<String> = desktops
                .iter()
                .filter(|d| d.connected() && !d.in_maintenance())
                .map(|d| d.desktop_id.clone())
                .collect();
            if !busy.is_empty() {
                for s in ecd::describe_connected_sessions(&env.cloud, &region, &busy).await? {
                    let idle = idle_seconds.entry(s.desktop_id).or_insert(i64::MAX);
                    *idle = (*idle).min(s.session_idle_time);
                }
            }
        }
        Ok(plan(
            &MaintenanceInput {
                spec: &self.spec,
                desktops: &desktops,
                recorded_elsewhere: &elsewhere,
                previous: &previous,
                deleting: stage == Stage::Cleanup,
                held_by_others: &held_by_others,
                recorded_by_others: &recorded_by_others,
                wanted_by_others: &wanted_by_others,
                tagged: &tagged,
                idle_seconds: &idle_seconds,
                excluded: excluded_count,
            },
            ctx,
        ))
    }

    async fn execute(&self, env: &KindEnv, action: &DesktopAction) -> Result<(), CloudError> {
        match action {
            DesktopAction::Maintenance(set) => set_maintenance(self, env, set).await,
            DesktopAction::Disconnect(sessions) => disconnect(self, env, sessions).await,
            // The Event is the notice; the console message, if any, goes to the users.
            DesktopAction::Notice {
                console_message_id: Some(id),
                ..
            } => match ecd::send_console_message(&env.cloud, &self.spec.region_id, id).await? {
                true => Ok(()),
                false => Err(CloudError::api(
                    "SendConsoleMessage",
                    200,
                    "SendConsoleMessage.NotAccepted",
                    &format!("the cloud did not accept the console message {id}"),
                    "",
                )),
            },
            DesktopAction::Notice { .. } => Ok(()),
        }
    }

    fn recorded(&self, status: &DesktopMaintenanceWindowStatus) -> Vec<String> {
        status.desktops_in_maintenance.clone()
    }

    fn recorded_with(status: &DesktopMaintenanceWindowStatus) -> Option<MadeWith> {
        status
            .entered_with
            .as_ref()
            .map(|w| MadeWith::from_ref(w.credentials_ref.clone()))
    }

    fn event_reason(action: &DesktopAction) -> &'static str {
        match action {
            DesktopAction::Maintenance(m) => match m.mode {
                ecd::MaintenanceMode::Enter => events::ENTERED_MAINTENANCE,
                ecd::MaintenanceMode::Exit => events::EXITED_MAINTENANCE,
            },
            DesktopAction::Disconnect(_) => events::DISCONNECTED_SESSIONS,
            DesktopAction::Notice { .. } => events::MAINTENANCE_NOTICE,
        }
    }

    fn describe(action: &DesktopAction) -> String {
        let first_five = |items: Vec<String>| {
            if items.len() > 5 {
                format!("{} ... ({} in all)", items[..5].join(", "), items.len())
            } else {
                items.join(", ")
            }
        };
        match action {
            DesktopAction::Maintenance(m) => {
                format!(
                    "SetDesktopMaintenance {} {}",
                    m.mode.as_str(),
                    first_five(m.desktop_ids.clone())
                )
            }
            DesktopAction::Disconnect(sessions) => format!(
                "DisconnectDesktopSessions {}",
                first_five(
                    sessions
                        .iter()
                        .map(|s| format!("{}/{}", s.desktop_id, s.end_user_id))
                        .collect()
                )
            ),
            DesktopAction::Notice {
                text,
                console_message_id,
            } => match console_message_id {
                Some(id) => format!("{text} (console message {id} sent)"),
                None => text.clone(),
            },
        }
    }
}
