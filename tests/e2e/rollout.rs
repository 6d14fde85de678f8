//! UpdateRollout, as a user runs it: a canary promoted by hand, the next wave after it, a
//! failure that stops the rollout, and a resume; kubectl shows the phase and progress, and
//! Events tell the story.

use super::*;
use alicloud_ops_operator::api::rollout::UpdateRollout;

/// `kubectl alicloud-ops ARGS` (the binary itself; `install.rs` shows it runs as the plugin).
fn plugin(args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_alicloud-ops-operator"))
        .args(args)
        .env("KUBECONFIG", &cluster().kubeconfig)
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The groups the emulator approved, in order.
fn approvals(emu: &Emulator) -> Vec<String> {
    emu.world()
        .request_log()
        .into_iter()
        .filter(|r| r.action == "ApproveOtaTask" && r.code == "success")
        .map(|r| r.params["AppInstanceGroupId"].clone())
        .collect()
}

async fn events_of(client: &Client, ns: &str, name: &str) -> Vec<(String, String)> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = events.list(&Default::default()).await.unwrap();
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_goes_wave_by_wave_stops_on_a_failure_and_resumes() {
    let Scene { client, ns, emu } = Scene::new("rollout").await;
    // The broad ring's upgrade fails.
    emu.world().update_state(|s| {
        s.appstream.app_instance_groups[2].upgrade_outcomes = vec!["FAILED".into()];
    });
    let _op = operator(&ns, &emu);
    create::<UpdateRollout>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "UpdateRollout", "metadata": {"name": "rings"},
               "spec": {"ota": {"bizRegionId": "cn-hangzhou"}, "startDelay": "0s",
                        "waves": [
                            {"name": "canary", "selector": {"tags": {"ring": "canary"}}, "promotion": "Manual"},
                            {"name": "early", "selector": {"tags": {"ring": "early"}}},
                            {"name": "broad", "selector": {"appInstanceGroupIds": ["aig-hz0003"]}}]}}),
    )
    .await;
    let status = wait_reason::<UpdateRollout>(&client, &ns, "rings", "WaitingForPromotion").await;
    assert_eq!(approvals(&emu), ["aig-hz0001"], "only the canary before the promotion");
    assert_eq!(status["pinnedVersion"], "1.5.0-R-20261115.100000");
    assert_eq!(status["progress"], "1/3");
    // kubectl get shows the phase, the wave and the progress.
    let table = kubectl_run(&["get", "updaterollouts", "-n", &ns]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row[..6],
        [
            "rings",
            "False",
            "WaitingForPromotion",
            "canary",
            "1.5.0-R-20261115.100000",
            "1/3"
        ],
        "{table}"
    );
    let (code, out) = plugin(&["promote", "rings", "-n", &ns]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("wave canary promoted; the next wave starts now"), "{out}");

    let status = wait_reason::<UpdateRollout>(&client, &ns, "rings", "PausedByFailures").await;
    assert_eq!(approvals(&emu), ["aig-hz0001", "aig-hz0002", "aig-hz0003"]);
    assert_eq!(status["failures"][0]["target"], "aig-hz0003", "{status}");
    assert!(
        status["failures"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("MAINTAIN_FAILED"),
        "{status}"
    );
    let paused = warning_about(&client, &ns, "rings", "more than maxFailures allows").await;
    assert_eq!(paused.reason.as_deref(), Some("WavePaused"));
    let (code, out) = plugin(&["pause", "rings", "-n", &ns]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = plugin(&["resume", "rings", "-n", &ns]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("the 1 failure(s) so far are accepted"), "{out}");
    let status = wait_reason::<UpdateRollout>(&client, &ns, "rings", "Completed").await;
    assert_eq!(status["progress"], "2/3");
    assert_eq!(status["waves"][2]["acceptedFailures"], 1, "{status}");
    assert_eq!(approvals(&emu).len(), 3, "each group approved once");

    // Events of one reason form one series (kube-runtime's Recorder keeps its first note);
    // status.waves and status.failures hold every wave and group.
    let events = events_of(&client, &ns, "rings").await;
    for (reason, words) in [
        ("WaveStarted", "wave canary started"),
        ("WaveSucceeded", "wave canary is done"),
        ("WavePromoted", "wave canary promoted"),
        ("WavePaused", "wave broad has 1 failed group(s) of 1"),
        ("TargetFailed", "aig-hz0003 (wave broad)"),
        ("Approved", "ApproveOtaTask aig-hz0001"),
    ] {
        assert!(
            events.iter().any(|(r, n)| r == reason && n.contains(words)),
            "no {reason} Event saying {words:?}: {events:?}"
        );
    }
}

/// An OtaSchedule and an UpdateRollout of one group: the older acts, across kinds, as
/// between two OtaSchedules; the rollout leaves the group to the schedule and says so.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_leaves_a_group_to_an_older_schedule() {
    let Scene { client, ns, emu } = Scene::new("rollout-rival").await;
    let _op = operator(&ns, &emu);
    create::<OtaSchedule>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "OtaSchedule", "metadata": {"name": "s"},
               "spec": {"bizRegionId": "cn-hangzhou", "appInstanceGroupId": "aig-hz0001",
                        "startTime": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()}}),
    )
    .await;
    wait_reason::<OtaSchedule>(&client, &ns, "s", "Approved").await;
    create::<UpdateRollout>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "UpdateRollout", "metadata": {"name": "r"},
               "spec": {"ota": {"bizRegionId": "cn-hangzhou"}, "startDelay": "0s",
                        "waves": [{"name": "canary", "selector": {"tags": {"ring": "canary"}}},
                                  {"name": "early", "selector": {"tags": {"ring": "early"}}}]}}),
    )
    .await;
    let status = wait_reason::<UpdateRollout>(&client, &ns, "r", "Completed").await;
    assert_eq!(status["conflicts"], json!([format!("OtaSchedule {ns}/s")]), "{status}");
    assert_eq!(
        status["waves"][0]["targets"], 0,
        "aig-hz0001 is the schedule's: {status}"
    );
    assert_eq!(approvals(&emu), ["aig-hz0001", "aig-hz0002"]);
}

