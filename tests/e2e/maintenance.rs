//! DesktopMaintenanceWindow: enter and exit at the window, foreign maintenance, restarts mid-window, deletion that waits for its credentials, overlapping windows.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn maintenance_window_story_enter_exit_foreign_and_delete_during_window() {
    let Scene { client, ns, emu } = Scene::new("dmw").await;
    let _op = operator(&ns, &emu);
    let now = chrono::Utc::now();
    let in_maint = |emu: &alicloud_ops_operator::emulator::Emulator, id: &str| {
        emu.world().state().ecd["cn-hangzhou"]
            .desktops
            .iter()
            .find(|d| d.desktop_id == id)
            .unwrap()
            .in_maintenance()
    };
    // ecd-hz10001 is in maintenance by someone else.
    create::<DesktopMaintenanceWindow>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "DesktopMaintenanceWindow", "metadata": {"name": "short"},
               "spec": {"regionId": "cn-hangzhou", "desktopIds": ["ecd-hz10001", "ecd-hz10021", "ecd-hz10022"],
                        "window": {"start": (now - chrono::Duration::minutes(1)).to_rfc3339(), "end": (now + chrono::Duration::seconds(40)).to_rfc3339()}}}),
    )
    .await;
    let status = wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "short", "Active").await;
    assert_eq!(status["desktopsInMaintenance"], json!(["ecd-hz10021", "ecd-hz10022"]));
    assert_eq!(status["foreignMaintenance"], json!(["ecd-hz10001"]));
    assert!(in_maint(&emu, "ecd-hz10021") && in_maint(&emu, "ecd-hz10022"));
    // The window ends: the operator requeued itself for the boundary.
    wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "short", "Completed").await;
    assert!(!in_maint(&emu, "ecd-hz10021") && !in_maint(&emu, "ecd-hz10022"));
    assert!(in_maint(&emu, "ecd-hz10001"), "the foreign one stays");

    // Deleting during a window exits maintenance first, through the finalizer.
    create::<DesktopMaintenanceWindow>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "DesktopMaintenanceWindow", "metadata": {"name": "long"},
               "spec": {"regionId": "cn-hangzhou", "selector": {"officeSiteId": "cn-hangzhou+dir-0000000003"},
                        "window": {"start": (now - chrono::Duration::minutes(1)).to_rfc3339(), "end": (now + chrono::Duration::hours(2)).to_rfc3339()}}}),
    )
    .await;
    let status = wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "long", "Active").await;
    assert_eq!(status["desktopsInMaintenanceCount"], 100);
    // Drift inside the window: someone takes a computer out; the resync puts it back.
    emu.world().update_state(|s| {
        s.ecd
            .get_mut("cn-hangzhou")
            .unwrap()
            .desktops
            .iter_mut()
            .find(|d| d.desktop_id == "ecd-hz30050")
            .unwrap()
            .management_flags = vec!["NoFlag".into()]
    });
    eventually("ecd-hz30050 back in maintenance", WAIT, || async {
        in_maint(&emu, "ecd-hz30050").then_some(())
    })
    .await;
    let api = Api::<DesktopMaintenanceWindow>::namespaced(client.clone(), &ns);
    assert!(
        api.get("long")
            .await
            .unwrap()
            .finalizers()
            .contains(&"ops.alicloud.dev/cleanup".to_string())
    );
    api.delete("long", &DeleteParams::default()).await.unwrap();
    eventually("deleted", WAIT, || async {
        api.get_opt("long").await.unwrap().is_none().then_some(())
    })
    .await;
    let left = emu.world().state().ecd["cn-hangzhou"]
        .desktops
        .iter()
        .filter(|d| d.office_site_id.ends_with("0000000003") && d.in_maintenance())
        .count();
    assert_eq!(left, 0, "no desktop left in maintenance");
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_in_the_middle_of_a_window_leaves_no_desktop_in_maintenance() {
    let Scene { client, ns, emu } = Scene::new("dmwr").await;
    let mut op = operator(&ns, &emu);
    let now = chrono::Utc::now();
    create::<DesktopMaintenanceWindow>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "DesktopMaintenanceWindow", "metadata": {"name": "w"},
               "spec": {"regionId": "cn-shanghai", "desktopIds": ["ecd-sh10002", "ecd-sh10003"],
                        "window": {"start": (now - chrono::Duration::minutes(1)).to_rfc3339(), "end": (now + chrono::Duration::seconds(40)).to_rfc3339()}}}),
    )
    .await;
    wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "w", "Active").await;
    op.crash();
    // Down across the window's end.
    tokio::time::sleep(
        (now + chrono::Duration::seconds(42) - chrono::Utc::now())
            .to_std()
            .unwrap_or_default(),
    )
    .await;
    let _op2 = operator(&ns, &emu);
    wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "w", "Completed").await;
    let left: Vec<String> = emu.world().state().ecd["cn-shanghai"]
        .desktops
        .iter()
        .filter(|d| d.in_maintenance() && d.desktop_id != "ecd-sh10001")
        .map(|d| d.desktop_id.clone())
        .collect();
    assert!(left.is_empty(), "left in maintenance: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn deletion_waits_for_the_credentials_that_entered_the_desktops() {
    let Scene { client, ns, emu } = Scene::new("nscred").await;
    let key = KEY_SECRET;
    secret(&client, &ns, "cloud", key).await;
    let _op = operator(&ns, &emu);
    let ids = ["ecd-hz10031", "ecd-hz10032"];
    create::<DesktopMaintenanceWindow>(&client, &ns, dmw("w", &ids, chrono::Duration::hours(2), Some("cloud"))).await;
    wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "w", "Active").await;
    assert!(ids.iter().all(|id| in_maintenance(&emu, id)));

    // The order a namespace deletion can take: the Secret goes before the window.
    Api::<Secret>::namespaced(client.clone(), &ns)
        .delete("cloud", &DeleteParams::default())
        .await
        .unwrap();
    let api = Api::<DesktopMaintenanceWindow>::namespaced(client.clone(), &ns);
    api.delete("w", &DeleteParams::default()).await.unwrap();
    let warning = warning_about(&client, &ns, "w", "skip-cleanup").await;
    let note = warning.note.unwrap();
    assert!(note.contains("ecd-hz10031") && note.contains("cloud"), "{note}");
    assert!(api.get_opt("w").await.unwrap().is_some(), "the finalizer holds");
    assert!(ids.iter().all(|id| in_maintenance(&emu, id)), "nothing was undone yet");

    // The Secret comes back: the desktops are exited, then the window goes.
    secret(&client, &ns, "cloud", key).await;
    gone::<DesktopMaintenanceWindow>(&client, &ns, "w", WAIT).await;
    assert!(
        ids.iter().all(|id| !in_maintenance(&emu, id)),
        "no desktop left in maintenance"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn overlapping_windows_exit_a_shared_desktop_with_the_last_one() {
    let Scene { client, ns, emu } = Scene::new("overlap").await;
    let _op = operator(&ns, &emu);
    let (only_first, shared) = ("ecd-hz10051", "ecd-hz10052");
    create::<DesktopMaintenanceWindow>(
        &client,
        &ns,
        dmw("first", &[only_first, shared], chrono::Duration::seconds(30), None),
    )
    .await;
    create::<DesktopMaintenanceWindow>(&client, &ns, dmw("second", &[shared], chrono::Duration::hours(2), None)).await;
    wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "first", "Active").await;
    let second = wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "second", "Active").await;
    assert_eq!(
        second["desktopsInMaintenance"],
        json!([shared]),
        "held, not foreign: {second}"
    );
    wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "first", "Completed").await;
    assert!(!in_maintenance(&emu, only_first));
    assert!(in_maintenance(&emu, shared), "the second window still holds it");
    Api::<DesktopMaintenanceWindow>::namespaced(client.clone(), &ns)
        .delete("second", &DeleteParams::default())
        .await
        .unwrap();
    gone::<DesktopMaintenanceWindow>(&client, &ns, "second", WAIT).await;
    assert!(!in_maintenance(&emu, shared), "the last window exits it");
}

