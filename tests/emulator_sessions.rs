//! People on the desktops, in the emulator: sessions connect and leave on its clock (or by an
//! edit of its state), maintenance mode waits for them as documented (or, in the other
//! reading, disconnects them), and the session, disconnect and console-message actions answer
//! as the API does. Through the operator's typed calls, over real HTTP.

mod support;

use alicloud_ops_operator::cloud::CloudError;
use alicloud_ops_operator::cloud::ops::ecd::{
    self, DesktopFilter, DesktopSession, MaintenanceMode, SessionRef, describe_desktops, set_desktop_maintenance,
};
use alicloud_ops_operator::emulator::Emulator;
use alicloud_ops_operator::emulator::state::{ConsoleMessage, SessionAction, SessionEvent};
use chrono::{DateTime, Utc};
use support::*;

const REGION: &str = "cn-shanghai";

async fn desktop(emu: &Emulator, id: &str) -> ecd::Desktop {
    let c = client(emu, BOTH[1]);
    let filter = DesktopFilter {
        desktop_ids: vec![id.to_string()],
        ..Default::default()
    };
    describe_desktops(&c, REGION, &filter).await.unwrap().remove(0)
}

fn first_desktop(emu: &Emulator) -> String {
    emu.world().state().ecd[REGION].desktops[1].desktop_id.clone()
}

/// Connects `user` to `id` by editing the state, as a test or a person with curl would.
fn connect_by_edit(emu: &Emulator, id: &str, user: &str, at: DateTime<Utc>) {
    emu.world().update_state(|s| {
        let d = s
            .ecd
            .get_mut(REGION)
            .unwrap()
            .desktops
            .iter_mut()
            .find(|d| d.desktop_id == id)
            .unwrap();
        d.sessions.push(DesktopSession {
            end_user_id: user.into(),
            establishment_time: at.format("%Y-%m-%dT%H:%MZ").to_string(),
            external_user_name: String::new(),
        });
    });
}

/// What the last request of `action` did, by the emulator's request log.
fn effects_of(emu: &Emulator, action: &str) -> Vec<String> {
    let log = emu.world().request_log();
    let last = log.iter().rev().find(|r| r.action == action);
    last.map(|r| r.effects.clone()).unwrap_or_default()
}

fn script(emu: &Emulator, id: &str, user: &str, at: DateTime<Utc>, action: SessionAction) {
    emu.world().update_state(|s| {
        s.ecd.get_mut(REGION).unwrap().session_events.push(SessionEvent {
            at,
            desktop_id: id.into(),
            end_user_id: user.into(),
            action,
        })
    });
}

#[tokio::test]
async fn maintenance_waits_for_the_last_user_and_then_keeps_everyone_out() {
    let emu = emulator().await;
    let c = client(&emu, BOTH[0]);
    let id = first_desktop(&emu);
    let t0 = emu.world().clock.now();
    connect_by_edit(&emu, &id, "alice", t0);
    let d = desktop(&emu, &id).await;
    assert_eq!((d.connection_status.as_str(), d.sessions.len()), ("Connected", 1));

    set_desktop_maintenance(&c, REGION, MaintenanceMode::Enter, std::slice::from_ref(&id))
        .await
        .unwrap();
    let d = desktop(&emu, &id).await;
    assert_eq!(d.management_flags, ["EnterMaintenance"], "draining while alice works");
    assert!(!d.maintained() && d.in_maintenance() && d.connected());
    // The request log says what the write did.
    assert_eq!(
        effects_of(&emu, "SetDesktopMaintenance"),
        [format!("{id}: NoFlag -> EnterMaintenance (alice connected)")]
    );

    // Alice leaves at +10 min: the desktop is in maintenance; she cannot come back.
    script(
        &emu,
        &id,
        "alice",
        t0 + chrono::Duration::minutes(10),
        SessionAction::Disconnect,
    );
    script(
        &emu,
        &id,
        "alice",
        t0 + chrono::Duration::minutes(11),
        SessionAction::Connect,
    );
    emu.world().clock.advance(chrono::Duration::minutes(12)).unwrap();
    let d = desktop(&emu, &id).await;
    assert_eq!(d.management_flags, ["UnderMaintenance"]);
    assert_eq!((d.connection_status.as_str(), d.sessions.len()), ("Disconnected", 0));
    let log = emu.world().state().ecd[REGION].session_log.clone();
    assert_eq!(
        log.iter().map(|r| r.ended_by.as_str()).collect::<Vec<_>>(),
        ["user", "refused"],
        "{log:?}"
    );

    // After EXIT she can connect again.
    set_desktop_maintenance(&c, REGION, MaintenanceMode::Exit, std::slice::from_ref(&id))
        .await
        .unwrap();
    script(
        &emu,
        &id,
        "alice",
        t0 + chrono::Duration::minutes(13),
        SessionAction::Connect,
    );
    emu.world().clock.advance(chrono::Duration::minutes(2)).unwrap();
    let d = desktop(&emu, &id).await;
    assert_eq!(d.management_flags, ["NoFlag"]);
    assert_eq!(
        d.sessions.iter().map(|s| s.end_user_id.as_str()).collect::<Vec<_>>(),
        ["alice"]
    );
}

