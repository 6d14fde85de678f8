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