/// Changes desktop `id` of cn-hangzhou in the emulator's state, as a person with curl would.
fn edit_desktop(
    emu: &alicloud_ops_operator::emulator::Emulator,
    id: &str,
    change: impl FnOnce(&mut alicloud_ops_operator::cloud::ops::ecd::Desktop),
) {
    emu.world().update_state(|s| {
        let desktops = &mut s.ecd.get_mut("cn-hangzhou").unwrap().desktops;
        change(desktops.iter_mut().find(|d| d.desktop_id == id).unwrap());
    });
}

/// A message made and published in the console, which SendConsoleMessage can send.
fn publish_console_message(emu: &alicloud_ops_operator::emulator::Emulator, id: &str) {
    emu.world().update_state(|s| {
        s.console_messages
            .push(alicloud_ops_operator::emulator::state::ConsoleMessage {
                message_id: id.into(),
                status: "Published".into(),
                message_type: "NOTIFICATION".into(),
                target_type: "Tag".into(),
            })
    });
}

/// Connects `user` to desktop `id`.
fn connect(emu: &alicloud_ops_operator::emulator::Emulator, id: &str, user: &str) {
    edit_desktop(emu, id, |d| {
        d.sessions.push(alicloud_ops_operator::cloud::ops::ecd::DesktopSession {
            end_user_id: user.into(),
            establishment_time: chrono::Utc::now().format("%Y-%m-%dT%H:%MZ").to_string(),
            external_user_name: String::new(),
        })
    });
}