#[tokio::test]
async fn a_session_edited_into_a_desktop_in_maintenance_is_refused() {
    let emu = emulator().await;
    let c = client(&emu, BOTH[1]);
    let id = first_desktop(&emu);
    set_desktop_maintenance(&c, REGION, MaintenanceMode::Enter, std::slice::from_ref(&id))
        .await
        .unwrap();
    connect_by_edit(&emu, &id, "bob", emu.world().clock.now());
    let d = desktop(&emu, &id).await;
    assert!(d.sessions.is_empty() && d.maintained(), "{d:?}");
    let log = emu.world().state().ecd[REGION].session_log.clone();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].end_user_id.as_str(), log[0].ended_by.as_str()),
        ("bob", "refused")
    );
}

#[tokio::test]
async fn in_the_other_reading_enter_disconnects_everyone_at_once() {
    let emu = emulator().await;
    emu.world().update_state(|s| s.maintenance_disconnects = true);
    let c = client(&emu, BOTH[0]);
    let id = first_desktop(&emu);
    connect_by_edit(&emu, &id, "carol", emu.world().clock.now());
    set_desktop_maintenance(&c, REGION, MaintenanceMode::Enter, std::slice::from_ref(&id))
        .await
        .unwrap();
    let d = desktop(&emu, &id).await;
    assert_eq!(d.management_flags, ["UnderMaintenance"]);
    assert!(d.sessions.is_empty());
    let log = emu.world().state().ecd[REGION].session_log.clone();
    assert_eq!(log[0].ended_by, "SetDesktopMaintenance");
}

