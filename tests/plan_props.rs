//! Property tests: no spec the schema could let through, no status, no cloud answer and no
//! clock makes any kind's pure plan, or the duration, cron and time-zone parsers, panic.

use std::collections::BTreeSet;
use std::time::Duration;

use alicloud_ops_operator::api::ManagementPolicy;
use alicloud_ops_operator::api::common::{CommonSpec, CredentialsRef};
use alicloud_ops_operator::api::fota::{FotaTaskPolicySpec, FotaTaskPolicyStatus, TaskUid};
use alicloud_ops_operator::api::image_share::{DeletionPolicy, ImageShareSpec, ImageShareStatus};
use alicloud_ops_operator::api::maintenance::{
    DesktopId, DesktopMaintenanceWindowSpec, DesktopMaintenanceWindowStatus, DesktopSelector, EnteredWith, FixedWindow,
    RecurringWindow, WindowTimes,
};
use alicloud_ops_operator::api::ota::{
    Approval, ApprovalSource, OtaScheduleSpec, OtaScheduleStatus, OtaType, OtaWindow,
};
use alicloud_ops_operator::cloud::ops::appstream::{AppInstanceGroup, OtaInfo, OtaTask};
use alicloud_ops_operator::cloud::ops::ecd::{Desktop, FotaTask};
use alicloud_ops_operator::cloud::ops::swas::CustomImage;
use alicloud_ops_operator::reconcile::schedule::CronInZone;
use alicloud_ops_operator::reconcile::{PlanContext, duration, fota, image_share, maintenance, ota};
use chrono::{DateTime, Utc};
use proptest::prelude::*;

/// Any instant chrono can hold, with extra weight near today and at both ends.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    let (min, max) = (
        DateTime::<Utc>::MIN_UTC.timestamp(),
        DateTime::<Utc>::MAX_UTC.timestamp(),
    );
    prop_oneof![
        (min..=max).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap()),
        (1_700_000_000i64..1_900_000_000).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap()),
        Just(DateTime::<Utc>::MIN_UTC),
        Just(DateTime::<Utc>::MAX_UTC),
    ]
}

/// Strings a user could write in a time field: RFC 3339 of any instant, near misses, junk.
fn time_text() -> impl Strategy<Value = String> {
    prop_oneof![
        instant().prop_map(|t| t.to_rfc3339()),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})",
        ".{0,30}",
    ]
}

fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof!["([0-9]{1,20}(s|m|h)){1,3}", ".{0,20}"]
}

fn cron_text() -> impl Strategy<Value = String> {
    let field = prop_oneof![
        Just("*".to_string()),
        "[0-9]{1,3}",
        "[0-9]{1,2}-[0-9]{1,2}",
        "\\*/[0-9]{1,3}",
        "[0-9]{1,2},[0-9]{1,2}",
        "(MON|SUN|JAN|L|W|#|\\?)",
    ];
    prop_oneof![proptest::collection::vec(field, 5).prop_map(|f| f.join(" ")), ".{0,30}",]
}

fn zone_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("UTC".to_string()),
        Just("Asia/Shanghai".to_string()),
        Just("America/New_York".to_string()),
        Just("Pacific/Kiritimati".to_string()),
        ".{0,20}",
    ]
}

fn common() -> impl Strategy<Value = CommonSpec> {
    (
        proptest::option::of("[a-z]{1,8}"),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(duration_text()),
    )
        .prop_map(|(cred, suspend, observe, resync)| CommonSpec {
            credentials_ref: cred.map(|name| CredentialsRef { name }),
            suspend,
            management_policy: if observe {
                ManagementPolicy::ObserveOnly
            } else {
                ManagementPolicy::Manage
            },
            resync_interval: resync,
        })
}

fn ctx() -> impl Strategy<Value = PlanContext> {
    (instant(), any::<i64>(), any::<bool>(), any::<u64>()).prop_map(|(now, generation, observe, resync)| PlanContext {
        now,
        generation,
        policy: if observe {
            ManagementPolicy::ObserveOnly
        } else {
            ManagementPolicy::Manage
        },
        resync: Duration::from_secs(resync),
        request: None,
    })
}

fn ids(prefix: &'static str) -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec("[a-c0-9]{1,3}".prop_map(move |s| format!("{prefix}{s}")), 0..8)
}

fn flag() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("NoFlag".to_string()),
        Just("UnderMaintenance".to_string()),
        Just("EnterMaintenance".to_string()),
        ".{0,10}",
    ]
}