/// Everyone connected to desktop `id` leaves.
fn leave(emu: &alicloud_ops_operator::emulator::Emulator, id: &str) {
    edit_desktop(emu, id, |d| d.sessions.clear());
}

fn flags(emu: &alicloud_ops_operator::emulator::Emulator, id: &str) -> Vec<String> {
    emu.world().state().ecd["cn-hangzhou"]
        .desktops
        .iter()
        .find(|d| d.desktop_id == id)
        .unwrap()
        .management_flags
        .clone()
}

/// Someone still working when the window opens is not thrown out (the default policy,
/// `Wait`): the desktop is entered and drains, the window says `Draining` and who is
/// connected, and it is `Active` only once she has left. Her desktop is exited at the end
/// like every other, and nobody was ever disconnected by the operator.
#[tokio::test(flavor = "multi_thread")]
async fn a_window_waits_for_the_people_still_working_and_says_so() {
    let Scene { client, ns, emu } = Scene::new("drain").await;
    connect(&emu, "ecd-hz10031", "alice");
    let _op = operator(&ns, &emu);
    create::<DesktopMaintenanceWindow>(
        &client,
        &ns,
        dmw(
            "people",
            &["ecd-hz10031", "ecd-hz10032"],
            chrono::Duration::seconds(50),
            None,
        ),
    )
    .await;
    let status = wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "people", "Draining").await;
    assert_eq!(status["desktopsInMaintenance"], json!(["ecd-hz10031", "ecd-hz10032"]));
    assert_eq!(status["desktopsDrainingCount"], 1);
    assert_eq!(status["busyDesktops"][0]["desktopId"], "ecd-hz10031");
    assert_eq!(status["busyDesktops"][0]["endUserIds"], json!(["alice"]));
    assert_eq!(flags(&emu, "ecd-hz10031"), ["EnterMaintenance"], "alice keeps working");
    assert_eq!(flags(&emu, "ecd-hz10032"), ["UnderMaintenance"]);

    // Alice leaves: the desktop is in maintenance, and so is the window.
    leave(&emu, "ecd-hz10031");
    let status = wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "people", "Active").await;
    assert_eq!(status["desktopsDrainingCount"], 0);
    assert_eq!(flags(&emu, "ecd-hz10031"), ["UnderMaintenance"]);

    wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "people", "Completed").await;
    assert!(!in_maintenance(&emu, "ecd-hz10031") && !in_maintenance(&emu, "ecd-hz10032"));
    let log = emu.world().state().ecd["cn-hangzhou"].session_log.clone();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(
        (log[0].end_user_id.as_str(), log[0].ended_by.as_str()),
        ("alice", "user"),
        "she left on her own"
    );
}