/// A FOTA rollout, as a platform team runs one: the image-update task is held Pending, the
/// free computers go in waves, the one alice works on waits until she leaves, and a
/// FotaTaskPolicy created later to push every task leaves the rollout's task to it.
#[tokio::test(flavor = "multi_thread")]
async fn a_fota_rollout_waits_for_people_and_keeps_its_task_from_a_younger_policy() {
    let Scene { client, ns, emu } = Scene::new("rollout-fota").await;
    let edit = |id: &'static str, f: fn(&mut alicloud_ops_operator::cloud::ops::ecd::Desktop)| {
        emu.world().update_state(|s| {
            let desktops = &mut s.ecd.get_mut("cn-hangzhou").unwrap().desktops;
            f(desktops.iter_mut().find(|d| d.desktop_id == id).unwrap());
        })
    };
    edit("ecd-hz10013", |d| {
        d.sessions.push(alicloud_ops_operator::cloud::ops::ecd::DesktopSession {
            end_user_id: "alice".into(),
            establishment_time: "2026-12-01T08:00Z".into(),
            external_user_name: String::new(),
        })
    });
    let task_status = |uid: &str| {
        let state = emu.world().state();
        let t = state.ecd["cn-hangzhou"]
            .fota_tasks
            .iter()
            .find(|t| t.task_uid == uid)
            .cloned();
        t.unwrap().status
    };
    let fota_approvals = || -> Vec<String> {
        emu.world()
            .request_log()
            .into_iter()
            .filter(|r| r.action == "ApproveFotaUpdate" && r.code == "success")
            .map(|r| r.params["DesktopId"].clone())
            .collect()
    };
    assert_eq!(task_status("aot-hz0001"), "Running", "the task starts pushed");
    let _op = operator(&ns, &emu);
    create::<UpdateRollout>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "UpdateRollout", "metadata": {"name": "images"},
               "spec": {"fota": {"regionId": "cn-hangzhou", "appVersion": "2.1.0-R-20261101.120000",
                                 "drain": {"policy": "SkipBusy", "retryEvery": "10s"}},
                        "waves": [
                            {"name": "canary", "selector": {"desktopIds": ["ecd-hz10011"]}},
                            {"name": "rest", "selector": {"desktopIds": ["ecd-hz10012", "ecd-hz10013", "ecd-hz10014"]}, "maxUnavailable": 2}]}}),
    )
    .await;
    let busy = eventually_all(
        "the free computers approved, ecd-hz10013 waiting for alice",
        WAIT,
        || async {
            let (_, reason, status) = ready::<UpdateRollout>(&client, &ns, "images")
                .await
                .ok_or("no status of the current generation")?;
            let approved = fota_approvals();
            if approved.len() < 3 || status["waves"][1]["busy"] != 1 || reason != "Progressing" {
                return Err(format!("{reason}, approved {approved:?}, waves {}", status["waves"]));
            }
            Ok(status)
        },
    )
    .await;
    assert_eq!(fota_approvals(), ["ecd-hz10011", "ecd-hz10012", "ecd-hz10014"]);
    assert_eq!(busy["fotaTaskUid"], "aot-hz0001", "{busy}");
    assert_eq!(task_status("aot-hz0001"), "Pending", "held while the rollout runs");

    create::<FotaTaskPolicy>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "FotaTaskPolicy", "metadata": {"name": "push-all"},
               "spec": {"regionId": "cn-hangzhou", "autoPush": true}}),
    )
    .await;
    let policy = wait_reason::<FotaTaskPolicy>(&client, &ns, "push-all", "Conflict").await;
    assert_eq!(
        policy["conflicts"],
        json!([format!("UpdateRollout {ns}/images (task aot-hz0001)")]),
        "{policy}"
    );
    assert_eq!(
        task_status("aot-hz0002"),
        "Running",
        "the policy pushes the other tasks"
    );
    assert_eq!(task_status("aot-hz0001"), "Pending", "and leaves the rollout's to it");

    edit("ecd-hz10013", |d| d.sessions.clear());
    let done = wait_reason::<UpdateRollout>(&client, &ns, "images", "Completed").await;
    assert_eq!(done["progress"], "4/4", "{done}");
    let mut sent = fota_approvals();
    sent.sort();
    assert_eq!(
        sent,
        ["ecd-hz10011", "ecd-hz10012", "ecd-hz10013", "ecd-hz10014"],
        "each once"
    );
    let events = events_of(&client, &ns, "images").await;
    for (reason, words) in [
        ("AutoPushCleared", "UpdateFotaTask aot-hz0001 UserStatus=Pending"),
        (
            "Approved",
            "ApproveFotaUpdate ecd-hz10011 AppVersion=2.1.0-R-20261101.120000",
        ),
        ("WaveStarted", "wave canary started (1 computer(s))"),
    ] {
        assert!(
            events.iter().any(|(r, n)| r == reason && n.contains(words)),
            "no {reason} Event saying {words:?}: {events:?}"
        );
    }
}
