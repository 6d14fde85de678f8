//! DesktopMaintenanceWindow: enter maintenance in the window, exit what we entered after it.

use std::collections::{BTreeSet, HashSet};

use super::duration::parse_span;
use super::schedule::{Schedule, Window, WindowState};
use super::{Outcome, PlanContext, Reason, VERIFY_AFTER, Verdict, min_requeue, rfc3339, until};
use crate::api::maintenance::DrainPolicy;
use crate::api::maintenance::{
    BUSY_SAMPLE, BusyDesktop, DesktopMaintenanceWindowSpec, DesktopMaintenanceWindowStatus, EnteredWith, NoticeRecord,
    Phase, ShortId, WindowTimes,
};
use crate::cloud::ops::ecd::{Desktop, MaintenanceMode, SessionRef};
use chrono::{DateTime, Utc};

/// How often a window with users still connected looks again.
pub const DRAIN_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetMaintenance {
    pub mode: MaintenanceMode,
    /// Any number; the executor sends them 100 at a time.
    pub desktop_ids: Vec<String>,
}

/// A write of a DesktopMaintenanceWindow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DesktopAction {
    Maintenance(SetMaintenance),
    /// The sessions still connected at the drain's deadline, disconnected (any number; the
    /// executor sends them 20 at a time). A session gone meanwhile is no failure.
    Disconnect(Vec<SessionRef>),
    /// A warning to the people on the computers: an Event with `text`, and the console
    /// message, if the spec names one. Recorded before it goes, so it goes at most once.
    Notice {
        text: String,
        console_message_id: Option<String>,
    },
}

impl DesktopAction {
    /// The SetDesktopMaintenance this is, if it is one.
    pub fn maintenance(&self) -> Option<&SetMaintenance> {
        match self {
            DesktopAction::Maintenance(m) => Some(m),
            _ => None,
        }
    }
}

/// What a notice announces.
pub const WINDOW_OPENS: &str = "WindowOpens";
pub const SESSIONS_DISCONNECTED: &str = "SessionsDisconnected";

/// At most the time from recording a notice (to the second) to its reaching the users: a
/// status write and a call. A late notice's lead is counted from then.
const NOTICE_DELIVERY: chrono::Duration = chrono::Duration::seconds(5);

/// How long notices are kept in status after what they announced.
const NOTICES_KEPT: chrono::Duration = chrono::Duration::days(7);

/// Notices due, each with whether it is sent (or only recorded as passed), and when the
/// next one falls due.
type DueNotices = (Vec<(NoticeRecord, bool)>, Option<DateTime<Utc>>);