/// `WaitThenForce`: the window says when it will force; Bob, who leaves before the
/// deadline on his own, is left alone; Alice, still connected at the deadline, is
/// disconnected then (by the emulator's own log of who ended her session, and when), with
/// an Event that names her session; then the window is `Active`. The window promises a
/// warning of 45 s and is made too late to give it before the deadline: the console
/// message goes at once, and Alice is disconnected no sooner than 45 s after it.
#[tokio::test(flavor = "multi_thread")]
async fn the_drain_deadline_disconnects_who_is_left_and_nobody_before_it() {
    let Scene { client, ns, emu } = Scene::new("force").await;
    publish_console_message(&emu, "msg-force");
    connect(&emu, "ecd-hz10041", "alice");
    connect(&emu, "ecd-hz10042", "bob");
    let _op = operator(&ns, &emu);
    let mut body = dmw(
        "forced",
        &["ecd-hz10041", "ecd-hz10042"],
        chrono::Duration::minutes(5),
        None,
    );
    // The window opened a minute ago: the deadline is 40 s from now.
    body["spec"]["drain"] = json!({"policy": "WaitThenForce", "forceAfter": "100s"});
    // The 45 s of warning promised cannot come before the deadline: it goes now.
    body["spec"]["notify"] = json!({"before": ["45s"], "consoleMessageId": "msg-force"});
    create::<DesktopMaintenanceWindow>(&client, &ns, body).await;
    let status = wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "forced", "Draining").await;
    let force_at: chrono::DateTime<chrono::Utc> = status["forceAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(status["desktopsDrainingCount"], 2);
    leave(&emu, "ecd-hz10042");
    eventually("alice disconnected", 2 * WAIT, || async {
        let log = emu.world().state().ecd["cn-hangzhou"].session_log.clone();
        log.iter().any(|r| r.end_user_id == "alice").then_some(())
    })
    .await;
    wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "forced", "Active").await;
    let log = emu.world().state().ecd["cn-hangzhou"].session_log.clone();
    let ended = |user: &str| log.iter().find(|r| r.end_user_id == user).cloned().unwrap();
    assert_eq!(ended("bob").ended_by, "user");
    let alice = ended("alice");
    assert_eq!(alice.ended_by, "DisconnectDesktopSessions");
    assert!(
        alice.end.unwrap() >= force_at,
        "disconnected at {:?}, before the deadline {force_at}",
        alice.end
    );
    let warned = emu.world().state().console_messages_sent;
    assert_eq!(warned.len(), 1, "one warning: {warned:?}");
    assert!(
        alice.end.unwrap() >= warned[0].at + chrono::Duration::seconds(45),
        "disconnected at {:?}, less than the promised 45 s after the warning at {}",
        alice.end,
        warned[0].at
    );
    assert_eq!(flags(&emu, "ecd-hz10041"), ["UnderMaintenance"]);
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let listed = events.list(&Default::default()).await.unwrap();
    let disconnected: Vec<String> = listed
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("SessionsDisconnected"))
        .filter_map(|e| e.note.clone())
        .collect();
    assert!(
        disconnected.len() == 1 && disconnected[0].contains("ecd-hz10041/alice"),
        "{disconnected:?}"
    );
}

/// A window chooses its computers by tags, never touches an excluded one, and takes a
/// computer out of maintenance when it leaves the selection (its tag removed) while the
/// window is open.
#[tokio::test(flavor = "multi_thread")]
async fn a_window_chosen_by_tags_skips_exclusions_and_lets_go_of_what_leaves() {
    let Scene { client, ns, emu } = Scene::new("tags").await;
    let team = |id: &str, value: &str| (id.to_string(), value.to_string());
    let teams = [
        team("ecd-hz20011", "finance"),
        team("ecd-hz20012", "finance"),
        team("ecd-hz20013", "finance"),
        team("ecd-hz20014", "dev"),
    ];
    emu.world().update_state(|s| {
        for d in s.ecd.get_mut("cn-hangzhou").unwrap().desktops.iter_mut() {
            if let Some((_, value)) = teams.iter().find(|(id, _)| *id == d.desktop_id) {
                d.tags.push(alicloud_ops_operator::cloud::ops::ecd::Tag {
                    key: "team".into(),
                    value: value.clone(),
                });
            }
        }
    });
    let _op = operator(&ns, &emu);
    let now = chrono::Utc::now();
    create::<DesktopMaintenanceWindow>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "DesktopMaintenanceWindow", "metadata": {"name": "finance"},
               "spec": {"regionId": "cn-hangzhou", "selector": {"tags": {"team": "finance"}},
                        "exclude": {"desktopIds": ["ecd-hz20013"]},
                        "window": {"start": (now - chrono::Duration::minutes(1)).to_rfc3339(), "end": (now + chrono::Duration::hours(1)).to_rfc3339()}}}),
    )
    .await;
    let status = wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "finance", "Active").await;
    assert_eq!(status["desktopsInMaintenance"], json!(["ecd-hz20011", "ecd-hz20012"]));
    assert_eq!(
        (
            status["desktopsTargetedCount"].clone(),
            status["desktopsExcludedCount"].clone()
        ),
        (json!(2), json!(1))
    );
    assert!(!in_maintenance(&emu, "ecd-hz20013"), "excluded");
    assert!(!in_maintenance(&emu, "ecd-hz20014"), "another team");

    // ecd-hz20012 leaves the team while the window is open: it is let go.
    emu.world().update_state(|s| {
        let d = s
            .ecd
            .get_mut("cn-hangzhou")
            .unwrap()
            .desktops
            .iter_mut()
            .find(|d| d.desktop_id == "ecd-hz20012")
            .unwrap();
        d.tags.retain(|t| t.key != "team");
    });
    eventually("ecd-hz20012 out of maintenance", WAIT, || async {
        (!in_maintenance(&emu, "ecd-hz20012")).then_some(())
    })
    .await;
    let status = wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "finance", "Active").await;
    assert_eq!(status["desktopsInMaintenance"], json!(["ecd-hz20011"]));
}