fn desktops() -> impl Strategy<Value = Vec<Desktop>> {
    proptest::collection::vec(
        (
            "ecd-[a-c0-9]{1,3}",
            "[a-z+0-9-]{0,12}",
            proptest::collection::vec(flag(), 0..3),
        )
            .prop_map(|(desktop_id, office_site_id, management_flags)| Desktop {
                desktop_id,
                office_site_id,
                management_flags,
                ..Default::default()
            }),
        0..10,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn durations_never_panic(text in ".{0,40}", numeric in duration_text()) {
        for t in [&text, &numeric] {
            let _ = duration::parse("d", t);
            let _ = duration::parse_within("d", t, duration::RESYNC_MIN, duration::RESYNC_MAX);
        }
    }

    #[test]
    fn cron_and_zones_never_panic(cron in cron_text(), zone in zone_text(), at in instant()) {
        if let Ok(c) = CronInZone::parse("spec.window", &cron, &zone) {
            let _ = c.next_after(at);
        }
    }

    #[test]
    fn fota_plans_never_panic(
        auto_push in any::<bool>(),
        uids in proptest::option::of(ids("aot-")),
        common in common(),
        tasks in proptest::collection::vec(("aot-[a-c0-9]{1,3}", prop_oneof![Just("Running".to_string()), Just("Pending".to_string()), ".{0,8}"]), 0..8),
        peers in proptest::collection::vec((any::<bool>(), proptest::option::of(ids("aot-")), instant()), 0..4),
        created in instant(),
        ctx in ctx(),
    ) {
        let spec = FotaTaskPolicySpec {
            region_id: "cn-hangzhou".into(),
            auto_push,
            task_uids: uids.map(|u| u.into_iter().map(TaskUid).collect()),
            common,
        };
        let tasks: Vec<FotaTask> = tasks
            .into_iter()
            .map(|(task_uid, status)| FotaTask { task_uid, status, ..Default::default() })
            .collect();
        let peers: Vec<fota::Peer> = peers
            .into_iter()
            .enumerate()
            .map(|(i, (auto_push, task_uids, created))| fota::Peer { key: format!("ns/p{i}"), shown_as: format!("ns/p{i}"), created, auto_push, task_uids })
            .collect();
        let previous = FotaTaskPolicyStatus::default();
        let out = fota::plan(
            &fota::FotaInput { spec: &spec, key: "ns/me", created, peers: &peers, tasks: &tasks, previous: &previous },
            &ctx,
        );
        let again = fota::plan(
            &fota::FotaInput { spec: &spec, key: "ns/me", created, peers: &peers, tasks: &tasks, previous: &out.status },
            &ctx,
        );
        let _ = again;
    }

    #[test]
    fn maintenance_plans_never_panic(
        listed in proptest::option::of(ids("ecd-")),
        site in "[a-z+0-9-]{1,12}",
        fixed in any::<bool>(),
        start in time_text(),
        end in time_text(),
        cron in cron_text(),
        length in duration_text(),
        zone in zone_text(),
        common in common(),
        cloud in desktops(),
        elsewhere in desktops(),
        recorded in ids("ecd-"),
        window in proptest::option::of((time_text(), time_text())),
        entered_with in proptest::option::of(proptest::option::of("[a-z]{1,5}")),
        held in ids("ecd-"),
        deleting in any::<bool>(),
        ctx in ctx(),
    ) {
        let spec = DesktopMaintenanceWindowSpec {
            region_id: "cn-hangzhou".into(),
            desktop_ids: listed.clone().map(|l| l.into_iter().map(DesktopId).collect()),
            selector: listed.is_none().then_some(DesktopSelector { office_site_id: Some(site), ..Default::default() }),
            window: fixed.then(|| FixedWindow { start: start.clone(), end: end.clone() }),
            recurring: (!fixed).then(|| RecurringWindow { cron: cron.clone(), duration: length.clone(), time_zone: zone.clone() }),
            drain: None,
            exclude: None,
            blackouts: Vec::new(),
            notify: None,
            common,
        };
        let previous = DesktopMaintenanceWindowStatus {
            desktops_in_maintenance_count: recorded.len() as i32,
            desktops_in_maintenance: recorded,
            current_window: window.map(|(start, end)| WindowTimes { start, end }),
            entered_with: entered_with.map(|c| EnteredWith { credentials_ref: c.map(|name| CredentialsRef { name }) }),
            ..Default::default()
        };
        let held: BTreeSet<String> = held.into_iter().collect();
        let input = maintenance::MaintenanceInput {
            spec: &spec,
            desktops: &cloud,
            recorded_elsewhere: &elsewhere,
            previous: &previous,
            deleting,
            held_by_others: &held,
            recorded_by_others: &Default::default(),
            wanted_by_others: &Default::default(),
            tagged: &Default::default(),
            idle_seconds: &Default::default(),
            excluded: 0,
        };
        let out = maintenance::plan(&input, &ctx);
        // Whatever else happens, deletion never keeps a record it could act on.
        if deleting && ctx.policy == ManagementPolicy::Manage {
            prop_assert!(out.actions.iter().all(|a| a.maintenance().is_some_and(|m| m.mode == alicloud_ops_operator::cloud::ops::ecd::MaintenanceMode::Exit)));
        }
    }

    #[test]
    fn image_share_plans_never_panic(
        shared in any::<bool>(),
        unshare in any::<bool>(),
        common in common(),
        image in proptest::option::of((any::<bool>(), ".{0,8}")),
        in_share in proptest::option::of(any::<bool>()),
        operations in any::<i32>(),
        uid in ".{0,40}",
        ctx in ctx(),
    ) {
        let spec = ImageShareSpec {
            region_id: "cn-hangzhou".into(),
            image_id: "m-1".into(),
            shared,
            deletion_policy: if unshare { DeletionPolicy::UnShare } else { DeletionPolicy::Retain },
            common,
        };
        let image = image.map(|(in_share, status)| CustomImage { image_id: "m-1".into(), in_share, status, ..Default::default() });
        let previous = ImageShareStatus { in_share, share_operations: operations, ..Default::default() };
        let input = image_share::ImageShareInput { spec: &spec, uid: &uid, resource_version: "1", image: image.as_ref(), listed_at: ctx.now, previous: &previous };
        let _ = image_share::plan(&input, &ctx);
        let _ = image_share::cleanup(&input, &ctx);
    }

    #[test]
    fn ota_plans_never_panic(
        start in proptest::option::of(time_text()),
        cron in cron_text(),
        zone in zone_text(),
        common in common(),
        group in proptest::option::of((".{0,6}", ".{0,6}", ".{0,6}")),
        approved in proptest::option::of((".{0,6}", ".{0,6}", time_text())),
        in_flight in proptest::option::of((".{0,6}", ".{0,6}", time_text())),
        tasks in proptest::option::of(proptest::collection::vec((".{0,6}", ".{0,6}", time_text(), prop_oneof![Just("STANDBY".to_string()), Just("RUNNING".to_string()), ".{0,6}"]), 0..4)),
        older in proptest::collection::vec("[a-z/]{1,8}", 0..2),
        ctx in ctx(),
    ) {
        let spec = OtaScheduleSpec {
            biz_region_id: "cn-hangzhou".into(),
            app_instance_group_id: "aig-1".into(),
            ota_type: OtaType::Fota,
            window: start.is_none().then(|| OtaWindow { cron: cron.clone(), time_zone: zone.clone() }),
            start_time: start,
            common,
        };
        let group = group.map(|(current, new, task)| AppInstanceGroup {
            app_instance_group_id: "aig-1".into(),
            ota_info: OtaInfo { ota_version: current, new_ota_version: new, task_id: task },
            ..Default::default()
        });
        let approval = |(version, task_id, start_time): (String, String, String)| Approval {
            version,
            task_id,
            start_time,
            source: Some(ApprovalSource::Operator),
        };
        let previous = OtaScheduleStatus {
            approved: approved.map(approval),
            in_flight: in_flight.map(approval),
            ..Default::default()
        };
        let tasks: Option<Vec<OtaTask>> = tasks.map(|ts| {
            ts.into_iter()
                .map(|(task_id, ota_version, task_start_time, task_display_status)| OtaTask {
                    task_id,
                    ota_version,
                    task_start_time,
                    task_display_status,
                })
                .collect()
        });
        let out = ota::plan(
            &ota::OtaInput {
                spec: &spec,
                group: group.as_ref(),
                previous: &previous,
                tasks: tasks.as_deref(),
                older_peers: &older,
            },
            &ctx,
        );
        // A version recorded as in flight is never approved again before the task list says
        // what became of it.
        if let (Some(f), None) = (&previous.in_flight, &tasks) {
            prop_assert!(out.actions.iter().all(|a| a.version != f.version));
        }
    }
}