#[tokio::test]
async fn sessions_show_idle_time_and_are_disconnected_on_request() {
    let emu = emulator().await;
    let c = client(&emu, BOTH[1]);
    let state = emu.world().state();
    let ids: Vec<String> = state.ecd[REGION]
        .desktops
        .iter()
        .skip(1)
        .take(3)
        .map(|d| d.desktop_id.clone())
        .collect();
    let t0 = emu.world().clock.now();
    script(&emu, &ids[0], "dan", t0, SessionAction::Connect);
    script(
        &emu,
        &ids[0],
        "dan",
        t0 + chrono::Duration::minutes(5),
        SessionAction::Idle,
    );
    script(&emu, &ids[1], "erin", t0, SessionAction::Connect);
    script(&emu, &ids[2], "finn", t0, SessionAction::Connect);
    script(
        &emu,
        &ids[2],
        "finn",
        t0 + chrono::Duration::minutes(1),
        SessionAction::Disconnect,
    );
    emu.world().clock.advance(chrono::Duration::minutes(25)).unwrap();

    let mut sessions = ecd::describe_connected_sessions(&c, REGION, &ids).await.unwrap();
    sessions.sort_by(|a, b| a.end_user_id.cmp(&b.end_user_id));
    let seen: Vec<(&str, &str, i64)> = sessions
        .iter()
        .map(|s| (s.end_user_id.as_str(), s.session_status.as_str(), s.session_idle_time))
        .collect();
    assert_eq!(seen, [("dan", "Connected", 20 * 60), ("erin", "Connected", 0)]);

    // Erin is disconnected; finn left already, so the cloud calls his session invalid.
    let invalid = ecd::disconnect_desktop_sessions(
        &c,
        REGION,
        &[
            SessionRef {
                desktop_id: ids[1].clone(),
                end_user_id: "erin".into(),
            },
            SessionRef {
                desktop_id: ids[2].clone(),
                end_user_id: "finn".into(),
            },
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        invalid.iter().map(|s| s.end_user_id.as_str()).collect::<Vec<_>>(),
        ["finn"]
    );
    assert!(desktop(&emu, &ids[1]).await.sessions.is_empty());
    assert_eq!(
        effects_of(&emu, "DisconnectDesktopSessions"),
        [
            format!("{}/erin: disconnected", ids[1]),
            format!("{}/finn: no such session", ids[2])
        ]
    );
    let log = emu.world().state().ecd[REGION].session_log.clone();
    assert!(
        log.iter()
            .any(|r| r.end_user_id == "erin" && r.ended_by == "DisconnectDesktopSessions")
    );

    // 21 sessions are one too many for a call: refused before anything is sent.
    let many: Vec<SessionRef> = (0..21)
        .map(|i| SessionRef {
            desktop_id: ids[0].clone(),
            end_user_id: format!("u{i}"),
        })
        .collect();
    let before = emu.world().counters().count("DisconnectDesktopSessions");
    let err = ecd::disconnect_desktop_sessions(&c, REGION, &many).await.unwrap_err();
    assert!(matches!(err, CloudError::InvalidRequest(_)), "{err}");
    assert_eq!(emu.world().counters().count("DisconnectDesktopSessions"), before);
}

#[tokio::test]
async fn desktops_are_filtered_by_tags_pools_policies_and_users() {
    let emu = emulator().await;
    let ids: Vec<String> = emu.world().state().ecd[REGION]
        .desktops
        .iter()
        .take(4)
        .map(|d| d.desktop_id.clone())
        .collect();
    emu.world().update_state(|s| {
        for (i, d) in s.ecd.get_mut(REGION).unwrap().desktops.iter_mut().take(4).enumerate() {
            d.tags = vec![ecd::Tag {
                key: "team".into(),
                value: if i < 2 { "finance" } else { "dev" }.into(),
            }];
            d.desktop_group_id = if i % 2 == 0 { "dg-a".into() } else { String::new() };
            d.policy_group_id = format!("pg-{}", i % 2);
            d.end_user_ids = vec![format!("user{i}")];
        }
    });
    let c = client(&emu, BOTH[0]);
    let raw = |params: &[(&str, &str)]| {
        let mut req = alicloud_ops_operator::cloud::request::RpcRequest::new(
            alicloud_ops_operator::cloud::endpoint::Product::Ecd,
            "DescribeDesktops",
            REGION,
        )
        .query("RegionId", REGION)
        .query("MaxResults", "100");
        for (k, v) in params {
            req = req.query(k, *v);
        }
        req
    };
    let ids_of = |v: serde_json::Value| -> Vec<String> {
        v["Desktops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["DesktopId"].as_str().unwrap().to_string())
            .collect()
    };
    let finance = c
        .call(&raw(&[("Tag.1.Key", "team"), ("Tag.1.Value", "finance")]))
        .await
        .unwrap();
    assert_eq!(ids_of(finance), ids[..2]);
    let pool = c.call(&raw(&[("DesktopGroupId", "dg-a")])).await.unwrap();
    assert_eq!(ids_of(pool), [ids[0].clone(), ids[2].clone()]);
    let both = c
        .call(&raw(&[
            ("DesktopGroupId", "dg-a"),
            ("Tag.1.Key", "team"),
            ("Tag.1.Value", "dev"),
        ]))
        .await
        .unwrap();
    assert_eq!(ids_of(both), [ids[2].clone()]);
    let policy = c.call(&raw(&[("PolicyGroupId", "pg-1")])).await.unwrap();
    assert_eq!(ids_of(policy), [ids[1].clone(), ids[3].clone()]);
    let users = c
        .call(&raw(&[("EndUserId.1", "user3"), ("EndUserId.2", "user0")]))
        .await
        .unwrap();
    assert_eq!(ids_of(users), [ids[0].clone(), ids[3].clone()]);
}

#[tokio::test]
async fn only_a_published_console_message_is_sent() {
    let emu = emulator().await;
    emu.world().update_state(|s| {
        for (id, status) in [("msg-published", "Published"), ("msg-draft", "Init")] {
            s.console_messages.push(ConsoleMessage {
                message_id: id.into(),
                status: status.into(),
                message_type: "NOTIFICATION".into(),
                target_type: "Tag".into(),
            });
        }
    });
    let c = client(&emu, BOTH[1]);
    assert!(ecd::send_console_message(&c, REGION, "msg-published").await.unwrap());
    let draft = ecd::send_console_message(&c, REGION, "msg-draft").await.unwrap_err();
    assert!(draft.to_string().contains("InvalidMessageStatus"), "{draft}");
    let unknown = ecd::send_console_message(&c, REGION, "msg-nope").await.unwrap_err();
    assert!(unknown.to_string().contains("InvalidMessageId.NotFound"), "{unknown}");
    let sent = emu.world().state().console_messages_sent;
    assert_eq!(
        sent.iter().map(|m| m.message_id.as_str()).collect::<Vec<_>>(),
        ["msg-published"]
    );
}