/// People are warned before the window opens: a MaintenanceNotice Event and the console
/// message for each lead time, once each, even though the operator restarts between them;
/// then the window opens as planned.
#[tokio::test(flavor = "multi_thread")]
async fn notices_go_once_per_lead_time_across_a_restart() {
    let Scene { client, ns, emu } = Scene::new("notice").await;
    publish_console_message(&emu, "msg-maint");
    let mut op = operator(&ns, &emu);
    let now = chrono::Utc::now();
    let start = now + chrono::Duration::seconds(35);
    create::<DesktopMaintenanceWindow>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "DesktopMaintenanceWindow", "metadata": {"name": "warned"},
               "spec": {"regionId": "cn-hangzhou", "desktopIds": ["ecd-hz10051"],
                        "notify": {"before": ["30s", "15s"], "consoleMessageId": "msg-maint"},
                        "window": {"start": start.to_rfc3339(), "end": (start + chrono::Duration::minutes(10)).to_rfc3339()}}}),
    )
    .await;
    let sent = || emu.world().state().console_messages_sent.len();
    eventually("the first notice", WAIT, || async { (sent() >= 1).then_some(()) }).await;
    assert_eq!(op.stop(), Some(0));
    let _op = operator(&ns, &emu);
    wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "warned", "Active").await;
    let log = emu.world().state().console_messages_sent;
    assert_eq!(log.len(), 2, "one per lead time: {log:?}");
    assert!(
        log.iter().all(|m| m.message_id == "msg-maint" && m.at < start),
        "{log:?}"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let notes: Vec<String> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("MaintenanceNotice"))
        .filter_map(|e| e.note)
        .collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes.iter().any(|n| n.starts_with("in 30s:")) && notes.iter().any(|n| n.starts_with("in 15s:")),
        "{notes:?}"
    );
}

/// `SkipBusy`: Alice is working, so her computer is not entered; Bob has been idle for 40
/// minutes (the cloud's SessionIdleTime) and `idleAfter` is 30m, so his is; a free one is.
/// When Alice leaves, hers is entered at the next look. Nobody is disconnected.
#[tokio::test(flavor = "multi_thread")]
async fn skip_busy_leaves_people_at_work_alone_until_they_leave() {
    use alicloud_ops_operator::emulator::state::{SessionAction, SessionEvent};
    let Scene { client, ns, emu } = Scene::new("skipbusy").await;
    let now = emu.world().clock.now();
    emu.world().update_state(|s| {
        let r = s.ecd.get_mut("cn-hangzhou").unwrap();
        let event = |desktop: &str, user: &str, ago: i64, action| SessionEvent {
            at: now - chrono::Duration::minutes(ago),
            desktop_id: desktop.into(),
            end_user_id: user.into(),
            action,
        };
        r.session_events = vec![
            event("ecd-hz10061", "alice", 60, SessionAction::Connect),
            event("ecd-hz10062", "bob", 60, SessionAction::Connect),
            event("ecd-hz10062", "bob", 40, SessionAction::Idle),
        ];
    });
    let _op = operator(&ns, &emu);
    let mut body = dmw(
        "skip",
        &["ecd-hz10061", "ecd-hz10062", "ecd-hz10063"],
        chrono::Duration::hours(2),
        None,
    );
    body["spec"]["drain"] = json!({"policy": "SkipBusy", "idleAfter": "30m", "retryEvery": "10s"});
    create::<DesktopMaintenanceWindow>(&client, &ns, body).await;
    let status = wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "skip", "WaitingForBusy").await;
    assert_eq!(status["desktopsInMaintenance"], json!(["ecd-hz10062", "ecd-hz10063"]));
    assert_eq!(status["desktopsWaitingBusyCount"], 1);
    assert!(!in_maintenance(&emu, "ecd-hz10061"), "alice works on");
    leave(&emu, "ecd-hz10061");
    eventually("alice's computer entered once she left", WAIT, || async {
        in_maintenance(&emu, "ecd-hz10061").then_some(())
    })
    .await;
    let log = emu.world().state().ecd["cn-hangzhou"].session_log.clone();
    assert!(
        log.iter()
            .all(|r| r.ended_by != "DisconnectDesktopSessions" && r.ended_by != "SetDesktopMaintenance"),
        "{log:?}"
    );
}
