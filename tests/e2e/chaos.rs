//! Every promise at once, under faults, crashes and lost answers.

use super::*;

type Span = (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>);

/// A rollout's two waves, each target's span from its approval to the end of its update: no
/// broad target approved before every canary was done, and never more of a wave approved and
/// not done at once than its maxUnavailable (1 and 2 here).
fn in_order_within_budget(target: &str, canary: &[Span], broad: &[Span]) {
    let canary_done = canary.iter().map(|(_, end)| *end).max().unwrap();
    for (approved, _) in broad {
        assert!(
            *approved >= canary_done,
            "a broad {target} was approved at {approved}, before the canary was done at {canary_done}"
        );
    }
    for (wave, list, budget) in [("canary", canary, 1), ("broad", broad, 2)] {
        for (t, _) in list {
            let at_once = list.iter().filter(|(a, b)| a <= t && t < b).count();
            assert!(
                at_once <= budget,
                "{at_once} {target}(s) of wave {wave} approved and not done at {t}: {list:?}"
            );
        }
    }
}

/// The storm: 103 resources of all five kinds against a cloud that fails 30 % of calls,
/// throttles in a burst and loses the answers of writes it applied, while the operator is
/// SIGKILLed every 20 s (two replicas with leader election first, then one at a time), a
/// maintenance window opens and closes, and ten windows lose their status while it is open. The emulator's own log and state then show that
/// every promise held.
#[tokio::test(flavor = "multi_thread")]
async fn chaos_every_promise_holds_under_faults_crashes_and_lost_answers() {
    use alicloud_ops_operator::emulator::state::DeliveryGroup;
    use alicloud_ops_operator::emulator::{CloudState, DEFAULT_ACCESS_KEY_SECRET};
    let client = admin().await;
    let ns = namespace(&client, "chaos").await;
    // A second RAM user of the same account, for a key rotated mid-window.
    let rotated = ("LTAI5tChaosRotatedKey", "chaos-rotated-key-secret");
    let emu = emulator_with_keys(CloudState::default_dataset(), &[ExtraKey(rotated.0, rotated.1, None)]).await;
    under_project_policy(&emu, "operator.json");
    emu.world()
        .attach_policy(rotated.0, Some(support::project_policy("operator.json")));
    secret(&client, &ns, "chaos-key-a", DEFAULT_ACCESS_KEY_SECRET).await;
    let started = std::time::Instant::now();
    let (fotas, groups, windows, images) = (25usize, 20usize, 50usize, 6usize);
    // An UpdateRollout over six groups: two canaries one at a time, then four broad two at a
    // time, each upgrade taking 3 s; one broad failure is within maxFailures.
    let rollout_rings = ["rx-canary", "rx-canary", "rx-broad", "rx-broad", "rx-broad", "rx-broad"];
    const ROLLOUT_UPGRADE: chrono::Duration = chrono::Duration::seconds(3);
    // A FOTA rollout over six computers of site 3 (the windows use site 2): two canaries one
    // at a time, then four two at a time, each update taking 3 s, one ending Failed (within
    // maxFailures); alice works on ecd-hz30004 until 50 s in. Its task is its own (the
    // policies flip the others) and starts pushed.
    let fota_desks: Vec<String> = (1..=6).map(|n| format!("ecd-hz3{n:04}")).collect();
    const FOTA_VERSION: &str = "3.0.0-R-20261201.120000";
    let alice_leaves = chrono::Utc::now() + chrono::Duration::seconds(50);
    // Windows whose key is rotated mid-window (a new Secret name, the old one pruned).
    let rotating = 10..20usize;
    emu.world().update_state(|s| {
        let hz = s.ecd.get_mut("cn-hangzhou").unwrap();
        let template = hz.fota_tasks[1].clone();
        for i in 1..=fotas - 3 {
            let mut t = template.clone();
            t.task_uid = format!("aot-cx{i:04}");
            t.status = if i % 2 == 0 { "Running" } else { "Pending" }.into();
            hz.fota_tasks.push(t);
        }
        let swas = s.swas.get_mut("cn-hangzhou").unwrap();
        let template = swas.custom_images[0].clone();
        for i in 1..=images {
            let mut img = template.clone();
            img.image_id = format!("m-cx{i:04}");
            img.in_share = i % 2 == 0;
            swas.custom_images.push(img);
        }
        let template: DeliveryGroup = s.appstream.app_instance_groups[0].clone();
        for i in 1..=groups {
            let mut g = template.clone();
            g.group.app_instance_group_id = format!("aig-cx{i:04}");
            g.group.ota_info.task_id = format!("ota-cx{i:04}-1");
            s.appstream.app_instance_groups.push(g);
        }
        hz.fota_update_seconds = ROLLOUT_UPGRADE.num_seconds();
        hz.fota_failures = vec![fota_desks[4].clone()];
        let d = hz.desktops.iter_mut().find(|d| d.desktop_id == fota_desks[3]).unwrap();
        d.sessions.push(alicloud_ops_operator::cloud::ops::ecd::DesktopSession {
            end_user_id: "alice".into(),
            establishment_time: "2026-12-01T08:00Z".into(),
            external_user_name: String::new(),
        });
        hz.session_events
            .push(alicloud_ops_operator::emulator::state::SessionEvent {
                at: alice_leaves,
                desktop_id: fota_desks[3].clone(),
                end_user_id: "alice".into(),
                action: alicloud_ops_operator::emulator::state::SessionAction::Disconnect,
            });
        // The rollout's groups: a canary ring and a broad one; one broad upgrade fails.
        for (i, ring) in rollout_rings.iter().enumerate() {
            let mut g = template.clone();
            g.group.app_instance_group_id = format!("aig-rx{:04}", i + 1);
            g.group.ota_info.task_id = format!("ota-rx{:04}-1", i + 1);
            g.group.tags[0].value = ring.to_string();
            g.upgrade_duration_seconds = ROLLOUT_UPGRADE.num_seconds();
            if i == 4 {
                g.upgrade_outcomes = vec!["FAILED".into()];
            }
            s.appstream.app_instance_groups.push(g);
        }
    });
    let tasks: Vec<(String, String)> = emu.world().state().ecd["cn-hangzhou"]
        .fota_tasks
        .iter()
        .map(|t| (t.task_uid.clone(), t.status.clone()))
        .collect();
    emu.world().update_state(|s| {
        let hz = s.ecd.get_mut("cn-hangzhou").unwrap();
        let mut t = hz.fota_tasks[0].clone();
        t.task_uid = "aot-rx0001".into();
        t.app_version = FOTA_VERSION.into();
        t.status = "Running".into();
        hz.fota_tasks.push(t);
    });
    let now = chrono::Utc::now();
    let (open, close) = (now + chrono::Duration::seconds(25), now + chrono::Duration::seconds(70));
    let mut creations: Vec<(&str, Value)> = Vec::new();
    for (i, (uid, status)) in tasks.iter().enumerate() {
        // Each policy flips its task.
        creations.push((
            "FotaTaskPolicy",
            json!({"metadata": {"name": format!("f{i}")},
            "spec": {"regionId": "cn-hangzhou", "autoPush": status == "Pending", "taskUids": [uid]}}),
        ));
    }
    for i in 1..=groups {
        creations.push((
            "OtaSchedule",
            json!({"metadata": {"name": format!("o{i}")},
            "spec": {"bizRegionId": "cn-hangzhou", "appInstanceGroupId": format!("aig-cx{i:04}"),
                     "startTime": (now + chrono::Duration::hours(1)).to_rfc3339()}}),
        ));
    }
    creations.push((
        "UpdateRollout",
        json!({"metadata": {"name": "r1"},
        "spec": {"ota": {"bizRegionId": "cn-hangzhou"}, "startDelay": "0s",
                 "waves": [{"name": "canary", "selector": {"tags": {"ring": "rx-canary"}}, "maxUnavailable": 1},
                           {"name": "broad", "selector": {"tags": {"ring": "rx-broad"}}, "maxUnavailable": 2}],
                 "failurePolicy": {"maxFailures": 1}}}),
    ));
    creations.push((
        "UpdateRollout",
        json!({"metadata": {"name": "r2"},
        "spec": {"fota": {"regionId": "cn-hangzhou", "appVersion": FOTA_VERSION},
                 "waves": [{"name": "canary", "selector": {"desktopIds": &fota_desks[..2]}, "maxUnavailable": 1},
                           {"name": "broad", "selector": {"desktopIds": &fota_desks[2..]}, "maxUnavailable": 2}],
                 "failurePolicy": {"maxFailures": 1}}}),
    ));
    let desk = |n: usize| format!("ecd-hz2{n:04}");
    for w in 0..windows {
        let mut body = json!({"metadata": {"name": format!("w{w}")},
            "spec": {"regionId": "cn-hangzhou", "desktopIds": [desk(2 * w + 1), desk(2 * w + 2)],
                     "window": {"start": open.to_rfc3339(), "end": close.to_rfc3339()}}});
        if rotating.contains(&w) {
            body["spec"]["credentialsRef"] = json!({"name": "chaos-key-a"});
        }
        creations.push(("DesktopMaintenanceWindow", body));
    }
    for i in 1..=images {
        let shared = i % 2 == 1;
        creations.push((
            "ImageShare",
            json!({"metadata": {"name": format!("i{i}")},
            "spec": {"regionId": "cn-hangzhou", "imageId": format!("m-cx{i:04}"), "shared": shared,
                     "deletionPolicy": if i <= 2 { "UnShare" } else { "Retain" }}}),
        ));
    }
    assert!(creations.len() >= 100);
    for (kind, mut body) in creations.clone() {
        body["apiVersion"] = json!("ops.alicloud.dev/v1alpha1");
        body["kind"] = json!(kind);
        let obj: kube::api::DynamicObject = serde_json::from_value(body).unwrap();
        ours(&client, &ns, kind)
            .create(&PostParams::default(), &obj)
            .await
            .unwrap();
    }

    // The weather: lost answers on every write, 30 % unavailable, a throttling burst.
    let lose_answers = || {
        for action in [
            "SetDesktopMaintenance",
            "ModifyImageShareStatus",
            "ApproveOtaTask",
            "UpdateFotaTask",
            "ApproveFotaUpdate",
        ] {
            emu.world()
                .add_fault(fault(
                    json!({"action": action, "code": "ServiceUnavailable", "afterApply": true, "probability": 0.3}),
                ))
                .unwrap();
        }
    };
    lose_answers();
    emu.world()
        .add_fault(fault(
            json!({"action": "*", "code": "ServiceUnavailable", "probability": 0.3}),
        ))
        .unwrap();
    emu.world()
        .add_fault(fault(json!({"action": "*", "throttle": true, "count": 60})))
        .unwrap();

    // Two replicas with leader election, the leader killed at 20 s and the other at 40 s;
    // then one replica at a time, killed every 20 s.
    let lease = format!("lease-{ns}");
    let mut logs = Vec::new();
    let mut pair = vec![
        Operator::start(&ns, &emu.url(), &lease),
        Operator::start(&ns, &emu.url(), &lease),
    ];
    for mut op in pair.drain(..) {
        tokio::time::sleep(Duration::from_secs(20)).await;
        op.crash();
        logs.push(op.logs());
    }
    for round in 0..2 {
        let mut op = Operator::start_with(&ns, &emu.url(), &lease, &["--leader-election", "false"]);
        tokio::time::sleep(Duration::from_secs(20)).await;
        op.crash();
        logs.push(op.logs());
        if round == 0 {
            // 60 s in, the window open since 25 s and closing at 70 s: ten windows lose
            // their status (a restore without status, a replace of the status subresource)
            // and must take their desktops back and exit them at the end.
            let windows_api = Api::<DesktopMaintenanceWindow>::namespaced(client.clone(), &ns);
            for w in 0..10 {
                windows_api
                    .patch_status(
                        &format!("w{w}"),
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": null})),
                    )
                    .await
                    .unwrap();
            }
            // And ten rotate their key to another RAM user of the account, the old Secret
            // pruned at once: nothing may be exited early, or stranded.
            let b: Secret = serde_json::from_value(json!({"metadata": {"name": "chaos-key-b",
                "labels": {"ops.alicloud.dev/credentials": "true"}},
                "stringData": {"accessKeyId": rotated.0, "accessKeySecret": rotated.1}}))
            .unwrap();
            let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
            secrets.create(&PostParams::default(), &b).await.unwrap();
            for w in rotating.clone() {
                patch_spec::<DesktopMaintenanceWindow>(
                    &client,
                    &ns,
                    &format!("w{w}"),
                    json!({"credentialsRef": {"name": "chaos-key-b"}}),
                )
                .await;
            }
            secrets.delete("chaos-key-a", &DeleteParams::default()).await.unwrap();
        }
        if round == 1 {
            // The storm passes; lost answers on writes stay to the end.
            emu.world().clear_faults();
            lose_answers();
        }
    }
    let op = Operator::start_with(&ns, &emu.url(), &lease, &["--leader-election", "false"]);

    // Converged: every version approved, the window over, tasks and images as specified.
    let state = || emu.world().state();
    eventually_all("converged after the storm", Duration::from_secs(90), || async {
        let s = state();
        let mut unmet = Vec::new();
        let unapproved: Vec<&str> = s
            .appstream
            .app_instance_groups
            .iter()
            .filter(|g| g.group.app_instance_group_id.starts_with("aig-cx") && g.scheduled_upgrade.is_none())
            .map(|g| g.group.app_instance_group_id.as_str())
            .collect();
        if !unapproved.is_empty() {
            unmet.push(format!("OTA not approved for {unapproved:?}"));
        }
        let not_rolled: Vec<&str> = s
            .appstream
            .app_instance_groups
            .iter()
            .filter(|g| g.group.app_instance_group_id.starts_with("aig-rx") && g.ota_tasks.is_empty())
            .map(|g| g.group.app_instance_group_id.as_str())
            .collect();
        if !not_rolled.is_empty() {
            unmet.push(format!("the rollout has not approved {not_rolled:?}"));
        }
        let hz = &s.ecd["cn-hangzhou"];
        let not_updated: Vec<&String> = fota_desks
            .iter()
            .filter(|id| *id != &fota_desks[4] && hz.app_version(id) != FOTA_VERSION)
            .collect();
        if !not_updated.is_empty() {
            unmet.push(format!("the FOTA rollout has not updated {not_updated:?}"));
        }
        if chrono::Utc::now() <= close {
            unmet.push("the window has not closed yet".into());
        }
        let held: Vec<String> = (1..=2 * windows)
            .map(desk)
            .filter(|id| {
                s.ecd["cn-hangzhou"]
                    .desktops
                    .iter()
                    .any(|d| &d.desktop_id == id && d.in_maintenance())
            })
            .collect();
        if !held.is_empty() {
            unmet.push(format!("desktops still in maintenance: {held:?}"));
        }
        let unflipped: Vec<&str> = tasks
            .iter()
            .filter(|(uid, before)| {
                !s.ecd["cn-hangzhou"]
                    .fota_tasks
                    .iter()
                    .any(|t| &t.task_uid == uid && &t.status != before)
            })
            .map(|(uid, _)| uid.as_str())
            .collect();
        if !unflipped.is_empty() {
            unmet.push(format!("FOTA tasks not flipped: {unflipped:?}"));
        }
        let wrong_images: Vec<String> = (1..=images)
            .map(|i| format!("m-cx{i:04}"))
            .filter(|id| {
                let want = id.ends_with(|c: char| c.to_digit(10).is_some_and(|d| d % 2 == 1));
                !s.swas["cn-hangzhou"]
                    .custom_images
                    .iter()
                    .any(|img| &img.image_id == id && img.in_share == want)
            })
            .collect();
        if !wrong_images.is_empty() {
            unmet.push(format!("images not as specified: {wrong_images:?}"));
        }
        if unmet.is_empty() {
            return Ok(());
        }
        // Say what the operator thinks of the resources behind what is not met.
        let mut not_ready = Vec::new();
        for kind in registry::names() {
            not_ready.extend(not_ready_of(&client, &ns, kind.kind).await);
        }
        Err(format!("{}; resources not Ready: {not_ready:?}", unmet.join("; ")))
    })
    .await;

    // Each OTA version approved exactly once: count the approvals the cloud applied.
    let log = emu.world().request_log();
    assert!(
        (log.len() as u64) < emu.world().counters().total + 1
            && log.len() < alicloud_ops_operator::emulator::REQUEST_LOG_CAPACITY,
        "the whole run is in the log"
    );
    for i in 1..=groups {
        let id = format!("aig-cx{i:04}");
        let applied = log
            .iter()
            .filter(|r| r.action == "ApproveOtaTask" && r.params.get("AppInstanceGroupId") == Some(&id))
            .filter(|r| r.code == "success" || r.answer_lost)
            .count();
        assert_eq!(applied, 1, "{id} approved {applied} times");
    }
    // The rollout: each group approved once, the broad wave only after every canary was
    // done, and never more of a wave approved and not done at once than its maxUnavailable.
    // A group counts from when the emulator applied its approval (its StartTime can be a
    // little earlier: whole seconds, with startDelay 0s) until its upgrade ended.
    let s = state();
    let upgrades = |ring: &str| -> Vec<Span> {
        s.appstream
            .app_instance_groups
            .iter()
            .filter(|g| g.group.app_instance_group_id.starts_with("aig-rx") && g.group.tags[0].value == ring)
            .flat_map(|g| {
                let id = &g.group.app_instance_group_id;
                let approved_at = log
                    .iter()
                    .find(|r| {
                        r.action == "ApproveOtaTask"
                            && r.params.get("AppInstanceGroupId") == Some(id)
                            && (r.code == "success" || r.answer_lost)
                    })
                    .map(|r| r.at);
                g.ota_tasks
                    .iter()
                    .map(move |t| (approved_at.unwrap(), t.task_start_time + ROLLOUT_UPGRADE))
            })
            .collect()
    };
    for i in 1..=rollout_rings.len() {
        let id = format!("aig-rx{i:04}");
        let applied = log
            .iter()
            .filter(|r| r.action == "ApproveOtaTask" && r.params.get("AppInstanceGroupId") == Some(&id))
            .filter(|r| r.code == "success" || r.answer_lost)
            .count();
        assert_eq!(applied, 1, "{id} approved {applied} times");
    }
    in_order_within_budget("group", &upgrades("rx-canary"), &upgrades("rx-broad"));
    // The FOTA rollout: each computer approved once, for the pinned version, never while
    // alice was connected (the cloud would refuse), the broad wave only after both canaries
    // were done, never more of a wave updating at once than its maxUnavailable, and its task
    // held Pending.
    let fota_at = |id: &String| -> Vec<chrono::DateTime<chrono::Utc>> {
        log.iter()
            .filter(|r| r.action == "ApproveFotaUpdate" && r.params.get("DesktopId") == Some(id))
            .filter(|r| r.code == "success" || r.answer_lost)
            .map(|r| r.at)
            .collect()
    };
    for id in &fota_desks {
        assert_eq!(fota_at(id).len(), 1, "{id} approved {:?}", fota_at(id));
    }
    let refused: Vec<&alicloud_ops_operator::emulator::RequestRecord> = log
        .iter()
        .filter(|r| r.action == "ApproveFotaUpdate" && r.code.starts_with("IncorrectDesktopStatus"))
        .collect();
    assert!(refused.is_empty(), "approvals the cloud refused: {refused:?}");
    assert!(
        fota_at(&fota_desks[3])[0] >= alice_leaves,
        "ecd-hz30004 approved while alice was connected"
    );
    assert!(
        log.iter()
            .filter(|r| r.action == "ApproveFotaUpdate")
            .all(|r| r.params["AppVersion"] == FOTA_VERSION)
    );
    let spans = |ids: &[String]| -> Vec<Span> {
        ids.iter()
            .map(|id| {
                let at = fota_at(id)[0];
                (at, at + ROLLOUT_UPGRADE)
            })
            .collect()
    };
    in_order_within_budget("computer", &spans(&fota_desks[..2]), &spans(&fota_desks[2..]));
    let rx_task = s.ecd["cn-hangzhou"]
        .fota_tasks
        .iter()
        .find(|t| t.task_uid == "aot-rx0001");
    assert_eq!(
        rx_task.map(|t| t.status.as_str()),
        Some("Pending"),
        "the rollout's task is held"
    );
    // The rotated windows' desktops left maintenance with the new key, at the end: a drain
    // with the old key would have exited them early (or, with its Secret gone, not at all).
    let rotated_desks: Vec<String> = rotating
        .clone()
        .flat_map(|w| [desk(2 * w + 1), desk(2 * w + 2)])
        .collect();
    let early_exits: Vec<&alicloud_ops_operator::emulator::RequestRecord> = log
        .iter()
        .filter(|r| r.action == "SetDesktopMaintenance" && r.params.get("Mode").map(String::as_str) == Some("EXIT"))
        .filter(|r| r.params.values().any(|v| rotated_desks.contains(v)))
        .filter(|r| r.access_key_id != rotated.0)
        .collect();
    assert!(early_exits.is_empty(), "exited with the old key: {early_exits:?}");
    // The window entered its desktops while it was open.
    let entered = log
        .iter()
        .filter(|r| r.action == "SetDesktopMaintenance" && r.params.get("Mode").map(String::as_str) == Some("ENTER"))
        .filter(|r| r.code == "success" || r.answer_lost)
        .count();
    assert!(entered > 0, "the window opened during the run");

    // Everything deleted: every finalizer released within 60 s.
    let deleted_at = std::time::Instant::now();
    for (kind, body) in &creations {
        let name = body["metadata"]["name"].as_str().unwrap();
        let dp = DeleteParams::default();
        ours(&client, &ns, kind).delete(name, &dp).await.unwrap();
    }
    eventually("every resource gone", Duration::from_secs(60), || async {
        let mut left = 0;
        for kind in registry::names() {
            left += ours(&client, &ns, kind.kind)
                .list(&Default::default())
                .await
                .ok()?
                .items
                .len();
        }
        (left == 0).then_some(())
    })
    .await;
    let release = deleted_at.elapsed();
    let s = state();
    for i in 1..=2 {
        let img = s.swas["cn-hangzhou"]
            .custom_images
            .iter()
            .find(|img| img.image_id == format!("m-cx{i:04}"))
            .unwrap();
        assert!(!img.in_share, "deletionPolicy UnShare: m-cx{i:04} unshared on deletion");
    }
    let in_maint = (1..=2 * windows)
        .filter(|n| {
            s.ecd["cn-hangzhou"]
                .desktops
                .iter()
                .any(|d| d.desktop_id == desk(*n) && d.in_maintenance())
        })
        .count();
    assert_eq!(in_maint, 0, "no desktop left in maintenance");
    logs.push(op.logs());
    for (n, l) in logs.iter().enumerate() {
        assert!(!l.contains("panicked"), "operator run {n} panicked:\n{l}");
    }
    println!(
        "chaos: {} resources, {} cloud requests ({} answers lost), finalizers released {:.1} s after the deletions, {:.0} s in all",
        creations.len(),
        log.len(),
        log.iter().filter(|r| r.answer_lost).count(),
        release.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