/// The notices due now that were not sent yet, as records, and when the next one falls due.
/// For each event ahead (the window opening, the drain's deadline), the lead times reached
/// and not recorded are recorded; only the nearest one is sent (after an outage a notice
/// for a lead already passed would announce the wrong time).
fn due_notices(
    leads: &[(String, chrono::Duration)],
    events: &[(&'static str, DateTime<Utc>)],
    previous: &[NoticeRecord],
    now: DateTime<Utc>,
) -> DueNotices {
    let mut out = Vec::new();
    let mut next_due: Option<DateTime<Utc>> = None;
    for (about, at) in events {
        if *at <= now {
            continue;
        }
        let mut sent_one = false;
        for (lead, d) in leads {
            let due = *at - *d;
            // Compared as recorded (to the second): a spec may give sub-second times.
            let at_text = rfc3339(*at);
            let recorded = previous
                .iter()
                .any(|n| n.about == *about && n.lead == *lead && n.at == at_text);
            if recorded {
                // A nearer lead already went: the farther ones are past.
                sent_one = true;
                continue;
            }
            if due > now {
                next_due = Some(next_due.map_or(due, |n| n.min(due)));
                continue;
            }
            out.push((
                NoticeRecord {
                    about: about.to_string(),
                    at: rfc3339(*at),
                    lead: lead.clone(),
                    sent_at: (!sent_one).then(|| rfc3339(now)),
                },
                !sent_one,
            ));
            sent_one = true;
        }
    }
    (out, next_due)
}

/// `notify.before`, nearest lead first; an unreadable one names its field.
fn leads(spec: &DesktopMaintenanceWindowSpec) -> Result<Vec<(String, chrono::Duration)>, String> {
    let mut leads = Vec::new();
    for (i, lead) in spec.notify.iter().flat_map(|n| n.before.iter()).enumerate() {
        leads.push((lead.clone(), parse_span(&format!("spec.notify.before[{i}]"), lead)?));
    }
    leads.sort_by_key(|(_, d)| *d);
    Ok(leads)
}

/// When the sessions are really disconnected for the drain's `deadline` in a window that
/// opens at `opens`: not before the deadline, and not before `longest` (the longest lead of
/// `notify.before`, the warning promised) has passed since the first notice about it went;
/// a notice not sent yet goes `now` at the earliest. The window's opening notices announce
/// a deadline at the opening (Immediate).
fn warned_at<'a>(
    deadline: DateTime<Utc>,
    opens: DateTime<Utc>,
    notices: impl IntoIterator<Item = &'a NoticeRecord>,
    longest: Option<chrono::Duration>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let Some(longest) = longest else { return deadline };
    let at = rfc3339(deadline);
    let first_sent = notices
        .into_iter()
        .filter(|n| n.at == at && (n.about == SESSIONS_DISCONNECTED || (n.about == WINDOW_OPENS && deadline == opens)))
        .filter_map(|n| n.sent_at.as_deref()?.parse::<DateTime<Utc>>().ok())
        .min()
        .unwrap_or(now);
    if first_sent + longest <= deadline {
        deadline
    } else {
        // A notice that went late: the lead runs from when it reached the cloud, which is
        // after it was recorded (to the second) by a status write and the call.
        first_sent + longest + NOTICE_DELIVERY
    }
}

/// What a notice says; `announced` is when the sessions are disconnected for a deadline
/// (see [`warned_at`]), and `after` the drain's deadline counted from a window's start.
fn notice_text(
    record: &NoticeRecord,
    after: Option<chrono::Duration>,
    announced: impl Fn(DateTime<Utc>, DateTime<Utc>) -> DateTime<Utc>,
) -> String {
    let Ok(at) = record.at.parse::<DateTime<Utc>>() else {
        return format!("in {}: {} at {}", record.lead, record.about, record.at);
    };
    match record.about.as_str() {
        SESSIONS_DISCONNECTED => format!(
            "in {}: the sessions still connected to the computers in maintenance are disconnected at {}",
            record.lead,
            rfc3339(announced(at, at))
        ),
        _ => {
            let force = match after {
                Some(a) if a.is_zero() => match announced(at, at) {
                    when if when == at => "; sessions are disconnected as it opens".to_string(),
                    when => format!("; sessions are disconnected at {}", rfc3339(when)),
                },
                _ => String::new(),
            };
            format!(
                "in {}: the maintenance window opens at {}; the computers enter maintenance and nobody can connect until it ends{force}",
                record.lead, record.at
            )
        }
    }
}

/// The windows as the schedule has them, less the ones that would open in a blackout (those
/// do not open at all); a window recorded as opened is not cut short by a blackout added
/// since. Also the occurrence skipped now, if any.
fn outside_blackouts(
    schedule: &Schedule,
    blackouts: &[Window],
    opened: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (WindowState, Option<Window>) {
    let blacked = |w: &Window| blackouts.iter().any(|b| b.start <= w.start && w.start < b.end);
    let mut state = schedule.at(now);
    let mut skipped = None;
    if let Some(w) = state.current.filter(|w| blacked(w) && opened != Some(w.start)) {
        state.current = None;
        skipped = Some(w);
    }
    // The next window that is not blacked out (a bounded look ahead).
    for _ in 0..100 {
        match state.next {
            Some(n) if blacked(&n) => state.next = schedule.at(n.start).next,
            _ => break,
        }
    }
    (state, skipped)
}

/// When the sessions still connected to the computers a window entered are disconnected,
/// counted from the window's start: never with `Wait` and `SkipBusy`, at once with
/// `Immediate`, `forceAfter` after it with `WaitThenForce`. Read once per plan.
fn force_after(spec: &DesktopMaintenanceWindowSpec) -> Result<Option<chrono::Duration>, String> {
    let Some(drain) = &spec.drain else { return Ok(None) };
    match drain.policy {
        DrainPolicy::Wait | DrainPolicy::SkipBusy => Ok(None),
        DrainPolicy::Immediate => Ok(Some(chrono::Duration::zero())),
        DrainPolicy::WaitThenForce => {
            let after = drain
                .force_after
                .as_deref()
                .ok_or_else(|| "spec.drain.forceAfter: required with policy WaitThenForce".to_string())?;
            parse_span("spec.drain.forceAfter", after).map(Some)
        }
    }
}

/// The drain's deadline in `window`: `after` its start, if that is before its end.
fn force_at(after: Option<chrono::Duration>, window: Window) -> Option<DateTime<Utc>> {
    window.start.checked_add_signed(after?).filter(|at| *at < window.end)
}

pub struct MaintenanceInput<'a> {
    pub spec: &'a DesktopMaintenanceWindowSpec,
    /// The targeted desktops the cloud knows (by id, or every one of the office site).
    pub desktops: &'a [Desktop],
    /// Desktops this resource recorded as put into maintenance that are no longer targeted
    /// (the spec changed) but still exist, so they can be taken out.
    pub recorded_elsewhere: &'a [Desktop],
    pub previous: &'a DesktopMaintenanceWindowStatus,
    /// True while the resource is being deleted: exit everything we entered.
    pub deleting: bool,
    /// Desktops that another window of the region has recorded as in maintenance and still
    /// holds (its window has not ended): they stay in maintenance until the last one ends.
    pub held_by_others: &'a BTreeSet<String>,
    /// Desktops that another window of the region has recorded as in maintenance, whether
    /// or not its window is still open (at a seam it has not exited them yet): a window that
    /// wants one takes it into its own record instead of calling it foreign.
    pub recorded_by_others: &'a BTreeSet<String>,
    /// Of this window's recorded desktops, those another window of the region wants in
    /// maintenance now (its window is open and targets them) but has not recorded yet: they
    /// are not exited, and stay recorded here until the other window holds them.
    pub wanted_by_others: &'a BTreeSet<String>,
    /// Desktops that carry this window's record tag: it tags each desktop before entering
    /// it, so that a status lost to a restore or a replace can be taken back from the cloud.
    pub tagged: &'a BTreeSet<String>,
    /// How many desktops the selection would take but `exclude` keeps out.
    pub excluded: usize,
    /// SkipBusy with `idleAfter`: for the connected desktops read, the shortest
    /// `SessionIdleTime` (seconds) of their connected sessions. A desktop absent is busy.
    pub idle_seconds: &'a std::collections::BTreeMap<String, i64>,
}

/// SkipBusy's settings, read once.
pub struct SkipBusy {
    pub idle_after: Option<i64>,
    pub retry_every: std::time::Duration,
    pub min_maintenance: chrono::Duration,
}

fn skip_busy(spec: &DesktopMaintenanceWindowSpec) -> Result<Option<SkipBusy>, String> {
    skip_busy_of(spec.drain.as_ref(), "spec.drain")
}

/// SkipBusy's settings of `drain` (at `field`), when its policy is SkipBusy.
pub fn skip_busy_of(drain: Option<&crate::api::maintenance::Drain>, field: &str) -> Result<Option<SkipBusy>, String> {
    let Some(d) = drain.filter(|d| d.policy == DrainPolicy::SkipBusy) else {
        return Ok(None);
    };
    let idle_after = match &d.idle_after {
        Some(v) => Some(parse_span(&format!("{field}.idleAfter"), v)?.num_seconds()),
        None => None,
    };
    let or = |v: &Option<String>, default: &'static str| v.clone().unwrap_or_else(|| default.into());
    Ok(Some(SkipBusy {
        idle_after,
        retry_every: super::duration::parse(&format!("{field}.retryEvery"), &or(&d.retry_every, "5m"))?,
        min_maintenance: parse_span(&format!("{field}.minMaintenance"), &or(&d.min_maintenance, "30m"))?,
    }))
}

/// Whether someone works on `d`: connected, and (with `idleAfter`) not idle that long.
fn busy(d: &Desktop, skip: &SkipBusy, idle_seconds: &std::collections::BTreeMap<String, i64>) -> bool {
    d.connected()
        && match skip.idle_after {
            Some(limit) => idle_seconds.get(&d.desktop_id).is_none_or(|idle| *idle < limit),
            None => true,
        }
}

/// The desktops never maintained in the window that started at `start`: those recorded for
/// it before, and `more`.
fn never_maintained(
    previous: &DesktopMaintenanceWindowStatus,
    start: &str,
    more: impl IntoIterator<Item = String>,
) -> BTreeSet<String> {
    let mut all: BTreeSet<String> = if previous.skipped_in.as_deref() == Some(start) {
        previous.skipped_desktops.iter().cloned().collect()
    } else {
        BTreeSet::new()
    };
    all.extend(more);
    all
}

/// Whether `status` holds no record, as after a restore without status (Velero's default)
/// or a `kubectl replace --subresource=status`, or for a window that never ran: only then is
/// the record taken back from the desktops' tags (a tag that outlived its record otherwise
/// never makes someone else's maintenance ours). Every plan sets `phase`; the conditions are
/// no sign, since a reconcile that failed before planning writes them into the empty status.
pub fn status_lost(status: &DesktopMaintenanceWindowStatus) -> bool {
    status.desktops_in_maintenance.is_empty() && status.phase.is_none()
}

/// The window the status records as open, while it still is.
fn recorded_window(previous: &DesktopMaintenanceWindowStatus, now: chrono::DateTime<chrono::Utc>) -> WindowState {
    let open = previous.current_window.as_ref().and_then(|w| {
        let start = w.start.parse().ok()?;
        let end = w.end.parse().ok()?;
        (now < end).then_some(Window { start, end })
    });
    WindowState {
        current: open,
        next: None,
    }
}

pub fn schedule(spec: &DesktopMaintenanceWindowSpec) -> Result<Schedule, String> {
    match (&spec.window, &spec.recurring) {
        (Some(w), None) => Schedule::fixed("spec.window", &w.start, &w.end),
        (None, Some(r)) => Schedule::recurring("spec.recurring", &r.cron, &r.duration, &r.time_zone),
        _ => Err("spec: set exactly one of window or recurring".into()),
    }
}

fn times(w: Window) -> WindowTimes {
    WindowTimes {
        start: rfc3339(w.start),
        end: rfc3339(w.end),
    }
}

/// Whether the window's selection takes `desktop`: listed by id, or meeting every criterion
/// of the selector; and not excluded (an exclusion always wins).
pub fn selects(spec: &DesktopMaintenanceWindowSpec, listed: &HashSet<&str>, desktop: &Desktop) -> bool {
    chosen(spec, listed, desktop) && !excluded(spec, desktop)
}

/// Whether `desktopIds` or the selector takes `desktop`, before `exclude`.
pub fn chosen(spec: &DesktopMaintenanceWindowSpec, listed: &HashSet<&str>, desktop: &Desktop) -> bool {
    match &spec.selector {
        Some(s) => criteria_take(
            &Criteria {
                office_site_id: s.office_site_id.as_deref(),
                tags: &s.tags,
                desktop_group_ids: &s.desktop_group_ids,
                policy_group_ids: &s.policy_group_ids,
                end_user_ids: &s.end_user_ids,
            },
            desktop,
        ),
        None => listed.contains(desktop.desktop_id.as_str()),
    }
}

/// A desktop selector's criteria (a window's `selector`, a rollout wave's).
pub struct Criteria<'a> {
    pub office_site_id: Option<&'a str>,
    pub tags: &'a std::collections::BTreeMap<String, String>,
    pub desktop_group_ids: &'a [ShortId],
    pub policy_group_ids: &'a [ShortId],
    pub end_user_ids: &'a [ShortId],
}

