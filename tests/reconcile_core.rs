//! The pure reconcile core, kind by kind: spec + observed cloud + now + previous status.

use std::time::Duration;

use alicloud_ops_operator::api::common::{CommonSpec, CredentialsRef};
use alicloud_ops_operator::api::fota::{
    FotaTaskPolicySpec, FotaTaskPolicyStatus, ObservedTask, TaskUid, WrittenStatus,
};
use alicloud_ops_operator::api::image_share::{DeletionPolicy, ImageShareSpec, ImageShareStatus, ShareWrite};
use alicloud_ops_operator::api::maintenance::{
    DesktopId, DesktopMaintenanceWindowSpec, DesktopMaintenanceWindowStatus, DesktopSelector, Drain, DrainPolicy,
    FixedWindow, Phase, RecurringWindow, WindowTimes,
};
use alicloud_ops_operator::api::ota::{
    Approval, ApprovalSource, OtaScheduleSpec, OtaScheduleStatus, OtaType, OtaWindow,
};
use alicloud_ops_operator::api::{ManagementPolicy, ResourceStatus};
use alicloud_ops_operator::cloud::ops::appstream::{AppInstanceGroup, OtaInfo, OtaTask};
use alicloud_ops_operator::cloud::ops::ecd::{Desktop, FotaTask, MaintenanceMode};
use alicloud_ops_operator::cloud::ops::swas::{CustomImage, ShareOperation};
use alicloud_ops_operator::reconcile::{self, PlanContext, Reason, VERIFY_AFTER};
use chrono::{DateTime, Utc};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn ctx(now: &str) -> PlanContext {
    PlanContext {
        now: t(now),
        generation: 1,
        policy: ManagementPolicy::Manage,
        resync: Duration::from_secs(600),
        request: None,
    }
}

fn observe_only(now: &str) -> PlanContext {
    PlanContext {
        policy: ManagementPolicy::ObserveOnly,
        ..ctx(now)
    }
}

// ---------------------------------------------------------------- FotaTaskPolicy

mod fota {
    use super::*;
    use reconcile::fota::{FotaInput, Peer, plan};

    fn spec(auto_push: bool, uids: Option<&[&str]>) -> FotaTaskPolicySpec {
        FotaTaskPolicySpec {
            region_id: "cn-hangzhou".into(),
            auto_push,
            task_uids: uids.map(|u| u.iter().map(|s| TaskUid(s.to_string())).collect()),
            common: CommonSpec::default(),
        }
    }

    fn task(uid: &str, status: &str) -> FotaTask {
        FotaTask {
            task_uid: uid.into(),
            status: status.into(),
            app_version: "1.0".into(),
            ..Default::default()
        }
    }

