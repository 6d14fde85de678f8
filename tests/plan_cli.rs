//! `plan` on good and bad manifests, against the emulator: it validates like the CRDs,
//! reads the cloud, writes nothing, and exits 0 / 2 / 1.

mod support;

use std::process::Command;

use alicloud_ops_operator::cli::cloud_args::CloudArgs;
use alicloud_ops_operator::cli::plan::{PlanArgs, PlanResult, run};
use clap::Parser;
use support::*;

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    plan: PlanArgs,
}

fn args(emu_url: &str, files: &[&str]) -> PlanArgs {
    let mut argv = vec![
        "plan".to_string(),
        "--offline".into(),
        "--endpoint".into(),
        emu_url.to_string(),
    ];
    for f in files {
        argv.push("-f".into());
        argv.push(f.to_string());
    }
    Wrapper::parse_from(argv).plan
}

/// `plan` with the emulator's default key under deploy/ram/read-only.json, the policy the
/// README gives plan; the key is under operator.json again afterwards, for the operator.
fn binary(emu: &alicloud_ops_operator::emulator::Emulator, extra: &[&str]) -> std::process::Output {
    under_project_policy(emu, "read-only.json");
    let out = with_emulator_key(&mut Command::new(env!("CARGO_BIN_EXE_alicloud-ops-operator")))
        .args(["plan", "--offline"])
        .args(["--endpoint", &emu.url()])
        .args(extra)
        .output()
        .unwrap();
    under_project_policy(emu, "operator.json");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn examples_show_pending_changes_and_exit_2_without_writing() {
    let emu = emulator().await;
    let out = binary(&emu, &["-f", "examples/"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("+ UpdateFotaTask aot-hz0002 UserStatus=Running"),
        "{stdout}"
    );
    // Without the live object, the uid in the ClientToken is unknown: no made-up token.
    assert!(
        stdout
            .contains("+ ModifyImageShareStatus Operation=Share ClientToken=(made from the uid the cluster gives it)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("uncertain: the live object was not read (--offline)"),
        "{stdout}"
    );
    assert!(stdout.contains("+ ApproveOtaTask TaskId=ota-hz0001-1"), "{stdout}");
    assert!(
        stdout.contains("OtaSchedule default/finance-apps-observe: InSync (UpToDate)"),
        "{stdout}"
    );
    let counters = emu.world().counters();
    for write in [
        "UpdateFotaTask",
        "SetDesktopMaintenance",
        "ModifyImageShareStatus",
        "ApproveOtaTask",
    ] {
        assert_eq!(counters.count(write), 0, "plan must not call {write}");
    }
    // N resources of a kind and region share one list.
    assert_eq!(counters.count("DescribeFotaTasks"), 2, "{counters:?}");
    assert_eq!(
        counters.count("DescribeDesktops"),
        4,
        "Hangzhou's 300 desktops in one paged list (3 pages) for the windows, and Shanghai's 20 for the FOTA rollout: {counters:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn in_sync_manifests_exit_0_and_json_output_parses() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("ok.yaml");
    std::fs::write(
        &f,
        "apiVersion: ops.alicloud.dev/v1alpha1\nkind: ImageShare\nmetadata: {name: s}\nspec: {regionId: cn-hangzhou, imageId: m-hz0001}\n",
    )
    .unwrap();
    let out = binary(&emu, &["-f", f.to_str().unwrap(), "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["resources"][0]["result"], "InSync");
    assert_eq!(json["resources"][0]["reason"], "InSync");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_manifests_name_every_field_and_exit_1() {
    let emu = emulator().await;
    let out = binary(&emu, &["-f", "tests/fixtures/plan/bad.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "ImageShare typo: spec.sharred: unknown field",
        "DesktopMaintenanceWindow both: spec: set exactly one of desktopIds or selector",
        "OtaSchedule bad-group: spec.appInstanceGroupId: Invalid value: \"group-1\"",
        "OtaSchedule bad-group: spec.otaType: Unsupported value: \"Aota\"",
        "apiVersion: \"ops.alicloud.dev/v1beta1\" is not served",
        "kind: \"ImageShares\" is not a kind of ops.alicloud.dev/v1alpha1",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
}

#[tokio::test]
async fn credentials_come_from_a_secret_in_the_input_and_others_are_skipped() {
    let emu = emulator().await;
    let report = run(&args(&emu.url(), &["tests/fixtures/plan/with-secret.yaml"]))
        .await
        .unwrap();
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    assert!(report.skipped[0].contains("ConfigMap unrelated"));
    let ok = report.resources.iter().find(|r| r.name == "shared-already").unwrap();
    assert_eq!(ok.result, PlanResult::InSync, "{ok:?}");
    assert!(
        ok.credentials.starts_with("Secret team-a/team-a-cloud from the input"),
        "{}",
        ok.credentials
    );
    let bad = report.resources.iter().find(|r| r.name == "wrong-key").unwrap();
    assert_eq!(
        (bad.result.as_str(), bad.reason.as_str()),
        ("Error", "CredentialsInvalid"),
        "{bad:?}"
    );
    assert!(!bad.message.contains("not-the-secret"), "secret values never show");
    assert_eq!(report.exit_code(), 1);
}

#[test]
fn cloud_args_exist_for_plan() {
    // The shared cloud flags parse for plan as for every command.
    let w = Wrapper::parse_from(["plan", "-f", "x", "--signature-version", "v2", "--cloud-qps", "5"]);
    let c: &CloudArgs = &w.plan.cloud;
    assert_eq!(c.cloud_qps, 5.0);
}

/// A spec the operator would mark `InvalidSpec` (here an unknown time zone, which admission
/// cannot catch) is an error in the plan, naming the field, and the plan exits 1.
#[tokio::test(flavor = "multi_thread")]
async fn a_spec_the_operator_would_call_invalid_is_an_error_in_the_plan() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.yaml");
    std::fs::write(
        &path,
        "apiVersion: ops.alicloud.dev/v1alpha1\nkind: DesktopMaintenanceWindow\nmetadata: {name: typo, namespace: default}\n\
         spec:\n  regionId: cn-hangzhou\n  desktopIds: [ecd-hz10001]\n  recurring: {cron: \"0 22 * * 6\", duration: 4h, timeZone: Asia/Shangai}\n",
    )
    .unwrap();
    let out = binary(&emu, &["-f", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("InvalidSpec") && stdout.contains("spec.recurring.timeZone"),
        "{stdout}"
    );
}

/// Two FotaTaskPolicies in one plan that disagree about a task: one wins, as in the
/// operator (by age there; by name here, since neither exists yet, and the plan says so).
#[tokio::test(flavor = "multi_thread")]
async fn two_policies_that_disagree_yield_one_winner_in_the_plan() {
    // One run would pass by luck if the winner were picked at random; three agree.
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two.yaml");
    std::fs::write(
        &path,
        "apiVersion: ops.alicloud.dev/v1alpha1\nkind: FotaTaskPolicy\nmetadata: {name: a-push, namespace: default}\n\
         spec: {regionId: cn-hangzhou, autoPush: true}\n---\n\
         apiVersion: ops.alicloud.dev/v1alpha1\nkind: FotaTaskPolicy\nmetadata: {name: b-hold, namespace: default}\n\
         spec: {regionId: cn-hangzhou, autoPush: false}\n",
    )
    .unwrap();
    for _ in 0..3 {
        let out = binary(&emu, &["-f", path.to_str().unwrap(), "-o", "json"]);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let reason = |name: &str| {
            let r = report["resources"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == name)
                .unwrap();
            (
                r["reason"].as_str().unwrap().to_string(),
                r["message"].as_str().unwrap().to_string(),
            )
        };
        let (a, b) = (reason("a-push"), reason("b-hold"));
        assert_ne!(a.0, "Conflict", "{a:?}");
        assert_eq!(b.0, "Conflict", "{b:?}");
        assert!(b.1.contains("decides by namespace/name"), "{}", b.1);
    }
}

/// `-o markdown`: a table GitHub renders, the same text for the same input (so a PR
/// comment diffs cleanly), with cells that cannot break the table.
#[tokio::test(flavor = "multi_thread")]
async fn markdown_output_is_a_stable_table_for_pull_requests() {
    let emu = emulator().await;
    let run_md = || binary(&emu, &["-f", "examples/", "-o", "markdown"]);
    let (first, second) = (run_md(), run_md());
    assert_eq!(first.status.code(), Some(2), "changes pending");
    let text = String::from_utf8_lossy(&first.stdout).into_owned();
    assert_eq!(text, String::from_utf8_lossy(&second.stdout), "stable output");
    assert!(text.starts_with("### alicloud-ops-operator plan\n"), "{text}");
    assert!(
        text.contains("| resource | result | reason | what the operator would do |\n|---|---|---|---|\n"),
        "{text}"
    );
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| resource"))
        .collect();
    assert_eq!(rows.len(), 9, "one row per example resource:\n{text}");
    for row in &rows {
        assert_eq!(row.matches(" | ").count(), 3, "four cells, no stray separators: {row}");
    }
    assert!(text.contains("`ApproveOtaTask"), "{text}");
}

/// Plans the UpdateRollout `manifest` with the binary against `h`'s emulator, then reconciles
/// it once in `h`: what plan announced for `action` (the target after it) and what the
/// operator then sent (`param` of each `action` call the emulator answered).
async fn predicted_and_sent(
    h: &support::memory::Harness,
    manifest: serde_json::Value,
    action: &str,
    param: &str,
) -> (Vec<String>, Vec<String>, String) {
    use alicloud_ops_operator::api::rollout::UpdateRollout;
    use alicloud_ops_operator::controller::kind::Stage;
    use support::memory::{log_of, named};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rollout.yaml");
    std::fs::write(&file, serde_yaml::to_string(&manifest).unwrap()).unwrap();
    let out = binary(&h.emu, &["-f", file.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    let prefix = format!("+ {action} ");
    let predicted: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .map(|rest| rest.split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(h.writes(action), 0, "plan writes nothing");
    let name = manifest["metadata"]["name"].as_str().unwrap();
    let mut r: UpdateRollout = named(
        UpdateRollout::new(name, serde_json::from_value(manifest["spec"].clone()).unwrap()),
        name,
    );
    h.step(&mut r, h.emu.world().clock.now(), Stage::Apply).await;
    let sent = log_of(h, action).into_iter().map(|a| a.params[param].clone()).collect();
    (predicted, sent, stdout)
}

/// `plan` names exactly the approvals an UpdateRollout makes next: the operator, run on the
/// same manifest against the same cloud, approves the same groups and no other.
#[tokio::test(flavor = "multi_thread")]
async fn plan_predicts_a_rollouts_next_approvals_exactly() {
    let h = support::memory::Harness::new().await;
    h.emu.world().update_state(|s| {
        for g in &mut s.appstream.app_instance_groups {
            g.upgrade_duration_seconds = 600;
        }
    });
    let manifest = serde_json::json!({
        "apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "UpdateRollout",
        "metadata": {"name": "r", "namespace": "default"},
        "spec": {"ota": {"bizRegionId": "cn-hangzhou"}, "startDelay": "0s",
                 "waves": [{"name": "all", "selector": {"appInstanceGroupIds": ["aig-hz0001", "aig-hz0002", "aig-hz0003"]}, "maxUnavailable": 2},
                           {"name": "rest", "selector": {"tags": {"ring": "broad"}}}]}});
    let (predicted, approved, stdout) = predicted_and_sent(&h, manifest, "ApproveOtaTask", "AppInstanceGroupId").await;
    assert_eq!(predicted, ["aig-hz0001", "aig-hz0002"], "{stdout}");
    assert_eq!(approved, predicted, "the operator does what plan said");
}

/// The same for a FOTA rollout: `plan` names the computers approved next (the free ones,
/// within the budget), and the operator approves exactly those.
#[tokio::test(flavor = "multi_thread")]
async fn plan_predicts_a_fota_rollouts_next_approvals_exactly() {
    let h = support::memory::Harness::new().await;
    h.emu.world().update_state(|s| {
        let r = s.ecd.get_mut("cn-hangzhou").unwrap();
        r.fota_update_seconds = 900;
        let d = r.desktops.iter_mut().find(|d| d.desktop_id == "ecd-hz10012").unwrap();
        d.sessions.push(alicloud_ops_operator::cloud::ops::ecd::DesktopSession {
            end_user_id: "alice".into(),
            establishment_time: "2026-12-01T08:00Z".into(),
            external_user_name: String::new(),
        });
    });
    let manifest = serde_json::json!({
        "apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "UpdateRollout",
        "metadata": {"name": "f", "namespace": "default"},
        "spec": {"fota": {"regionId": "cn-hangzhou"},
                 "waves": [{"name": "all", "selector": {"desktopIds": ["ecd-hz10011", "ecd-hz10012", "ecd-hz10013", "ecd-hz10014"]}, "maxUnavailable": 2}]}});
    let (predicted, approved, stdout) = predicted_and_sent(&h, manifest, "ApproveFotaUpdate", "DesktopId").await;
    assert_eq!(predicted, ["ecd-hz10011", "ecd-hz10013"], "{stdout}");
    assert_eq!(approved, predicted, "the operator does what plan said");
}

/// An OtaSchedule and an UpdateRollout that approve one delivery group in one account
/// conflict as two OtaSchedules do: the older acts (here, with no creation times, the kind
/// and name decide, the same way every time), and the other leaves the group alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_schedule_and_a_rollout_of_one_group_conflict_across_kinds() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let rollout = serde_json::json!({
        "apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "UpdateRollout",
        "metadata": {"name": "r", "namespace": "default"},
        "spec": {"ota": {"bizRegionId": "cn-hangzhou"}, "startDelay": "0s",
                 "waves": [{"name": "all", "selector": {"appInstanceGroupIds": ["aig-hz0001", "aig-hz0002"]}, "maxUnavailable": 2}]}});
    let schedule = serde_json::json!({
        "apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "OtaSchedule",
        "metadata": {"name": "s", "namespace": "default"},
        "spec": {"bizRegionId": "cn-hangzhou", "appInstanceGroupId": "aig-hz0001",
                 "startTime": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()}});
    let write = |name: &str, docs: &[&serde_json::Value]| {
        let file = dir.path().join(name);
        let text: Vec<String> = docs.iter().map(|d| serde_yaml::to_string(d).unwrap()).collect();
        std::fs::write(&file, text.join("---\n")).unwrap();
        file.to_str().unwrap().to_string()
    };
    let approvals = |file: &str| -> Vec<String> {
        let out = binary(&emu, &["-f", file]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.trim().starts_with("+ ApproveOtaTask"))
            .map(|l| l.trim().to_string())
            .collect()
    };
    let alone = approvals(&write("alone.yaml", &[&rollout]));
    assert_eq!(alone.len(), 2, "{alone:?}");
    let both = write("both.yaml", &[&rollout, &schedule]);
    let planned = approvals(&both);
    assert_eq!(planned.len(), 2, "{planned:?}");
    assert!(
        planned[0].contains("aig-hz0002"),
        "the rollout leaves aig-hz0001 to the schedule: {planned:?}"
    );
    assert!(
        planned[1].contains("TaskId=ota-hz0001-1"),
        "the schedule approves its group: {planned:?}"
    );
    let out = binary(&emu, &["-f", &both, "-o", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = json["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "UpdateRollout")
        .unwrap();
    assert!(
        r.to_string().contains("OtaSchedule default/s"),
        "the rollout names the schedule: {r}"
    );
}