/// Whether `desktop` meets every criterion given (a criterion of several values: any of them).
pub fn criteria_take(c: &Criteria<'_>, desktop: &Desktop) -> bool {
    c.office_site_id.is_none_or(|site| desktop.office_site_id == site)
        && desktop.has_tags(c.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        && (c.desktop_group_ids.is_empty() || c.desktop_group_ids.iter().any(|g| g.0 == desktop.desktop_group_id))
        && (c.policy_group_ids.is_empty() || c.policy_group_ids.iter().any(|p| desktop.has_policy(&p.0)))
        && (c.end_user_ids.is_empty() || c.end_user_ids.iter().any(|u| desktop.end_user_ids.contains(&u.0)))
}

/// Whether `exclude` names `desktop`, by id or by tags.
pub fn excluded(spec: &DesktopMaintenanceWindowSpec, desktop: &Desktop) -> bool {
    spec.exclude.as_ref().is_some_and(|x| {
        x.desktop_ids.iter().any(|id| id.0 == desktop.desktop_id)
            || (!x.tags.is_empty() && desktop.has_tags(x.tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
    })
}

/// The ids the spec lists (empty when it uses a selector).
pub fn listed_ids(spec: &DesktopMaintenanceWindowSpec) -> Vec<String> {
    spec.desktop_ids.iter().flatten().map(|d| d.0.clone()).collect()
}

pub fn plan(input: &MaintenanceInput<'_>, ctx: &PlanContext) -> Outcome<DesktopAction, DesktopMaintenanceWindowStatus> {
    let mut status = input.previous.clone();
    // Deletion undoes the record whatever the spec says; it may no longer be valid.
    let opened = input
        .previous
        .current_window
        .as_ref()
        .and_then(|w| w.start.parse::<DateTime<Utc>>().ok());
    let (state, schedule, invalid, blacked_out, blackout_list) = if input.deleting {
        (WindowState::default(), None, None, None, Vec::new())
    } else {
        match schedule(input.spec).and_then(|s| Ok((s, super::schedule::blackouts(&input.spec.blackouts)?))) {
            Ok((s, b)) => {
                let (state, blacked_out) = outside_blackouts(&s, &b, opened, ctx.now);
                (state, Some(s), None, blacked_out, b)
            }
            // An invalid edit does not end an open window early, nor keep it open forever:
            // the window recorded as open runs to its recorded end, then everything exits.
            Err(msg) => (
                recorded_window(input.previous, ctx.now),
                None,
                Some(msg),
                None,
                Vec::new(),
            ),
        }
    };
    // The drain's deadline in the window open now; an invalid one forces nobody.
    let (after, invalid) = match (force_after(input.spec), invalid) {
        (Ok(after), None) => (after, None),
        (Ok(_), invalid) => (None, invalid),
        (Err(msg), invalid) => (None, invalid.or(Some(msg))),
    };
    // The deadline as the policy sets it; sessions go once the promised warning has run.
    let deadline = state.current.and_then(|w| force_at(after, w));
    // `notify.before`, read once; the longest lead is the warning promised.
    let (leads, invalid) = match (leads(input.spec), invalid) {
        (Ok(l), invalid) => (l, invalid),
        (Err(msg), invalid) => (Vec::new(), invalid.or(Some(msg))),
    };
    let longest = leads.last().map(|(_, d)| *d);
    let (skip, invalid) = match (skip_busy(input.spec), invalid) {
        (Ok(s), invalid) => (s, invalid),
        (Err(msg), invalid) => (None, invalid.or(Some(msg))),
    };
    // Notices for what comes: the next window opening (or this one's deadline).
    let mut ahead: Vec<(&'static str, DateTime<Utc>)> = Vec::new();
    if invalid.is_none() && !input.deleting {
        if let Some(n) = state.next.filter(|_| state.current.is_none()) {
            ahead.push((WINDOW_OPENS, n.start));
            if let Some(f) = force_at(after, n).filter(|f| *f > n.start) {
                ahead.push((SESSIONS_DISCONNECTED, f));
            }
        }
        if let Some(f) = deadline {
            ahead.push((SESSIONS_DISCONNECTED, f));
        }
    }
    // Nothing is ahead under an invalid spec.
    let (mut notices, next_notice) = due_notices(&leads, &ahead, &input.previous.notices, ctx.now);
    let known: Vec<&Desktop> = input.desktops.iter().chain(input.recorded_elsewhere).collect();
    let mut ours: BTreeSet<String> = input.previous.desktops_in_maintenance.iter().cloned().collect();
    // The record is lost: the desktops in maintenance under this window's tag are ours.
    let adopted: Vec<String> = if status_lost(input.previous) {
        known
            .iter()
            .filter(|d| d.in_maintenance() && input.tagged.contains(&d.desktop_id))
            .map(|d| d.desktop_id.clone())
            .collect()
    } else {
        Vec::new()
    };
    ours.extend(adopted.iter().cloned());
    let targeted: BTreeSet<&str> = input.desktops.iter().map(|d| d.desktop_id.as_str()).collect();
    let listed = listed_ids(input.spec);
    let unknown: Vec<String> = listed
        .iter()
        .filter(|id| !targeted.contains(id.as_str()))
        .cloned()
        .collect();

    let mut enter = Vec::new();
    let mut exit = Vec::new();
    let mut foreign = Vec::new();
    let mut keep: BTreeSet<String> = BTreeSet::new();
    let mut handing_over = 0usize;
    let mut waiting_busy = Vec::new();
    let mut skipped = Vec::new();
    // SkipBusy: a busy computer is entered only while enough of the window is left.
    let too_late = match (&skip, state.current) {
        (Some(s), Some(w)) => ctx.now + s.min_maintenance > w.end,
        _ => false,
    };
    for d in &known {
        let id = d.desktop_id.clone();
        let is_ours = ours.contains(&id);
        // Under an invalid spec nothing new enters; the recorded ones are held to the end.
        let wanted = state.current.is_some() && targeted.contains(id.as_str()) && (invalid.is_none() || is_ours);
        match (wanted, d.in_maintenance(), is_ours) {
            (true, false, _) if skip.as_ref().is_some_and(|s| busy(d, s, input.idle_seconds)) => {
                if too_late {
                    skipped.push(id);
                } else {
                    waiting_busy.push(id);
                }
            }
            (true, false, _) => {
                enter.push(id.clone());
                keep.insert(id);
            }
            (true, true, true) => {
                keep.insert(id);
            }
            // Another window put it into maintenance and holds it, or has not exited it yet
            // (back-to-back windows): hold it too, so that it exits only when the last
            // window that wants it ends, and is never counted foreign because of ours.
            (true, true, false) if input.held_by_others.contains(&id) || input.recorded_by_others.contains(&id) => {
                keep.insert(id);
            }
            (_, true, false) if targeted.contains(id.as_str()) => foreign.push(id),
            (_, true, false) => {}
            // Still held by another window: ours no longer, but not ours to exit either.
            (false, true, true) if input.held_by_others.contains(&id) => {}
            // Another window wants it now and has not taken it over yet: hand it over
            // through the seam, keeping it recorded here until then.
            (false, true, true) if input.wanted_by_others.contains(&id) => {
                handing_over += 1;
                keep.insert(id);
            }
            (false, true, true) => exit.push(id),
            // Ours but already out of maintenance (someone took it out): forget it.
            (false, false, _) => {}
        }
    }
    // Recorded desktops the cloud no longer lists are forgotten; nothing can be done there.

    // Deletion undoes the record under any policy: the operator made those writes.
    let manages = ctx.manages() || input.deleting;
    let mut actions = Vec::new();
    if manages && !exit.is_empty() {
        actions.push(DesktopAction::Maintenance(SetMaintenance {
            mode: MaintenanceMode::Exit,
            desktop_ids: exit.clone(),
        }));
    }
    if manages && !enter.is_empty() {
        actions.push(DesktopAction::Maintenance(SetMaintenance {
            mode: MaintenanceMode::Enter,
            desktop_ids: enter.clone(),
        }));
    }
    // The sessions a forced disconnect would end: on the computers this window entered and
    // holds; nobody else's.
    let connected: Vec<SessionRef> = known
        .iter()
        .filter(|d| keep.contains(&d.desktop_id) && ours.contains(&d.desktop_id))
        .flat_map(|d| {
            d.sessions.iter().map(|s| SessionRef {
                desktop_id: d.desktop_id.clone(),
                end_user_id: s.end_user_id.clone(),
            })
        })
        .collect();
    // A deadline reached with no notice sent about it (the window was made late, or the
    // operator was down): the users are told now, and the disconnect waits the longest lead.
    if let (Some(d), Some(w), Some(l)) = (deadline, state.current, longest) {
        let told = input.previous.notices.iter().chain(notices.iter().map(|(r, _)| r));
        let unwarned = warned_at(d, w.start, told, Some(l), ctx.now) >= ctx.now + l;
        if manages && ctx.now >= d && unwarned && ctx.now + l < w.end && !connected.is_empty() {
            notices.push((
                NoticeRecord {
                    about: SESSIONS_DISCONNECTED.to_string(),
                    at: rfc3339(d),
                    lead: leads.last().map(|(text, _)| text.clone()).unwrap_or_default(),
                    sent_at: Some(rfc3339(ctx.now)),
                },
                true,
            ));
        }
    }
    let told: Vec<&NoticeRecord> = input
        .previous
        .notices
        .iter()
        .chain(notices.iter().map(|(r, _)| r))
        .collect();
    let announced = |deadline: DateTime<Utc>, opens: DateTime<Utc>| {
        warned_at(deadline, opens, told.iter().copied(), longest, ctx.now)
    };
    let force = state
        .current
        .and_then(|w| Some((deadline?, w)))
        .map(|(d, w)| (announced(d, w.start), w))
        .filter(|(at, w)| *at < w.end)
        .map(|(at, _)| at);
    // Once the deadline and the promised warning have passed, the sessions still connected
    // to the computers this window holds are disconnected; never before.
    let forced: Vec<SessionRef> = match force {
        Some(at) if manages && ctx.now >= at => connected,
        _ => Vec::new(),
    };
    if !forced.is_empty() {
        actions.push(DesktopAction::Disconnect(forced.clone()));
    }
    // Notices go last: one that fails never holds up the maintenance.
    let console = input.spec.notify.as_ref().and_then(|n| n.console_message_id.clone());
    for (record, _) in notices.iter().filter(|(_, send)| *send && manages) {
        actions.push(DesktopAction::Notice {
            text: notice_text(record, after, announced),
            console_message_id: console.clone(),
        });
    }
    let mut kept_notices: Vec<NoticeRecord> = input
        .previous
        .notices
        .iter()
        .filter(|n| {
            n.at.parse::<DateTime<Utc>>()
                .is_ok_and(|at| at + NOTICES_KEPT > ctx.now)
        })
        .cloned()
        .collect();
    if manages {
        kept_notices.extend(notices.iter().map(|(r, _)| r.clone()));
    }
    let intent = (manages && (!enter.is_empty() || !adopted.is_empty() || !notices.is_empty())).then(|| {
        // Record the desktops before entering them, so a restart part-way still exits them;
        // and the adopted ones before anything else, so a failed exit keeps them.
        let mut i = input.previous.clone();
        let mut all: BTreeSet<String> = ours.clone();
        all.extend(enter.iter().cloned());
        i.desktops_in_maintenance = all.into_iter().collect();
        i.desktops_in_maintenance_count = i.desktops_in_maintenance.len() as i32;
        if !i.desktops_in_maintenance.is_empty() {
            i.entered_with = Some(EnteredWith {
                credentials_ref: input.spec.common.credentials_ref.clone(),
            });
        }
        i.notices = kept_notices.clone();
        i
    });
    let after: BTreeSet<String> = if manages {
        keep
    } else {
        // ObserveOnly writes nothing, so what was recorded stays recorded.
        ours.iter()
            .filter(|id| known.iter().any(|d| &d.desktop_id == *id))
            .cloned()
            .collect()
    };
    status.desktops_in_maintenance = after.into_iter().collect();
    status.desktops_in_maintenance_count = status.desktops_in_maintenance.len() as i32;
    // Outside deletion, the resource acts with its spec's credentials (the controller
    // drains a record made with other ones first, as a deletion).
    status.entered_with = (!status.desktops_in_maintenance.is_empty()).then(|| match (&intent, input.deleting) {
        (_, true) => input.previous.entered_with.clone().unwrap_or_default(),
        _ => EnteredWith {
            credentials_ref: input.spec.common.credentials_ref.clone(),
        },
    });
    // Ours that someone still works on: entered, but in maintenance only once they leave.
    let draining: Vec<&Desktop> = known
        .iter()
        .filter(|d| status.desktops_in_maintenance.binary_search(&d.desktop_id).is_ok())
        .filter(|d| d.draining())
        .copied()
        .collect();
    status.desktops_draining_count = draining.len() as i32;
    status.desktops_targeted_count = input.desktops.len() as i32;
    status.desktops_excluded_count = input.excluded as i32;
    // Disconnects are counted per window: a new window starts again from zero.
    let same_window = state.current.is_some()
        && input.previous.current_window.as_ref().map(|w| w.start.clone()) == state.current.map(|w| rfc3339(w.start));
    let before = if same_window || state.current.is_none() {
        input.previous.sessions_disconnected_count
    } else {
        0
    };
    status.sessions_disconnected_count = before + forced.len() as i32;
    status.busy_desktops = draining
        .iter()
        .filter(|d| d.connected())
        .take(BUSY_SAMPLE)
        .map(|d| BusyDesktop {
            desktop_id: d.desktop_id.clone(),
            end_user_ids: d.sessions.iter().map(|s| s.end_user_id.clone()).collect(),
            connected_since: d.sessions.iter().map(|s| s.establishment_time.clone()).min(),
        })
        .collect();
    status.force_at = force.map(rfc3339);
    status.desktops_waiting_busy_count = waiting_busy.len() as i32;
    // The skipped of the window open now; after it, those of the last one, until the next.
    match state.current {
        Some(w) => {
            let start = rfc3339(w.start);
            let mut all = never_maintained(input.previous, &start, skipped.iter().cloned());
            all.retain(|id| !status.desktops_in_maintenance.contains(id) && !enter.contains(id));
            status.skipped_desktops = all.into_iter().collect();
            status.skipped_in = (!status.skipped_desktops.is_empty()).then_some(start);
        }
        None if input.deleting => {
            status.skipped_desktops.clear();
            status.skipped_in = None;
        }
        // The window has just ended: the computers exited while still draining were never
        // maintained either.
        None => {
            let ended = input.previous.current_window.as_ref().map(|w| w.start.clone());
            let never: Vec<String> = known
                .iter()
                .filter(|d| exit.contains(&d.desktop_id) && d.draining())
                .map(|d| d.desktop_id.clone())
                .collect();
            if let Some(start) = ended.filter(|_| !never.is_empty()) {
                status.skipped_desktops = never_maintained(input.previous, &start, never).into_iter().collect();
                status.skipped_in = Some(start);
            }
        }
    }
    status.notices = kept_notices;
    status.next_blackout = blackout_list.iter().find(|b| b.end > ctx.now).map(|b| times(*b));
    status.foreign_maintenance = foreign;
    status.unknown_desktop_ids = unknown.clone();
    status.current_window = state.current.map(times);
    status.next_window = state.next.map(times);
    let completed = matches!(schedule, Some(Schedule::Fixed(w)) if ctx.now >= w.end);
    status.phase = Some(if state.current.is_some() {
        Phase::Active
    } else if completed && !input.deleting {
        Phase::Completed
    } else {
        Phase::Scheduled
    });

    // A notice alone changes nothing on the desktops: the window keeps its phase's reason.
    let writes_to_desktops = actions.iter().any(|a| !matches!(a, DesktopAction::Notice { .. }));
    let verdict = if let Some(msg) = invalid {
        let held = match &status.current_window {
            Some(w) => format!(
                "; the {} computer(s) in maintenance exit at the recorded window end {}",
                status.desktops_in_maintenance_count, w.end
            ),
            None => String::new(),
        };
        Verdict::not_ready(Reason::InvalidSpec, format!("{msg}{held}"))
    } else if !unknown.is_empty() {
        Verdict::not_ready(
            Reason::NotFound,
            format!(
                "no such cloud computer in {}: {}",
                input.spec.region_id,
                unknown.join(", ")
            ),
        )
    } else if writes_to_desktops {
        let disconnecting = if forced.is_empty() {
            String::new()
        } else {
            format!(", disconnecting {} session(s) at the drain's deadline", forced.len())
        };
        // What `plan` shows of the drain to come: who is still at work, and until when.
        let at_work = known
            .iter()
            .filter(|d| d.connected() && enter.contains(&d.desktop_id))
            .count();
        let people = match (at_work, &status.force_at) {
            (0, _) => String::new(),
            (n, Some(at)) => format!(" ({n} with users connected: they drain until they leave, or until {at})"),
            (n, None) => format!(" ({n} with users connected: they drain until the users leave)"),
        };
        let busy = if waiting_busy.is_empty() {
            String::new()
        } else {
            format!(", not entering {} where people work (SkipBusy)", waiting_busy.len())
        };
        let notices = actions
            .iter()
            .filter(|a| matches!(a, DesktopAction::Notice { .. }))
            .count();
        let notices = if notices == 0 {
            String::new()
        } else {
            format!(", {notices} notice(s) to the users")
        };
        Verdict::not_ready(
            Reason::Applying,
            format!(
                "entering maintenance: {}{people}, exiting: {}{disconnecting}{busy}{notices}",
                enter.len(),
                exit.len()
            ),
        )
    } else if !manages && (!enter.is_empty() || !exit.is_empty()) {
        Verdict::not_ready(
            Reason::DriftDetected,
            format!(
                "{} computer(s) should enter and {} exit maintenance; ObserveOnly, nothing written",
                enter.len(),
                exit.len()
            ),
        )
    } else {
        match status.phase {
            Some(Phase::Active) if status.desktops_waiting_busy_count > 0 => Verdict::not_ready(
                Reason::WaitingForBusy,
                format!(
                    "{} computer(s) in maintenance; {} not entered because people work on them, looked at again every \
                     {}s{}",
                    status.desktops_in_maintenance_count,
                    status.desktops_waiting_busy_count,
                    skip.as_ref().map(|s| s.retry_every.as_secs()).unwrap_or_default(),
                    match &status.current_window {
                        Some(w) => format!(" until too little of the window (ending {}) is left", w.end),
                        None => String::new(),
                    }
                ),
            ),
            Some(Phase::Active) if status.desktops_draining_count > 0 => Verdict::not_ready(
                Reason::Draining,
                format!(
                    "{} computer(s) entered maintenance; {} still have users connected and are in maintenance once \
                     they leave{}",
                    status.desktops_in_maintenance_count,
                    status.desktops_draining_count,
                    match &status.force_at {
                        Some(at) => format!("; their sessions are disconnected at {at}"),
                        None => String::new(),
                    }
                ),
            ),
            _ if state.current.is_none() && !status.skipped_desktops.is_empty() && !input.deleting => {
                Verdict::not_ready(
                    Reason::PartiallyMaintained,
                    format!(
                        "the window from {} ended with {} computer(s) never maintained because people were working on \
                     them: {}",
                        status.skipped_in.clone().unwrap_or_default(),
                        status.skipped_desktops.len(),
                        status
                            .skipped_desktops
                            .iter()
                            .take(10)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            }
            _ if blacked_out.is_some() => Verdict::ready(
                Reason::BlackedOut,
                format!(
                    "the window from {} is skipped: it starts inside the blackout {}",
                    blacked_out.map(|w| rfc3339(w.start)).unwrap_or_default(),
                    status
                        .next_blackout
                        .as_ref()
                        .map(|b| format!("{} to {}", b.start, b.end))
                        .unwrap_or_default()
                ),
            ),
            Some(Phase::Active) => Verdict::ready(
                Reason::Active,
                format!("{} computer(s) in maintenance", status.desktops_in_maintenance_count),
            ),
            Some(Phase::Completed) => Verdict::ready(Reason::Completed, "the window has ended"),
            _ => Verdict::ready(Reason::Scheduled, "waiting for the next window"),
        }
    };
    let verdict = if adopted.is_empty() {
        verdict
    } else {
        Verdict {
            message: format!(
                "{}; the status had no record: {} computer(s) in maintenance under this window's tag were taken back \
                 into it",
                verdict.message,
                adopted.len()
            ),
            ..verdict
        }
    };
    let boundary = state.next_boundary().map(|b| until(ctx.now, b));
    // Writes are confirmed soon; a hand-over is looked at again until the other holds it.
    let verify = (writes_to_desktops || handing_over > 0).then_some(VERIFY_AFTER);
    // People leave on their own time: a draining window looks again soon.
    let drain = (status.desktops_draining_count > 0).then_some(DRAIN_RECHECK);
    let drain = min_requeue(drain, force.filter(|at| *at > ctx.now).map(|at| until(ctx.now, at)));
    let drain = min_requeue(drain, next_notice.map(|at| until(ctx.now, at)));
    // SkipBusy: the busy are looked at again, and at the point where they are skipped.
    let retry = match (&skip, state.current) {
        (Some(s), Some(w)) if !waiting_busy.is_empty() => {
            let cutoff = w.end - s.min_maintenance;
            min_requeue(Some(s.retry_every), (cutoff > ctx.now).then(|| until(ctx.now, cutoff)))
        }
        _ => None,
    };
    let drain = min_requeue(drain, retry);
    Outcome {
        actions,
        intent,
        status,
        verdict,
        requeue_after: min_requeue(boundary, min_requeue(verify, drain)),
    }
}