    fn input<'a>(
        spec: &'a FotaTaskPolicySpec,
        tasks: &'a [FotaTask],
        peers: &'a [Peer],
        prev: &'a FotaTaskPolicyStatus,
    ) -> FotaInput<'a> {
        FotaInput {
            spec,
            key: "ns/mine",
            created: t("2026-11-01T00:00:00Z"),
            peers,
            tasks,
            previous: prev,
        }
    }

    #[test]
    fn pushes_only_tasks_that_differ() {
        let s = spec(true, None);
        let tasks = [
            task("aot-1", "Running"),
            task("aot-2", "Pending"),
            task("aot-3", "Pending"),
        ];
        let out = plan(
            &input(&s, &tasks, &[], &Default::default()),
            &ctx("2026-11-22T10:00:00Z"),
        );
        let uids: Vec<_> = out
            .actions
            .iter()
            .map(|a| (a.task_uid.as_str(), a.user_status.as_str()))
            .collect();
        assert_eq!(uids, vec![("aot-2", "Running"), ("aot-3", "Running")]);
        assert_eq!(out.verdict.reason, Reason::Applying);
        assert_eq!(out.requeue_after, Some(VERIFY_AFTER));
        assert_eq!(out.status.matched_tasks, 3);
    }

    /// A `Status` that is neither Running nor Pending (the metadata's example is `valid`):
    /// `UserStatus` decides when the answer has it; otherwise the write is sent at most once
    /// per resync, and the value is reported.
    #[test]
    fn an_unknown_status_is_written_at_most_once_per_resync() {
        let s = spec(true, None);
        let tasks = [task("aot-1", "valid")];
        let mut ctx0 = ctx("2026-11-22T10:00:00Z");
        ctx0.generation = 1;
        let first = plan(&input(&s, &tasks, &[], &Default::default()), &ctx0);
        assert_eq!(first.actions.len(), 1);
        let mut prev = first.status.clone();
        prev.common.observed_generation = Some(1);
        let mut soon = ctx("2026-11-22T10:00:10Z");
        soon.generation = 1;
        let again = plan(&input(&s, &tasks, &[], &prev), &soon);
        assert!(again.actions.is_empty(), "not every look: {:?}", again.actions);
        assert!(again.verdict.message.contains("\"valid\""), "{}", again.verdict.message);
        assert_eq!(again.status.tasks[0].status, "valid", "the value is reported");
        // A resync of 10 minutes, its jitter (1 minute) and a second later.
        let mut later = ctx("2026-11-22T10:11:02Z");
        later.generation = 1;
        assert_eq!(
            plan(&input(&s, &tasks, &[], &prev), &later).actions.len(),
            1,
            "once per resync"
        );

        // With UserStatus in the answer, that decides.
        let mut with_user_status = task("aot-1", "valid");
        with_user_status.user_status = "Running".into();
        let out = plan(&input(&s, &[with_user_status], &[], &Default::default()), &ctx0);
        assert!(out.actions.is_empty());
        assert_eq!(out.verdict.reason, Reason::InSync);
    }

    #[test]
    fn in_sync_means_no_writes() {
        let s = spec(false, Some(&["aot-2"]));
        let tasks = [task("aot-1", "Running"), task("aot-2", "Pending")];
        let out = plan(
            &input(&s, &tasks, &[], &Default::default()),
            &ctx("2026-11-22T10:00:00Z"),
        );
        assert!(out.actions.is_empty());
        assert_eq!(out.verdict.reason, Reason::InSync);
        assert!(out.verdict.ready);
        assert_eq!(out.status.tasks.len(), 1);
    }

    #[test]
    fn listed_tasks_that_do_not_exist_are_not_found() {
        let s = spec(true, Some(&["aot-1", "aot-9"]));
        let tasks = [task("aot-1", "Pending")];
        let out = plan(
            &input(&s, &tasks, &[], &Default::default()),
            &ctx("2026-11-22T10:00:00Z"),
        );
        assert_eq!(out.verdict.reason, Reason::NotFound);
        assert!(out.verdict.message.contains("aot-9"));
        assert_eq!(out.actions.len(), 1, "existing tasks are still managed");
    }

    #[test]
    fn global_switch_is_reported_and_not_retried_hot() {
        let s = spec(false, None);
        let tasks = [task("aot-1", "Running")];
        let prev = FotaTaskPolicyStatus {
            common: ResourceStatus {
                observed_generation: Some(1),
                ..Default::default()
            },
            tasks: vec![ObservedTask {
                task_uid: "aot-1".into(),
                status: "Running".into(),
                written: Some(WrittenStatus {
                    user_status: "Pending".into(),
                    at: "2026-11-22T10:00:00Z".into(),
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let out = plan(&input(&s, &tasks, &[], &prev), &ctx("2026-11-22T10:00:10Z"));
        assert!(out.actions.is_empty());
        assert_eq!(out.verdict.reason, Reason::GlobalAutoUpdateEnabled);
        assert!(!out.verdict.reason.needs_attention());
        assert_eq!(out.requeue_after, None, "waits for the resync");
        // A resync (with its jitter) later it tries once more.
        let out = plan(&input(&s, &tasks, &[], &prev), &ctx("2026-11-22T10:11:02Z"));
        assert_eq!(out.actions.len(), 1);
    }

    #[test]
    fn the_older_policy_wins_a_conflict() {
        let s = spec(true, None);
        let tasks = [task("aot-1", "Pending"), task("aot-2", "Pending")];
        let older = Peer {
            key: "ns/older".into(),
            shown_as: "ns/older".into(),
            created: t("2026-10-01T00:00:00Z"),
            auto_push: false,
            task_uids: Some(vec!["aot-1".into()]),
        };
        let out = plan(
            &input(&s, &tasks, std::slice::from_ref(&older), &Default::default()),
            &ctx("2026-11-22T10:00:00Z"),
        );
        assert_eq!(out.verdict.reason, Reason::Conflict);
        assert!(out.verdict.reason.needs_attention());
        assert_eq!(
            out.actions.iter().map(|a| a.task_uid.as_str()).collect::<Vec<_>>(),
            vec!["aot-2"]
        );
        assert_eq!(out.status.conflicts, vec!["ns/older (task aot-1)".to_string()]);
        // Seen from the older policy, the newer one does not count: no flip-flop.
        let newer = Peer {
            key: "ns/newer".into(),
            shown_as: "ns/newer".into(),
            created: t("2026-12-01T00:00:00Z"),
            auto_push: true,
            task_uids: None,
        };
        let s_old = spec(false, Some(&["aot-1"]));
        let out = plan(
            &input(&s_old, &tasks, std::slice::from_ref(&newer), &Default::default()),
            &ctx("2026-11-22T10:00:00Z"),
        );
        assert_eq!(out.verdict.reason, Reason::InSync);
    }

    #[test]
    fn observe_only_reports_drift_and_writes_nothing() {
        let s = spec(true, None);
        let tasks = [task("aot-1", "Pending")];
        let out = plan(
            &input(&s, &tasks, &[], &Default::default()),
            &observe_only("2026-11-22T10:00:00Z"),
        );
        assert!(out.actions.is_empty());
        assert_eq!(out.verdict.reason, Reason::DriftDetected);
        assert!(out.has_drift());
    }
}

// ---------------------------------------------------------------- DesktopMaintenanceWindow

mod maintenance {
    use super::*;
    use reconcile::maintenance::{MaintenanceInput, plan};

    fn spec(ids: &[&str]) -> DesktopMaintenanceWindowSpec {
        DesktopMaintenanceWindowSpec {
            region_id: "cn-hangzhou".into(),
            desktop_ids: Some(ids.iter().map(|s| DesktopId(s.to_string())).collect()),
            selector: None,
            window: Some(FixedWindow {
                start: "2026-11-22T12:00:00Z".into(),
                end: "2026-11-22T14:00:00Z".into(),
            }),
            recurring: None,
            drain: None,
            exclude: None,
            blackouts: Vec::new(),
            notify: None,
            common: CommonSpec::default(),
        }
    }

    fn desk(id: &str, flag: &str) -> Desktop {
        Desktop {
            desktop_id: id.into(),
            management_flags: vec![flag.into()],
            ..Default::default()
        }
    }

    fn status_with(ours: &[&str]) -> DesktopMaintenanceWindowStatus {
        DesktopMaintenanceWindowStatus {
            desktops_in_maintenance: ours.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn run(
        spec: &DesktopMaintenanceWindowSpec,
        desks: &[Desktop],
        prev: &DesktopMaintenanceWindowStatus,
        now: &str,
        deleting: bool,
    ) -> reconcile::Outcome<reconcile::maintenance::DesktopAction, DesktopMaintenanceWindowStatus> {
        plan_with(spec, desks, prev, &Default::default(), now, deleting)
    }

    /// [`run`] with the idle times DescribeDesktopSessions would give (SkipBusy).
    fn with_idle(
        spec: &DesktopMaintenanceWindowSpec,
        desks: &[Desktop],
        prev: &DesktopMaintenanceWindowStatus,
        idle: &std::collections::BTreeMap<String, i64>,
        now: &str,
    ) -> reconcile::Outcome<reconcile::maintenance::DesktopAction, DesktopMaintenanceWindowStatus> {
        plan_with(spec, desks, prev, idle, now, false)
    }

    fn plan_with(
        spec: &DesktopMaintenanceWindowSpec,
        desks: &[Desktop],
        prev: &DesktopMaintenanceWindowStatus,
        idle: &std::collections::BTreeMap<String, i64>,
        now: &str,
        deleting: bool,
    ) -> reconcile::Outcome<reconcile::maintenance::DesktopAction, DesktopMaintenanceWindowStatus> {
        plan(
            &MaintenanceInput {
                spec,
                desktops: desks,
                recorded_elsewhere: &[],
                previous: prev,
                deleting,
                held_by_others: &Default::default(),
                recorded_by_others: &Default::default(),
                wanted_by_others: &Default::default(),
                tagged: &Default::default(),
                idle_seconds: idle,
                excluded: 0,
            },
            &ctx(now),
        )
    }

    /// A desktop this window entered, with `users` still connected (the cloud shows it
    /// draining).
    fn busy(id: &str, users: &[&str]) -> Desktop {
        Desktop {
            desktop_id: id.into(),
            management_flags: vec!["EnterMaintenance".into()],
            connection_status: "Connected".into(),
            sessions: users
                .iter()
                .map(|u| alicloud_ops_operator::cloud::ops::ecd::DesktopSession {
                    end_user_id: u.to_string(),
                    establishment_time: "2026-11-22T11:30Z".into(),
                    external_user_name: String::new(),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn draining(policy: DrainPolicy, force_after: Option<&str>) -> DesktopMaintenanceWindowSpec {
        DesktopMaintenanceWindowSpec {
            drain: Some(Drain {
                policy,
                force_after: force_after.map(str::to_string),
                ..Default::default()
            }),
            ..spec(&["ecd-a", "ecd-b"])
        }
    }

    fn disconnects(
        out: &reconcile::Outcome<reconcile::maintenance::DesktopAction, DesktopMaintenanceWindowStatus>,
    ) -> Vec<String> {
        out.actions
            .iter()
            .filter_map(|a| match a {
                reconcile::maintenance::DesktopAction::Disconnect(s) => Some(s),
                _ => None,
            })
            .flatten()
            .map(|s| format!("{}/{}", s.desktop_id, s.end_user_id))
            .collect()
    }

    /// A connected user is never disconnected by `Wait`, nor before `forceAfter`; at the
    /// deadline every session still connected to a desktop this window entered is, and the
    /// status says when beforehand. The window is `Draining` until the users have gone.
    #[test]
    fn sessions_are_disconnected_only_at_the_drain_deadline() {
        let desks = [busy("ecd-a", &["alice", "bob"]), desk("ecd-b", "UnderMaintenance")];
        let prev = status_with(&["ecd-a", "ecd-b"]);
        let waits = run(&spec(&["ecd-a", "ecd-b"]), &desks, &prev, "2026-11-22T13:59:00Z", false);
        assert!(disconnects(&waits).is_empty(), "Wait never disconnects");
        assert_eq!(waits.verdict.reason, Reason::Draining, "{}", waits.verdict.message);
        assert_eq!(waits.status.desktops_draining_count, 1);
        assert_eq!(waits.status.busy_desktops[0].end_user_ids, ["alice", "bob"]);
        assert_eq!(waits.status.force_at, None);

        let force = draining(DrainPolicy::WaitThenForce, Some("90m"));
        let before = run(&force, &desks, &prev, "2026-11-22T13:29:59Z", false);
        assert!(disconnects(&before).is_empty(), "not a second before the deadline");
        assert_eq!(before.status.force_at.as_deref(), Some("2026-11-22T13:30:00Z"));
        assert!(
            before.verdict.message.contains("2026-11-22T13:30:00Z"),
            "{}",
            before.verdict.message
        );
        assert_eq!(
            before.requeue_after,
            Some(Duration::from_secs(1)),
            "comes back at the deadline, which is sooner than the drain's recheck"
        );
        let at = run(&force, &desks, &prev, "2026-11-22T13:30:00Z", false);
        assert_eq!(disconnects(&at), ["ecd-a/alice", "ecd-a/bob"]);
        assert_eq!(at.status.sessions_disconnected_count, 2);
        assert_eq!(at.status.desktops_targeted_count, 2);

        let immediate = run(
            &draining(DrainPolicy::Immediate, None),
            &desks,
            &prev,
            "2026-11-22T12:00:00Z",
            false,
        );
        assert_eq!(disconnects(&immediate), ["ecd-a/alice", "ecd-a/bob"]);

        // A deadline at or after the window's end never comes.
        let late = run(
            &draining(DrainPolicy::WaitThenForce, Some("2h")),
            &desks,
            &prev,
            "2026-11-22T13:59:59Z",
            false,
        );
        assert!(disconnects(&late).is_empty());
        assert_eq!(late.status.force_at, None);
    }

    /// Only the people on desktops this window holds are disconnected: not on a desktop in
    /// someone else's maintenance, nor on one it does not target.
    #[test]
    fn the_deadline_disconnects_nobody_on_desktops_the_window_does_not_hold() {
        let foreign = busy("ecd-b", &["carol"]);
        let elsewhere = busy("ecd-z", &["dave"]);
        let desks = [busy("ecd-a", &["alice"]), foreign, elsewhere];
        let out = run(
            &draining(DrainPolicy::Immediate, None),
            &desks,
            &status_with(&["ecd-a"]),
            "2026-11-22T12:30:00Z",
            false,
        );
        assert_eq!(disconnects(&out), ["ecd-a/alice"]);
    }

    /// A selector takes the computers that meet every criterion it gives (any of the values
    /// a criterion lists), and an exclusion always wins.
    #[test]
    fn a_selector_takes_what_meets_every_criterion_and_exclusions_win() {
        use alicloud_ops_operator::api::maintenance::{DesktopExclusion, ShortId};
        use alicloud_ops_operator::reconcile::maintenance::selects;
        let tag = |k: &str, v: &str| alicloud_ops_operator::cloud::ops::ecd::Tag {
            key: k.into(),
            value: v.into(),
        };
        let d = |id: &str,
                 tags: Vec<alicloud_ops_operator::cloud::ops::ecd::Tag>,
                 group: &str,
                 policy: &str,
                 user: &str| Desktop {
            desktop_id: id.into(),
            office_site_id: "site-1".into(),
            tags,
            desktop_group_id: group.into(),
            policy_group_id: policy.into(),
            end_user_ids: vec![user.into()],
            ..Default::default()
        };
        let desks = [
            d(
                "ecd-1",
                vec![tag("team", "fin"), tag("tier", "gold")],
                "dg-a",
                "pg-1",
                "u1",
            ),
            d("ecd-2", vec![tag("team", "fin")], "dg-b", "pg-1", "u2"),
            d(
                "ecd-3",
                vec![tag("team", "dev"), tag("tier", "gold")],
                "dg-a",
                "pg-2",
                "u3",
            ),
            d(
                "ecd-4",
                vec![tag("team", "fin"), tag("tier", "gold"), tag("hold", "yes")],
                "dg-a",
                "pg-1",
                "u4",
            ),
        ];
        let chosen = |selector: DesktopSelector, exclude: Option<DesktopExclusion>| {
            let s = DesktopMaintenanceWindowSpec {
                desktop_ids: None,
                selector: Some(selector),
                exclude,
                ..spec(&[])
            };
            let none = Default::default();
            desks
                .iter()
                .filter(|x| selects(&s, &none, x))
                .map(|x| x.desktop_id.clone())
                .collect::<Vec<_>>()
        };
        let tags = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let ids = |v: &[&str]| v.iter().map(|s| ShortId(s.to_string())).collect();
        let sel = |t: &[(&str, &str)]| DesktopSelector {
            tags: tags(t),
            ..Default::default()
        };
        assert_eq!(
            chosen(sel(&[("team", "fin"), ("tier", "gold")]), None),
            ["ecd-1", "ecd-4"],
            "every pair"
        );
        assert_eq!(
            chosen(
                DesktopSelector {
                    desktop_group_ids: ids(&["dg-a"]),
                    policy_group_ids: ids(&["pg-1", "pg-9"]),
                    ..Default::default()
                },
                None
            ),
            ["ecd-1", "ecd-4"],
            "every criterion, any value of each"
        );
        assert_eq!(
            chosen(
                DesktopSelector {
                    end_user_ids: ids(&["u2", "u3"]),
                    office_site_id: Some("site-1".into()),
                    ..Default::default()
                },
                None
            ),
            ["ecd-2", "ecd-3"]
        );
        let exclude = DesktopExclusion {
            desktop_ids: vec![DesktopId("ecd-1".into())],
            tags: tags(&[("hold", "yes")]),
        };
        assert!(
            chosen(sel(&[("team", "fin"), ("tier", "gold")]), Some(exclude)).is_empty(),
            "exclusions win"
        );
        // A desktop listed by id and excluded is not taken either.
        let s = DesktopMaintenanceWindowSpec {
            exclude: Some(DesktopExclusion {
                desktop_ids: vec![DesktopId("ecd-2".into())],
                ..Default::default()
            }),
            ..spec(&["ecd-1", "ecd-2"])
        };
        let listed = ["ecd-1", "ecd-2"].into_iter().collect();
        assert_eq!(
            desks
                .iter()
                .filter(|x| selects(&s, &listed, x))
                .map(|x| x.desktop_id.as_str())
                .collect::<Vec<_>>(),
            ["ecd-1"]
        );
    }

    /// A window that would open inside a blackout does not open: nothing is entered, the
    /// reason says so and names the blackout, and the next window shown is the first one
    /// outside any blackout. A window already open is not cut short by a blackout added
    /// since.
    #[test]
    fn a_blackout_keeps_a_window_shut_but_never_cuts_one_short() {
        use alicloud_ops_operator::api::maintenance::Blackout;
        let mut s = spec(&["ecd-a"]);
        s.window = None;
        s.recurring = Some(RecurringWindow {
            cron: "0 12 * * *".into(),
            duration: "2h".into(),
            time_zone: "UTC".into(),
        });
        s.blackouts = vec![Blackout {
            start: "2026-11-22T00:00:00Z".into(),
            end: "2026-11-24T00:00:00Z".into(),
        }];
        let desks = [desk("ecd-a", "NoFlag")];
        let out = run(&s, &desks, &status_with(&[]), "2026-11-22T12:30:00Z", false);
        assert!(out.actions.is_empty(), "{:?}", out.actions);
        assert_eq!(out.verdict.reason, Reason::BlackedOut, "{}", out.verdict.message);
        assert!(
            out.verdict.message.contains("2026-11-22T12:00:00Z"),
            "{}",
            out.verdict.message
        );
        assert_eq!(out.status.current_window, None);
        assert_eq!(
            out.status.next_window.as_ref().map(|w| w.start.as_str()),
            Some("2026-11-24T12:00:00Z"),
            "the 23rd is blacked out too"
        );
        assert_eq!(
            out.status.next_blackout.as_ref().map(|b| b.end.as_str()),
            Some("2026-11-24T00:00:00Z")
        );

        // The window of the 22nd opened before the blackout was added: it runs to its end.
        let opened = DesktopMaintenanceWindowStatus {
            current_window: Some(WindowTimes {
                start: "2026-11-22T12:00:00Z".into(),
                end: "2026-11-22T14:00:00Z".into(),
            }),
            ..status_with(&["ecd-a"])
        };
        let held = run(
            &s,
            &[desk("ecd-a", "UnderMaintenance")],
            &opened,
            "2026-11-22T12:30:00Z",
            false,
        );
        assert!(held.actions.is_empty(), "{:?}", held.actions);
        assert_eq!(held.verdict.reason, Reason::Active, "{}", held.verdict.message);
        assert_eq!(held.status.desktops_in_maintenance, ["ecd-a"]);
    }

    /// Notices: each lead time once per occurrence (recorded before it goes, in the
    /// intent); after an outage only the nearest lead still ahead is sent, the farther ones
    /// recorded as passed; none once the window has opened; and the window comes back when
    /// the next one is due.
    #[test]
    fn notices_go_once_per_lead_and_never_announce_a_time_past() {
        use alicloud_ops_operator::api::maintenance::Notify;
        let s = DesktopMaintenanceWindowSpec {
            notify: Some(Notify {
                before: vec!["1h".into(), "15m".into()],
                console_message_id: Some("msg-1".into()),
            }),
            ..spec(&["ecd-a"])
        };
        let desks = [desk("ecd-a", "NoFlag")];
        // 10:30: nothing due yet; back at 11:00 for the first.
        let early = run(&s, &desks, &status_with(&[]), "2026-11-22T10:30:00Z", false);
        assert!(notices(&early).is_empty());
        assert_eq!(early.requeue_after, Some(Duration::from_secs(1800)));
        // 11:00: the 1h notice, recorded in the intent before it goes.
        let first = run(&s, &desks, &status_with(&[]), "2026-11-22T11:00:00Z", false);
        let sent = notices(&first);
        assert_eq!(sent.len(), 1);
        assert!(
            sent[0]
                .0
                .starts_with("in 1h: the maintenance window opens at 2026-11-22T12:00:00Z"),
            "{}",
            sent[0].0
        );
        assert_eq!(sent[0].1.as_deref(), Some("msg-1"));
        let recorded = first.intent.clone().expect("recorded before it goes").notices;
        assert_eq!(recorded.len(), 1);
        // Again at 11:10: already recorded, nothing goes.
        let prev = DesktopMaintenanceWindowStatus {
            notices: recorded,
            ..status_with(&[])
        };
        assert!(notices(&run(&s, &desks, &prev, "2026-11-22T11:10:00Z", false)).is_empty());
        // After an outage from 10:00 to 11:50: only the 15m notice goes; the 1h is recorded as passed.
        let late = run(&s, &desks, &status_with(&[]), "2026-11-22T11:50:00Z", false);
        let sent = notices(&late);
        assert_eq!(sent.len(), 1);
        assert!(sent[0].0.starts_with("in 15m:"), "{}", sent[0].0);
        assert_eq!(late.status.notices.len(), 2);
        // A start given to the nanosecond is recognised as recorded all the same.
        let precise = DesktopMaintenanceWindowSpec {
            window: Some(FixedWindow {
                start: "2026-11-22T12:00:00.123456789Z".into(),
                end: "2026-11-22T14:00:00Z".into(),
            }),
            ..s.clone()
        };
        let once = run(&precise, &desks, &status_with(&[]), "2026-11-22T11:00:00.5Z", false);
        assert_eq!(notices(&once).len(), 1);
        let again = DesktopMaintenanceWindowStatus {
            notices: once.status.notices.clone(),
            ..status_with(&[])
        };
        assert!(notices(&run(&precise, &desks, &again, "2026-11-22T11:00:03Z", false)).is_empty());
        // Once the window is open, no notice announces its opening.
        assert!(notices(&run(&s, &desks, &status_with(&[]), "2026-11-22T12:01:00Z", false)).is_empty());
    }

    /// The notices a plan sends: their text and console message.
    fn notices(
        out: &reconcile::Outcome<reconcile::maintenance::DesktopAction, DesktopMaintenanceWindowStatus>,
    ) -> Vec<(String, Option<String>)> {
        out.actions
            .iter()
            .filter_map(|a| match a {
                reconcile::maintenance::DesktopAction::Notice {
                    text,
                    console_message_id,
                } => Some((text.clone(), console_message_id.clone())),
                _ => None,
            })
            .collect()
    }

    /// Nobody is disconnected before the warning `notify.before` promises: a deadline that
    /// comes with no notice sent about it (the window was made late, or the operator was
    /// down) is announced then, and the sessions go the longest lead after the first notice;
    /// a notice sent late moves the deadline the same way, and says so; a deadline moved past
    /// the window's end never comes.
    #[test]
    fn a_forced_disconnect_waits_for_the_warning_it_promised() {
        use alicloud_ops_operator::api::maintenance::Notify;
        let desks = [busy("ecd-a", &["alice"]), desk("ecd-b", "UnderMaintenance")];
        let prev = status_with(&["ecd-a", "ecd-b"]);
        let warned = |policy, after: Option<&str>| DesktopMaintenanceWindowSpec {
            notify: Some(Notify {
                before: vec!["30m".into(), "10m".into()],
                console_message_id: None,
            }),
            ..draining(policy, after)
        };
        let then = |out: &reconcile::Outcome<_, DesktopMaintenanceWindowStatus>| DesktopMaintenanceWindowStatus {
            notices: out.status.notices.clone(),
            ..prev.clone()
        };

        // On time: the 30m notice at 13:00, and the deadline (13:30) holds.
        let s = warned(DrainPolicy::WaitThenForce, Some("90m"));
        let on_time = run(&s, &desks, &prev, "2026-11-22T13:00:00Z", false);
        assert_eq!(notices(&on_time).len(), 1);
        assert!(notices(&on_time)[0].0.contains("13:30:00Z"), "{:?}", notices(&on_time));
        let at = run(&s, &desks, &then(&on_time), "2026-11-22T13:30:00Z", false);
        assert_eq!(disconnects(&at), ["ecd-a/alice"]);

        // Up at 13:20 with nothing sent: the 10m notice goes now and announces 13:50:05, the
        // longest lead after it reaches the users; at 13:30 nobody goes, at 13:50:05 they do.
        let late = run(&s, &desks, &prev, "2026-11-22T13:20:00Z", false);
        let sent = notices(&late);
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(
            sent[0].0.contains("13:50:05Z"),
            "announces the time it keeps: {}",
            sent[0].0
        );
        assert_eq!(late.status.force_at.as_deref(), Some("2026-11-22T13:50:05Z"));
        let deadline = run(&s, &desks, &then(&late), "2026-11-22T13:30:00Z", false);
        assert!(disconnects(&deadline).is_empty(), "30 minutes of warning were promised");
        assert_eq!(deadline.status.force_at.as_deref(), Some("2026-11-22T13:50:05Z"));
        assert!(notices(&deadline).is_empty(), "announced once");
        let early = run(&s, &desks, &then(&late), "2026-11-22T13:50:04Z", false);
        assert!(disconnects(&early).is_empty());
        let kept = run(&s, &desks, &then(&late), "2026-11-22T13:50:05Z", false);
        assert_eq!(disconnects(&kept), ["ecd-a/alice"]);

        // Immediate, with the operator up five minutes after the opening and nothing sent:
        // the users are told now and disconnected 30 minutes later.
        let now = warned(DrainPolicy::Immediate, None);
        let opened = run(&now, &desks, &prev, "2026-11-22T12:05:00Z", false);
        assert!(disconnects(&opened).is_empty(), "nobody is disconnected unwarned");
        let sent = notices(&opened);
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(sent[0].0.contains("12:35:05Z"), "{}", sent[0].0);
        let again = run(&now, &desks, &then(&opened), "2026-11-22T12:20:00Z", false);
        assert!(disconnects(&again).is_empty() && notices(&again).is_empty());
        assert_eq!(
            disconnects(&run(&now, &desks, &then(&opened), "2026-11-22T12:35:05Z", false)),
            ["ecd-a/alice"]
        );
        // Warned on time before the opening: disconnected as it opens.
        let before = run(&now, &desks, &prev, "2026-11-22T11:30:00Z", false);
        assert_eq!(notices(&before).len(), 1);
        assert_eq!(
            disconnects(&run(&now, &desks, &then(&before), "2026-11-22T12:00:00Z", false)),
            ["ecd-a/alice"]
        );

        // Too late for the warning to run before the window ends: nobody is forced, and no
        // notice promises what will not happen.
        let too_late = run(&s, &desks, &prev, "2026-11-22T13:45:00Z", false);
        assert!(disconnects(&too_late).is_empty());
        assert!(notices(&too_late).is_empty(), "{:?}", notices(&too_late));
        assert_eq!(too_late.status.force_at, None);
    }

    /// SkipBusy never enters a computer that someone works on in the read it decides on
    /// (idle sessions count as free with idleAfter); the busy ones are looked at again every
    /// retryEvery; once too little of the window is left they are skipped, and the window
    /// ends PartiallyMaintained, naming them. Nobody is ever disconnected.
    #[test]
    fn skip_busy_enters_only_free_computers_and_reports_the_skipped() {
        let s = DesktopMaintenanceWindowSpec {
            drain: Some(Drain {
                policy: DrainPolicy::SkipBusy,
                idle_after: Some("30m".into()),
                retry_every: Some("2m".into()),
                min_maintenance: Some("1h".into()),
                ..Default::default()
            }),
            ..spec(&["ecd-a", "ecd-b", "ecd-c"])
        };
        let connected = |id: &str, user: &str| Desktop {
            management_flags: vec!["NoFlag".into()],
            ..busy(id, &[user])
        };
        let desks = [
            connected("ecd-a", "alice"),
            connected("ecd-b", "bob"),
            desk("ecd-c", "NoFlag"),
        ];
        // Bob has been idle for 40 minutes; Alice works.
        let idle: std::collections::BTreeMap<String, i64> =
            [("ecd-a".to_string(), 60), ("ecd-b".to_string(), 2400)].into();
        let at = |now: &str, prev: &DesktopMaintenanceWindowStatus| with_idle(&s, &desks, prev, &idle, now);
        let open = at("2026-11-22T12:00:00Z", &status_with(&[]));
        let entered: Vec<String> = open
            .actions
            .iter()
            .filter_map(|a| a.maintenance())
            .flat_map(|m| m.desktop_ids.clone())
            .collect();
        assert_eq!(entered, ["ecd-b", "ecd-c"], "alice's computer is not entered");
        assert!(disconnects(&open).is_empty());
        // Confirmed: waiting for alice, looked at again in 2 minutes.
        let prev = status_with(&["ecd-b", "ecd-c"]);
        let entered_desks = [
            connected("ecd-a", "alice"),
            desk("ecd-b", "UnderMaintenance"),
            desk("ecd-c", "UnderMaintenance"),
        ];
        let waiting = with_idle(&s, &entered_desks, &prev, &idle, "2026-11-22T12:10:00Z");
        assert!(waiting.actions.is_empty(), "{:?}", waiting.actions);
        assert_eq!(
            waiting.verdict.reason,
            Reason::WaitingForBusy,
            "{}",
            waiting.verdict.message
        );
        assert_eq!(waiting.status.desktops_waiting_busy_count, 1);
        assert_eq!(waiting.requeue_after, Some(Duration::from_secs(120)));
        // 13:30: less than minMaintenance (1h) of the window is left: alice's computer is skipped.
        let late = with_idle(&s, &entered_desks, &waiting.status, &idle, "2026-11-22T13:30:00Z");
        assert!(late.actions.is_empty());
        assert_eq!(late.status.skipped_desktops, ["ecd-a"]);
        // After the window: PartiallyMaintained, naming the skipped computer.
        let after = with_idle(&s, &entered_desks, &late.status, &idle, "2026-11-22T14:00:01Z");
        assert_eq!(after.actions.len(), 1, "the two entered are exited first");
        let exited = [
            connected("ecd-a", "alice"),
            desk("ecd-b", "NoFlag"),
            desk("ecd-c", "NoFlag"),
        ];
        let done = with_idle(&s, &exited, &after.status, &idle, "2026-11-22T14:00:11Z");
        assert_eq!(
            done.verdict.reason,
            Reason::PartiallyMaintained,
            "{}",
            done.verdict.message
        );
        assert!(done.verdict.message.contains("ecd-a"), "{}", done.verdict.message);
        assert!(disconnects(&after).is_empty() && disconnects(&done).is_empty());
        // Without idleAfter, an idle session still makes its computer busy.
        let strict = DesktopMaintenanceWindowSpec {
            drain: Some(Drain {
                policy: DrainPolicy::SkipBusy,
                ..Default::default()
            }),
            ..s.clone()
        };
        let out = run(&strict, &desks, &status_with(&[]), "2026-11-22T12:00:00Z", false);
        let entered: Vec<String> = out
            .actions
            .iter()
            .filter_map(|a| a.maintenance())
            .flat_map(|m| m.desktop_ids.clone())
            .collect();
        assert_eq!(entered, ["ecd-c"]);
    }

    /// A window that ends while a computer it entered still drains exits it all the same,
    /// and records it as never maintained: the window is PartiallyMaintained until the next.
    #[test]
    fn a_computer_still_draining_at_the_end_is_exited_and_reported_never_maintained() {
        let s = spec(&["ecd-a", "ecd-b"]);
        let open_status = DesktopMaintenanceWindowStatus {
            current_window: Some(WindowTimes {
                start: "2026-11-22T12:00:00Z".into(),
                end: "2026-11-22T14:00:00Z".into(),
            }),
            ..status_with(&["ecd-a", "ecd-b"])
        };
        let desks = [busy("ecd-a", &["alice"]), desk("ecd-b", "UnderMaintenance")];
        let end = run(&s, &desks, &open_status, "2026-11-22T14:00:01Z", false);
        let exited: Vec<String> = end
            .actions
            .iter()
            .filter_map(|a| a.maintenance())
            .flat_map(|m| m.desktop_ids.clone())
            .collect();
        assert_eq!(
            exited,
            ["ecd-a", "ecd-b"],
            "every computer entered is exited, draining or not"
        );
        assert_eq!(end.status.skipped_desktops, ["ecd-a"]);
        assert_eq!(end.status.skipped_in.as_deref(), Some("2026-11-22T12:00:00Z"));
        let out = [desk("ecd-a", "NoFlag"), desk("ecd-b", "NoFlag")];
        let after = run(&s, &out, &end.status, "2026-11-22T14:00:11Z", false);
        assert_eq!(
            after.verdict.reason,
            Reason::PartiallyMaintained,
            "{}",
            after.verdict.message
        );
    }

    /// What `plan` shows of a window about to open: how many targets still have people on
    /// them, and until when they may stay.
    #[test]
    fn the_plan_of_an_opening_window_says_who_is_still_at_work_and_until_when() {
        let fresh = |id: &str, user: &str| Desktop {
            management_flags: vec!["NoFlag".into()],
            ..busy(id, &[user])
        };
        let desks = [fresh("ecd-a", "alice"), desk("ecd-b", "NoFlag")];
        let out = run(
            &draining(DrainPolicy::WaitThenForce, Some("30m")),
            &desks,
            &status_with(&[]),
            "2026-11-22T12:00:00Z",
            false,
        );
        assert_eq!(out.verdict.reason, Reason::Applying);
        assert!(
            out.verdict.message.contains(
                "entering maintenance: 2 (1 with users connected: they drain until they leave, or until 2026-11-22T12:30:00Z)"
            ),
            "{}",
            out.verdict.message
        );
    }

    fn invalid_recurring(mut s: DesktopMaintenanceWindowSpec) -> DesktopMaintenanceWindowSpec {
        s.window = None;
        s.recurring = Some(RecurringWindow {
            cron: "0 12 * * *".into(),
            duration: "2h".into(),
            time_zone: "Asia/Shangai".into(),
        });
        s
    }

    #[test]
    fn deletion_exits_the_record_even_when_the_spec_is_invalid() {
        let s = invalid_recurring(spec(&["ecd-a", "ecd-b"]));
        let desks = [desk("ecd-a", "UnderMaintenance"), desk("ecd-b", "UnderMaintenance")];
        let out = run(&s, &desks, &status_with(&["ecd-a"]), "2026-11-22T12:30:00Z", true);
        assert_eq!(out.actions.len(), 1);
        assert_eq!(
            (
                out.actions[0].maintenance().unwrap().mode,
                out.actions[0].maintenance().unwrap().desktop_ids.clone()
            ),
            (MaintenanceMode::Exit, vec!["ecd-a".to_string()]),
            "only what this window entered"
        );
        assert!(out.status.desktops_in_maintenance.is_empty());
    }

    #[test]
    fn an_invalid_edit_holds_the_open_window_to_its_recorded_end_then_exits() {
        let s = invalid_recurring(spec(&["ecd-a", "ecd-b"]));
        let mut prev = status_with(&["ecd-a"]);
        prev.current_window = Some(WindowTimes {
            start: "2026-11-22T12:00:00Z".into(),
            end: "2026-11-22T14:00:00Z".into(),
        });
        let desks = [desk("ecd-a", "UnderMaintenance"), desk("ecd-b", "NoFlag")];
        let during = run(&s, &desks, &prev, "2026-11-22T13:00:00Z", false);
        assert!(during.actions.is_empty(), "nothing new enters under an invalid spec");
        assert_eq!(during.verdict.reason, Reason::InvalidSpec);
        assert!(
            during.verdict.message.contains("spec.recurring"),
            "{}",
            during.verdict.message
        );
        assert_eq!(during.status.desktops_in_maintenance, vec!["ecd-a"]);
        assert_eq!(
            during.requeue_after,
            Some(Duration::from_secs(3600)),
            "back at the recorded end"
        );
        let after = run(&s, &desks, &during.status, "2026-11-22T14:00:01Z", false);
        assert_eq!(after.actions.len(), 1);
        assert_eq!(after.actions[0].maintenance().unwrap().mode, MaintenanceMode::Exit);
        assert_eq!(after.actions[0].maintenance().unwrap().desktop_ids, vec!["ecd-a"]);
        assert_eq!(after.verdict.reason, Reason::InvalidSpec);
    }

    #[test]
    fn a_desktop_held_by_another_window_exits_with_the_last_one() {
        let s = spec(&["ecd-a"]);
        let held: std::collections::BTreeSet<String> = ["ecd-a".to_string()].into();
        let desks = [desk("ecd-a", "UnderMaintenance")];
        let with_held = |prev: &DesktopMaintenanceWindowStatus, now: &str| {
            plan(
                &MaintenanceInput {
                    spec: &s,
                    desktops: &desks,
                    recorded_elsewhere: &[],
                    previous: prev,
                    deleting: false,
                    held_by_others: &held,
                    recorded_by_others: &Default::default(),
                    wanted_by_others: &Default::default(),
                    tagged: &Default::default(),
                    idle_seconds: &Default::default(),
                    excluded: 0,
                },
                &ctx(now),
            )
        };
        // In the window, another window's desktop is held too, not reported foreign.
        let during = with_held(&Default::default(), "2026-11-22T12:30:00Z");
        assert!(during.actions.is_empty());
        assert_eq!(during.status.desktops_in_maintenance, vec!["ecd-a"]);
        assert!(during.status.foreign_maintenance.is_empty());
        // This window ends first: the other still holds it, so it is not exited.
        let after = with_held(&during.status, "2026-11-22T14:30:00Z");
        assert!(after.actions.is_empty(), "{:?}", after.actions);
        assert!(after.status.desktops_in_maintenance.is_empty());
        // With nobody else holding it, the last window exits it.
        let last = run(&s, &desks, &during.status, "2026-11-22T14:30:00Z", false);
        assert_eq!(last.actions[0].maintenance().unwrap().mode, MaintenanceMode::Exit);
    }

    #[test]
    fn the_intent_records_which_credentials_entered() {
        let mut s = spec(&["ecd-a"]);
        s.common.credentials_ref = Some(CredentialsRef { name: "team-a".into() });
        let out = run(
            &s,
            &[desk("ecd-a", "NoFlag")],
            &Default::default(),
            "2026-11-22T12:30:00Z",
            false,
        );
        let with = out.intent.unwrap().entered_with.unwrap();
        assert_eq!(with.credentials_ref.unwrap().name, "team-a");
        // Once nothing is recorded, neither is the credential.
        let done = run(
            &s,
            &[desk("ecd-a", "NoFlag")],
            &out.status,
            "2026-11-22T15:00:00Z",
            false,
        );
        assert!(done.status.entered_with.is_none());
    }

    #[test]
    fn before_the_window_it_waits_until_the_start() {
        let s = spec(&["ecd-a"]);
        let out = run(
            &s,
            &[desk("ecd-a", "NoFlag")],
            &Default::default(),
            "2026-11-22T11:00:00Z",
            false,
        );
        assert!(out.actions.is_empty());
        assert_eq!(out.status.phase, Some(Phase::Scheduled));
        assert_eq!(out.requeue_after, Some(Duration::from_secs(3600)));
        assert_eq!(out.status.next_window.unwrap().start, "2026-11-22T12:00:00Z");
    }

    #[test]
    fn in_the_window_it_enters_and_records_first_leaving_foreign_ones_alone() {
        let s = spec(&["ecd-a", "ecd-b", "ecd-c"]);
        let desks = [
            desk("ecd-a", "NoFlag"),
            desk("ecd-b", "UnderMaintenance"),
            desk("ecd-c", "NoFlag"),
        ];
        let out = run(&s, &desks, &Default::default(), "2026-11-22T12:30:00Z", false);
        assert_eq!(out.actions.len(), 1);
        assert_eq!(out.actions[0].maintenance().unwrap().mode, MaintenanceMode::Enter);
        assert_eq!(
            out.actions[0].maintenance().unwrap().desktop_ids,
            vec!["ecd-a", "ecd-c"]
        );
        let intent = out.intent.expect("ids are recorded before the call");
        assert_eq!(intent.desktops_in_maintenance, vec!["ecd-a", "ecd-c"]);
        assert_eq!(out.status.foreign_maintenance, vec!["ecd-b"]);
        assert_eq!(out.status.phase, Some(Phase::Active));
        assert_eq!(out.requeue_after, Some(VERIFY_AFTER));
    }

    #[test]
    fn after_the_window_it_exits_only_what_it_entered() {
        let s = spec(&["ecd-a", "ecd-b"]);
        let desks = [desk("ecd-a", "UnderMaintenance"), desk("ecd-b", "EnterMaintenance")];
        // The operator was down across the window end: it exits on the next reconcile.
        let out = run(&s, &desks, &status_with(&["ecd-a"]), "2026-11-23T09:00:00Z", false);
        assert_eq!(out.actions.len(), 1);
        assert_eq!(out.actions[0].maintenance().unwrap().mode, MaintenanceMode::Exit);
        assert_eq!(out.actions[0].maintenance().unwrap().desktop_ids, vec!["ecd-a"]);
        assert!(out.status.desktops_in_maintenance.is_empty());
        assert_eq!(out.status.phase, Some(Phase::Completed));
    }

    #[test]
    fn deleting_in_the_window_exits_first() {
        let s = spec(&["ecd-a"]);
        let out = run(
            &s,
            &[desk("ecd-a", "UnderMaintenance")],
            &status_with(&["ecd-a"]),
            "2026-11-22T12:30:00Z",
            true,
        );
        assert_eq!(out.actions.len(), 1);
        assert_eq!(out.actions[0].maintenance().unwrap().mode, MaintenanceMode::Exit);
    }

    #[test]
    fn a_restart_between_recording_and_entering_is_safe() {
        let s = spec(&["ecd-a"]);
        // Recorded, but the ENTER never happened.
        let in_window = run(
            &s,
            &[desk("ecd-a", "NoFlag")],
            &status_with(&["ecd-a"]),
            "2026-11-22T13:00:00Z",
            false,
        );
        assert_eq!(in_window.actions[0].maintenance().unwrap().mode, MaintenanceMode::Enter);
        let after = run(
            &s,
            &[desk("ecd-a", "NoFlag")],
            &status_with(&["ecd-a"]),
            "2026-11-22T15:00:00Z",
            false,
        );
        assert!(after.actions.is_empty(), "nothing in maintenance, nothing to exit");
        assert!(after.status.desktops_in_maintenance.is_empty());
    }

    #[test]
    fn many_desktops_are_one_action_the_executor_batches() {
        let ids: Vec<String> = (0..250).map(|i| format!("ecd-{i:04}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let s = spec(&refs);
        let desks: Vec<Desktop> = ids.iter().map(|i| desk(i, "NoFlag")).collect();
        let out = run(&s, &desks, &Default::default(), "2026-11-22T12:00:00Z", false);
        assert_eq!(out.actions[0].maintenance().unwrap().desktop_ids.len(), 250);
        assert_eq!(out.intent.unwrap().desktops_in_maintenance_count, 250);
    }

    #[test]
    fn unknown_ids_are_reported_and_known_ones_still_managed() {
        let s = spec(&["ecd-a", "ecd-ghost"]);
        let out = run(
            &s,
            &[desk("ecd-a", "NoFlag")],
            &Default::default(),
            "2026-11-22T12:30:00Z",
            false,
        );
        assert_eq!(out.verdict.reason, Reason::NotFound);
        assert_eq!(out.status.unknown_desktop_ids, vec!["ecd-ghost"]);
        assert_eq!(out.actions[0].maintenance().unwrap().desktop_ids, vec!["ecd-a"]);
    }

    #[test]
    fn a_desktop_dropped_from_the_spec_is_taken_out() {
        let mut s = spec(&["ecd-a"]);
        s.selector = None;
        let prev = status_with(&["ecd-a", "ecd-old"]);
        let elsewhere = [desk("ecd-old", "UnderMaintenance")];
        let out = plan(
            &MaintenanceInput {
                spec: &s,
                desktops: &[desk("ecd-a", "UnderMaintenance")],
                recorded_elsewhere: &elsewhere,
                previous: &prev,
                deleting: false,
                held_by_others: &Default::default(),
                recorded_by_others: &Default::default(),
                wanted_by_others: &Default::default(),
                tagged: &Default::default(),
                idle_seconds: &Default::default(),
                excluded: 0,
            },
            &ctx("2026-11-22T12:30:00Z"),
        );
        assert_eq!(out.actions.len(), 1);
        assert_eq!(out.actions[0].maintenance().unwrap().mode, MaintenanceMode::Exit);
        assert_eq!(out.actions[0].maintenance().unwrap().desktop_ids, vec!["ecd-old"]);
        assert_eq!(out.status.desktops_in_maintenance, vec!["ecd-a"]);
    }

    #[test]
    fn recurring_windows_requeue_at_the_boundary_and_bad_zones_are_invalid_spec() {
        let mut s = spec(&["ecd-a"]);
        s.window = None;
        s.selector = Some(DesktopSelector {
            office_site_id: Some("site".into()),
            ..Default::default()
        });
        s.desktop_ids = None;
        s.recurring = Some(RecurringWindow {
            cron: "0 22 * * *".into(),
            duration: "2h".into(),
            time_zone: "Asia/Shanghai".into(),
        });
        let out = run(
            &s,
            &[desk("ecd-a", "NoFlag")],
            &Default::default(),
            "2026-11-22T13:00:00Z",
            false,
        );
        assert_eq!(out.status.phase, Some(Phase::Scheduled));
        assert_eq!(out.requeue_after, Some(Duration::from_secs(3600)));
        let out = run(
            &s,
            &[desk("ecd-a", "NoFlag")],
            &Default::default(),
            "2026-11-22T15:30:00Z",
            false,
        );
        assert_eq!(out.status.phase, Some(Phase::Active));
        assert_eq!(out.status.current_window.as_ref().unwrap().end, "2026-11-22T16:00:00Z");
        s.recurring.as_mut().unwrap().time_zone = "Asia/Atlantis".into();
        let out = run(
            &s,
            &[desk("ecd-a", "NoFlag")],
            &Default::default(),
            "2026-11-22T15:30:00Z",
            false,
        );
        assert_eq!(out.verdict.reason, Reason::InvalidSpec);
        assert!(out.verdict.message.contains("spec.recurring.timeZone"));
        assert!(out.actions.is_empty());
    }

    #[test]
    fn observe_only_reports_without_writing() {
        let s = spec(&["ecd-a"]);
        let out = plan(
            &MaintenanceInput {
                spec: &s,
                desktops: &[desk("ecd-a", "NoFlag")],
                recorded_elsewhere: &[],
                previous: &Default::default(),
                deleting: false,
                held_by_others: &Default::default(),
                recorded_by_others: &Default::default(),
                wanted_by_others: &Default::default(),
                tagged: &Default::default(),
                idle_seconds: &Default::default(),
                excluded: 0,
            },
            &observe_only("2026-11-22T12:30:00Z"),
        );
        assert!(out.actions.is_empty() && out.intent.is_none());
        assert_eq!(out.verdict.reason, Reason::DriftDetected);
    }
}

// ---------------------------------------------------------------- ImageShare

mod image_share {
    use super::*;
    use reconcile::image_share::{ImageShareInput, cleanup, client_token, plan};

    fn spec(shared: bool, policy: DeletionPolicy) -> ImageShareSpec {
        ImageShareSpec {
            region_id: "cn-hangzhou".into(),
            image_id: "m-1".into(),
            shared,
            deletion_policy: policy,
            common: CommonSpec::default(),
        }
    }

    type Plan = fn(
        &ImageShareInput<'_>,
        &PlanContext,
    ) -> reconcile::Outcome<reconcile::image_share::ModifyShare, ImageShareStatus>;

    /// Plans (or cleans up) `image` with `previous`, from a list that started at `listed_at`.
    fn with_status(
        f: Plan,
        spec: &ImageShareSpec,
        image: Option<&CustomImage>,
        previous: &ImageShareStatus,
        listed_at: DateTime<Utc>,
        ctx: &PlanContext,
    ) -> reconcile::Outcome<reconcile::image_share::ModifyShare, ImageShareStatus> {
        f(
            &ImageShareInput {
                spec,
                uid: "u",
                resource_version: "7",
                image,
                listed_at,
                previous,
            },
            ctx,
        )
    }

    /// Plans with no previous status.
    fn fresh(
        f: Plan,
        spec: &ImageShareSpec,
        image: Option<&CustomImage>,
        ctx: &PlanContext,
    ) -> reconcile::Outcome<reconcile::image_share::ModifyShare, ImageShareStatus> {
        with_status(f, spec, image, &ImageShareStatus::default(), ctx.now, ctx)
    }

    fn image(in_share: bool) -> CustomImage {
        CustomImage {
            image_id: "m-1".into(),
            name: "app".into(),
            in_share,
            status: "1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn shares_with_a_token_recorded_before_the_call() {
        let s = spec(true, DeletionPolicy::Retain);
        let img = image(false);
        let prev = ImageShareStatus {
            share_operations: 2,
            ..Default::default()
        };
        let out = plan(
            &ImageShareInput {
                spec: &s,
                uid: "uid-1",
                resource_version: "7",
                image: Some(&img),
                listed_at: ctx("2026-11-22T10:00:00Z").now,
                previous: &prev,
            },
            &ctx("2026-11-22T10:00:00Z"),
        );
        assert_eq!(out.actions.len(), 1);
        assert_eq!(out.actions[0].operation, ShareOperation::Share);
        assert_eq!(
            out.actions[0].client_token,
            client_token("uid-1", 1, "7", ShareOperation::Share, 3)
        );
        assert_eq!(out.intent.unwrap().share_operations, 3);
        assert_eq!(out.status.in_share, Some(true));
        assert_eq!(out.status.image_name.as_deref(), Some("app"));
    }

    #[test]
    fn tokens_are_stable_short_ascii_and_differ_by_every_input() {
        let a = client_token("uid", 1, "7", ShareOperation::Share, 1);
        assert_eq!(a, client_token("uid", 1, "7", ShareOperation::Share, 1));
        assert!(a.len() <= 64 && a.is_ascii());
        for other in [
            client_token("uid2", 1, "7", ShareOperation::Share, 1),
            client_token("uid", 2, "7", ShareOperation::Share, 1),
            client_token("uid", 1, "8", ShareOperation::Share, 1),
            client_token("uid", 1, "7", ShareOperation::UnShare, 1),
            client_token("uid", 1, "7", ShareOperation::Share, 2),
        ] {
            assert_ne!(a, other);
        }
    }

    #[test]
    fn in_sync_missing_and_observe_only() {
        let s = spec(true, DeletionPolicy::Retain);
        let img = image(true);
        let out = fresh(plan, &s, Some(&img), &ctx("2026-11-22T10:00:00Z"));
        assert_eq!((out.actions.len(), out.verdict.reason), (0, Reason::InSync));
        let out = fresh(plan, &s, None, &ctx("2026-11-22T10:00:00Z"));
        assert_eq!(out.verdict.reason, Reason::NotFound);
        assert!(out.verdict.message.contains("checked again"));
        let img = image(false);
        let out = fresh(plan, &s, Some(&img), &observe_only("2026-11-22T10:00:00Z"));
        assert_eq!((out.actions.len(), out.verdict.reason), (0, Reason::DriftDetected));
    }

    #[test]
    fn cleanup_unshares_only_with_the_unshare_policy() {
        let img = image(true);
        for (policy, actions) in [(DeletionPolicy::Retain, 0), (DeletionPolicy::UnShare, 1)] {
            let s = spec(true, policy);
            let out = fresh(cleanup, &s, Some(&img), &ctx("2026-11-22T10:00:00Z"));
            assert_eq!(out.actions.len(), actions, "{policy:?}");
        }
        let s = spec(true, DeletionPolicy::UnShare);
        let out = fresh(cleanup, &s, None, &ctx("2026-11-22T10:00:00Z"));
        assert!(out.actions.is_empty(), "a missing image counts as done");
    }
    fn written(op: &str, at: &str, answered: Option<&str>) -> ImageShareStatus {
        ImageShareStatus {
            in_share: Some(op == "UnShare"),
            share_operations: 1,
            last_write: Some(ShareWrite {
                operation: op.into(),
                at: at.into(),
                generation: 1,
                client_token: "ishare-recorded".into(),
                answered_at: answered.map(Into::into),
            }),
            ..Default::default()
        }
    }

    fn after(
        f: Plan,
        spec: &ImageShareSpec,
        image: &CustomImage,
        previous: &ImageShareStatus,
        listed_at: &str,
        ctx: &PlanContext,
    ) -> reconcile::Outcome<reconcile::image_share::ModifyShare, ImageShareStatus> {
        with_status(f, spec, Some(image), previous, t(listed_at), ctx)
    }

    /// A recorded intent is not a sent write: one the cloud never answered is sent again
    /// with the same ClientToken (never waited for), and the count does not move.
    #[test]
    fn an_unanswered_write_is_sent_again_with_its_own_token() {
        let s = spec(true, DeletionPolicy::Retain);
        let prev = written("Share", "2026-11-22T10:00:00Z", None);
        let out = after(
            plan,
            &s,
            &image(false),
            &prev,
            "2026-11-22T10:00:20Z",
            &ctx("2026-11-22T10:00:30Z"),
        );
        assert_eq!(out.actions.len(), 1, "{:?}", out.verdict);
        assert_eq!(out.actions[0].client_token, "ishare-recorded");
        assert_eq!(out.status.share_operations, 1);
        let answered = out.status.last_write.expect("the answer is recorded");
        assert_eq!(answered.answered_at.as_deref(), Some("2026-11-22T10:00:30.000Z"));
        // The intent still says "unanswered": a crash before the answer sends it again.
        let intent = out.intent.expect("an intent");
        assert_eq!(intent.last_write.unwrap().answered_at, None);
        // Once a later list shows it, the record is done with.
        let out = after(
            plan,
            &s,
            &image(true),
            &prev,
            "2026-11-22T10:00:20Z",
            &ctx("2026-11-22T10:00:30Z"),
        );
        assert!(out.actions.is_empty());
        assert_eq!(out.status.last_write, None);
    }

    /// A write the cloud answered stands for the list until it shows, whatever the
    /// generation (deletion and unrelated edits bump it), and Ready does not flip.
    #[test]
    fn an_answered_write_stands_for_the_list_across_generations_without_flipping_ready() {
        let s = spec(true, DeletionPolicy::UnShare);
        let prev = written("Share", "2026-11-22T10:00:00Z", Some("2026-11-22T10:00:01Z"));
        let gen2 = PlanContext {
            generation: 2,
            ..ctx("2026-11-22T10:00:30Z")
        };
        for listed_at in ["2026-11-22T09:59:00Z", "2026-11-22T10:00:20Z"] {
            let out = after(plan, &s, &image(false), &prev, listed_at, &gen2);
            assert!(
                out.actions.is_empty(),
                "listed at {listed_at}: a second Share was planned"
            );
            assert_eq!(out.verdict.reason, Reason::InSync, "listed at {listed_at}");
            assert_eq!(out.status.in_share, Some(true));
        }
        // Deletion waits for it to show before it unshares, and counts it as shared.
        let out = after(cleanup, &s, &image(false), &prev, "2026-11-22T10:00:20Z", &gen2);
        assert!(out.actions.is_empty());
        assert_eq!(out.verdict.reason, Reason::Applying);
        assert_eq!(out.status.in_share, Some(true));
        // It never showed within the grace: the list is what it is, and a new token goes.
        let late = PlanContext {
            generation: 2,
            ..ctx("2026-11-22T10:06:00Z")
        };
        let out = after(plan, &s, &image(false), &prev, "2026-11-22T10:05:59Z", &late);
        assert_eq!(out.actions.len(), 1);
        assert_ne!(out.actions[0].client_token, "ishare-recorded");
    }

    /// Deletion computes what remains from what the cloud shows, not from an old status:
    /// the intent of its UnShare says the image is shared, so a failed call keeps the
    /// finalizer.
    #[test]
    fn deletion_records_what_the_cloud_shows_before_it_unshares() {
        let s = spec(true, DeletionPolicy::UnShare);
        let prev = ImageShareStatus {
            in_share: Some(false),
            ..Default::default()
        };
        let out = after(
            cleanup,
            &s,
            &image(true),
            &prev,
            "2026-11-22T10:00:00Z",
            &ctx("2026-11-22T10:00:00Z"),
        );
        assert_eq!(out.actions.len(), 1);
        assert_eq!(out.intent.unwrap().in_share, Some(true));
        // A Share whose outcome is unknown may have landed: deletion unshares anyway.
        let prev = written("Share", "2026-11-22T10:00:00Z", None);
        let out = after(
            cleanup,
            &s,
            &image(false),
            &prev,
            "2026-11-22T09:59:00Z",
            &ctx("2026-11-22T10:00:30Z"),
        );
        assert_eq!(out.actions.len(), 1);
        assert_eq!(out.actions[0].operation, ShareOperation::UnShare);
    }
}

// ---------------------------------------------------------------- OtaSchedule

mod ota {
    use super::*;
    use reconcile::ota::{OtaInput, plan};

    fn spec(start: Option<&str>, window: Option<&str>) -> OtaScheduleSpec {
        OtaScheduleSpec {
            biz_region_id: "cn-hangzhou".into(),
            app_instance_group_id: "aig-1".into(),
            ota_type: OtaType::Fota,
            start_time: start.map(str::to_string),
            window: window.map(|c| OtaWindow {
                cron: c.into(),
                time_zone: "Asia/Shanghai".into(),
            }),
            common: CommonSpec::default(),
        }
    }

    fn group(new: &str, task: &str) -> AppInstanceGroup {
        AppInstanceGroup {
            app_instance_group_id: "aig-1".into(),
            ota_info: OtaInfo {
                ota_version: "1.0".into(),
                new_ota_version: new.into(),
                task_id: task.into(),
            },
            ..Default::default()
        }
    }

    /// Plans with no previous status.
    fn first(
        spec: &OtaScheduleSpec,
        group: Option<&AppInstanceGroup>,
        ctx: &PlanContext,
    ) -> reconcile::Outcome<reconcile::ota::Approve, OtaScheduleStatus> {
        plan(
            &OtaInput {
                spec,
                group,
                previous: &OtaScheduleStatus::default(),
                tasks: Some(&[]),
                older_peers: &[],
            },
            ctx,
        )
    }

    #[test]
    fn no_new_version_is_up_to_date() {
        let s = spec(Some("2026-11-23T02:00:00Z"), None);
        let g = group("", "");
        let out = first(&s, Some(&g), &ctx("2026-11-22T10:00:00Z"));
        assert_eq!(
            (out.actions.len(), out.verdict.reason, out.verdict.ready),
            (0, Reason::UpToDate, true)
        );
        assert_eq!(out.status.current_version.as_deref(), Some("1.0"));
    }

    #[test]
    fn a_new_version_is_approved_once_with_the_current_task_id() {
        let s = spec(Some("2026-11-23T02:00:00+08:00"), None);
        let g = group("2.0", "ota-1");
        let out = first(&s, Some(&g), &ctx("2026-11-22T10:00:00Z"));
        assert_eq!(out.actions.len(), 1);
        assert_eq!(out.actions[0].task_id, "ota-1");
        assert_eq!(out.actions[0].start_time, "2026-11-22T18:00:00Z");
        assert_eq!(
            out.intent.as_ref().unwrap().in_flight.as_ref().unwrap().task_id,
            "ota-1"
        );
        // The approval went through: the TaskId rotated. Nothing more is sent.
        let rotated = group("2.0", "ota-2");
        let out2 = plan(
            &OtaInput {
                spec: &s,
                group: Some(&rotated),
                previous: &out.status,
                tasks: None,
                older_peers: &[],
            },
            &ctx("2026-11-22T10:01:00Z"),
        );
        assert!(out2.actions.is_empty());
        assert_eq!(out2.verdict.reason, Reason::Approved);
    }

    #[test]
    fn after_a_restart_the_task_id_tells_whether_the_approval_happened() {
        let s = spec(Some("2026-11-23T02:00:00Z"), None);
        let in_flight = OtaScheduleStatus {
            in_flight: Some(Approval {
                version: "2.0".into(),
                task_id: "ota-1".into(),
                start_time: "2026-11-23T02:00:00Z".into(),
                source: None,
            }),
            ..Default::default()
        };
        // Same TaskId: it never reached the cloud; approve again.
        let g = group("2.0", "ota-1");
        let out = with_tasks(&s, &g, &in_flight, Some(&[]), &[], "2026-11-22T10:00:00Z");
        assert_eq!(out.actions.len(), 1);
        // New TaskId, and the task list shows our TaskId, version and start: it went
        // through; record it, send nothing.
        let g = group("2.0", "ota-9");
        let ours = [task("ota-1", "2.0", "2026-11-23T02:00:00Z", "STANDBY")];
        let out = with_tasks(&s, &g, &in_flight, Some(&ours), &[], "2026-11-22T10:00:00Z");
        assert!(out.actions.is_empty());
        let approved = out.status.approved.as_ref().unwrap();
        assert_eq!(
            (approved.version.as_str(), approved.source),
            ("2.0", Some(ApprovalSource::Operator))
        );
        assert!(out.status.in_flight.is_none());
    }

    fn task(id: &str, version: &str, start: &str, state: &str) -> OtaTask {
        OtaTask {
            task_id: id.into(),
            ota_version: version.into(),
            task_start_time: start.into(),
            task_display_status: state.into(),
        }
    }

    /// Plans with a task list (`None`: not read) and older peers.
    fn with_tasks(
        spec: &OtaScheduleSpec,
        group: &AppInstanceGroup,
        previous: &OtaScheduleStatus,
        tasks: Option<&[OtaTask]>,
        older_peers: &[String],
        now: &str,
    ) -> reconcile::Outcome<reconcile::ota::Approve, OtaScheduleStatus> {
        plan(
            &OtaInput {
                spec,
                group: Some(group),
                previous,
                tasks,
                older_peers,
            },
            &ctx(now),
        )
    }

    fn in_flight_v2() -> OtaScheduleStatus {
        OtaScheduleStatus {
            in_flight: Some(Approval {
                version: "2.0".into(),
                task_id: "ota-1".into(),
                start_time: "2026-11-23T02:00:00Z".into(),
                source: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_task_id_changed_by_someone_else_is_not_taken_as_ours() {
        let s = spec(Some("2026-11-23T02:00:00Z"), None);
        let g = group("2.0", "ota-9");
        // The console approved ota-1 for another start time while our call failed.
        let theirs = [task("ota-1", "2.0", "2026-11-24T05:00:00Z", "STANDBY")];
        let out = with_tasks(&s, &g, &in_flight_v2(), Some(&theirs), &[], "2026-11-22T10:00:00Z");
        assert!(out.actions.is_empty(), "never approved twice");
        let a = out.status.approved.unwrap();
        assert_eq!(
            (a.start_time.as_str(), a.source),
            ("2026-11-24T05:00:00Z", Some(ApprovalSource::Elsewhere))
        );
        // No trace of the task at all: recorded as unconfirmed, still not approved again.
        let out = with_tasks(&s, &g, &in_flight_v2(), Some(&[]), &[], "2026-11-22T10:00:00Z");
        assert!(out.actions.is_empty());
        assert_eq!(out.status.approved.unwrap().source, Some(ApprovalSource::Unconfirmed));
    }

    #[test]
    fn a_version_approved_elsewhere_is_not_approved_again() {
        let s = spec(Some("2026-11-23T02:00:00Z"), None);
        let g = group("2.0", "ota-9");
        let theirs = [task("ota-1", "2.0", "2026-11-24T05:00:00Z", "STANDBY")];
        let out = with_tasks(
            &s,
            &g,
            &OtaScheduleStatus::default(),
            Some(&theirs),
            &[],
            "2026-11-22T10:00:00Z",
        );
        assert!(out.actions.is_empty());
        assert_eq!(out.verdict.reason, Reason::Approved);
        // A finished task of an older version does not count.
        let old = [task("ota-0", "2.0", "2026-10-01T05:00:00Z", "FINISHED")];
        let out = with_tasks(
            &s,
            &g,
            &OtaScheduleStatus::default(),
            Some(&old),
            &[],
            "2026-11-22T10:00:00Z",
        );
        assert_eq!(out.actions.len(), 1);
    }

    #[test]
    fn an_older_schedule_of_the_same_group_wins() {
        let s = spec(Some("2026-11-23T02:00:00Z"), None);
        let g = group("2.0", "ota-1");
        let older = ["team-a/first".to_string()];
        let out = with_tasks(
            &s,
            &g,
            &OtaScheduleStatus::default(),
            Some(&[]),
            &older,
            "2026-11-22T10:00:00Z",
        );
        assert!(out.actions.is_empty());
        assert_eq!(out.verdict.reason, Reason::Conflict);
        assert_eq!(out.status.conflicts, older);
    }

    #[test]
    fn after_the_start_time_it_looks_again_soon() {
        let s = spec(Some("2026-11-23T02:00:00Z"), None);
        let g = group("2.0", "ota-9");
        let approved = OtaScheduleStatus {
            approved: Some(Approval {
                version: "2.0".into(),
                task_id: "ota-1".into(),
                start_time: "2026-11-23T02:00:00Z".into(),
                source: Some(ApprovalSource::Operator),
            }),
            ..Default::default()
        };
        let at = |now: &str| {
            with_tasks(&s, &g, &approved, None, &[], now)
                .requeue_after
                .unwrap()
                .as_secs()
        };
        assert_eq!(at("2026-11-23T01:00:00Z"), 3600, "at the start time");
        assert_eq!(at("2026-11-23T02:00:05Z"), 10, "soon after it");
        assert_eq!(at("2026-11-23T02:02:00Z"), 60, "then less often");
        assert_eq!(at("2026-11-25T02:00:00Z"), 600, "never beyond the resync");
    }

    #[test]
    fn a_one_off_start_time_in_the_past_is_terminal() {
        let s = spec(Some("2026-11-20T02:00:00Z"), None);
        let g = group("2.0", "ota-1");
        let out = first(&s, Some(&g), &ctx("2026-11-22T10:00:00Z"));
        assert!(out.actions.is_empty());
        assert_eq!(out.verdict.reason, Reason::StartTimeInPast);
        assert!(out.verdict.reason.is_terminal());
    }

    #[test]
    fn a_window_approves_for_its_next_start() {
        // Sundays 03:00 Shanghai = Saturday 19:00Z. 2026-11-22 is a Sunday.
        let s = spec(None, Some("0 3 * * 0"));
        let g = group("2.0", "ota-1");
        let out = first(&s, Some(&g), &ctx("2026-11-22T10:00:00Z"));
        assert_eq!(out.actions[0].start_time, "2026-11-28T19:00:00Z");
        // A later version gets its own approval.
        let g = group("3.0", "ota-2");
        let out2 = with_tasks(&s, &g, &out.status, None, &[], "2026-12-01T10:00:00Z");
        assert_eq!(out2.actions.len(), 1);
        assert_eq!(out2.actions[0].version, "3.0");
    }

    #[test]
    fn missing_group_and_observe_only() {
        let s = spec(Some("2026-11-23T02:00:00Z"), None);
        let out = first(&s, None, &ctx("2026-11-22T10:00:00Z"));
        assert_eq!(out.verdict.reason, Reason::NotFound);
        let g = group("2.0", "ota-1");
        let out = first(&s, Some(&g), &observe_only("2026-11-22T10:00:00Z"));
        assert_eq!((out.actions.len(), out.verdict.reason), (0, Reason::DriftDetected));
    }
}
