//! `plan` predicts exactly what the operator then does.

use super::*;

/// Records, per `Kind/name`, every Ready reason in the order the operator set them.
fn record_reasons<K>(client: &Client, ns: &str, seen: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>)
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + 'static,
{
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let api = Api::<K>::namespaced(client.clone(), ns);
    tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).applied_objects());
        while let Some(Ok(obj)) = events.next().await {
            let v = serde_json::to_value(&obj).unwrap();
            let reason = v["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .and_then(|c| c["reason"].as_str())
                .map(str::to_string);
            if let Some(reason) = reason {
                let key = format!("{}/{}", v["kind"].as_str().unwrap_or(""), obj.name_any());
                let mut seen = seen.lock().unwrap();
                if seen.iter().rev().find(|(k, _)| *k == key).map(|(_, r)| r) != Some(&reason) {
                    seen.push((key, reason));
                }
            }
        }
    });
}

/// The emulator's log of writes, each in the words `plan` uses for it (ApproveOtaTask
/// without the version, which is not a parameter of the call).
fn writes_in_plan_words(emu: &alicloud_ops_operator::emulator::Emulator) -> Vec<String> {
    let mut out: Vec<String> = emu
        .world()
        .request_log()
        .into_iter()
        .filter(|r| r.code == "success")
        .filter_map(|r| {
            let p = |k: &str| r.params.get(k).cloned().unwrap_or_default();
            Some(match r.action.as_str() {
                "UpdateFotaTask" => format!("UpdateFotaTask {} UserStatus={}", p("TaskUid"), p("UserStatus")),
                "ModifyImageShareStatus" => format!(
                    "ModifyImageShareStatus Operation={} ClientToken={}",
                    p("Operation"),
                    p("ClientToken")
                ),
                "ApproveOtaTask" => format!("ApproveOtaTask TaskId={} StartTime={}", p("TaskId"), p("StartTime")),
                "SetDesktopMaintenance" => {
                    let ids: Vec<String> = (1..)
                        .map_while(|i| r.params.get(&format!("DesktopIds.{i}")).cloned())
                        .collect();
                    format!("SetDesktopMaintenance {} {}", p("Mode"), ids.join(", "))
                }
                _ => return None,
            })
        })
        .collect();
    out.sort();
    out
}

/// `plan` with the live objects, then the operator, on the same manifests and cloud: the plan
/// names exactly the writes the operator sends (ClientTokens included, made from the live
/// uids) and the Ready reason it sets; a conflict between two policies, or two schedules of
/// one delivery group, created in order (or in the same second) is decided the same way;
/// after the operator, the plan announces nothing again; a window applied later over a
/// desktop another one holds is planned as the operator acts on it.
#[tokio::test(flavor = "multi_thread")]
async fn plan_predicts_exactly_the_writes_and_reasons_of_the_operator() {
    let client = admin().await;
    let ns = namespace(&client, "plan").await;
    // A cloud account of this test's own: plan compares FotaTaskPolicies with every live one of
    // the same account, in every namespace, and the other tests' use the default key.
    use alicloud_ops_operator::emulator::CloudState;
    let account = ("LTAI5tPlanAccount", "plan-account-secret");
    let emu = emulator_with_keys(
        CloudState::default_dataset(),
        &[ExtraKey(account.0, account.1, Some("2000000000000003"))],
    )
    .await;
    under_project_policy(&emu, "operator.json");
    let now = chrono::Utc::now();
    let at = |d: chrono::Duration| (now + d).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // A window of the plan's account, open from a minute ago for `hours`.
    let window_yaml = |name: &str, ids: &str, hours: i64| {
        format!(
            r#"---
apiVersion: ops.alicloud.dev/v1alpha1
kind: DesktopMaintenanceWindow
metadata: {{name: {name}, namespace: {ns}}}
spec:
  regionId: cn-hangzhou
  desktopIds: [{ids}]
  window: {{start: "{}", end: "{}"}}
  credentialsRef: {{name: plan-cloud}}
"#,
            at(chrono::Duration::minutes(-1)),
            at(chrono::Duration::hours(hours))
        )
    };
    let manifests = format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: plan-cloud, namespace: {ns}, labels: {{ops.alicloud.dev/credentials: "true"}}}}
stringData: {{accessKeyId: {}, accessKeySecret: {}}}
---
apiVersion: ops.alicloud.dev/v1alpha1
kind: FotaTaskPolicy
metadata: {{name: hold, namespace: {ns}}}
spec: {{regionId: cn-hangzhou, autoPush: false, taskUids: [aot-hz0002], credentialsRef: {{name: plan-cloud}}}}
---
apiVersion: ops.alicloud.dev/v1alpha1
kind: FotaTaskPolicy
metadata: {{name: push, namespace: {ns}}}
spec: {{regionId: cn-hangzhou, autoPush: true, credentialsRef: {{name: plan-cloud}}}}
---
apiVersion: ops.alicloud.dev/v1alpha1
kind: ImageShare
metadata: {{name: share, namespace: {ns}}}
spec: {{regionId: cn-hangzhou, imageId: m-hz0003, shared: true, credentialsRef: {{name: plan-cloud}}}}
---
apiVersion: ops.alicloud.dev/v1alpha1
kind: OtaSchedule
metadata: {{name: approve, namespace: {ns}}}
spec:
  bizRegionId: cn-hangzhou
  appInstanceGroupId: aig-hz0001
  window: {{cron: "0 3 * * 0", timeZone: Asia/Shanghai}}
  credentialsRef: {{name: plan-cloud}}
---
apiVersion: ops.alicloud.dev/v1alpha1
kind: OtaSchedule
metadata: {{name: approve-too, namespace: {ns}}}
spec:
  bizRegionId: cn-hangzhou
  appInstanceGroupId: aig-hz0001
  window: {{cron: "0 4 * * 0", timeZone: Asia/Shanghai}}
  credentialsRef: {{name: plan-cloud}}
{}"#,
        account.0,
        account.1,
        window_yaml("now", "ecd-hz20001, ecd-hz20002", 1)
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("resources.yaml");
    std::fs::write(&file, manifests).unwrap();

    let plan = |extra: &[&str]| {
        let out = with_emulator_key(&mut std::process::Command::new(env!(
            "CARGO_BIN_EXE_alicloud-ops-operator"
        )))
        .args([
            "plan",
            "-o",
            "json",
            "-f",
            file.to_str().unwrap(),
            "--endpoint",
            &emu.url(),
        ])
        .args(extra)
        .env("KUBECONFIG", &cluster().kubeconfig)
        .output()
        .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code(), report)
    };
    // Not in the cluster yet: both policies are new, so neither is older; one wins, by name,
    // as the operator will decide between two created in the same second.
    let (_, unapplied) = plan(&[]);
    let reasons: Vec<(&str, &str)> = unapplied["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "FotaTaskPolicy")
        .map(|r| (r["name"].as_str().unwrap(), r["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(reasons, [("hold", "InSync"), ("push", "Conflict")], "{unapplied:#}");
    kubectl_run(&["apply", "-f", file.to_str().unwrap()]);
    let (code, before) = plan(&[]);
    assert_eq!(code, Some(1), "the losing policy's Conflict is an error: {before:#}");
    assert!(
        before["cluster"]
            .as_str()
            .unwrap()
            .starts_with("live objects read from"),
        "{before:#}"
    );
    let resources = before["resources"].as_array().unwrap();
    let mut predicted: Vec<String> = resources
        .iter()
        .flat_map(|r| r["actions"].as_array().unwrap().iter())
        .map(|a| {
            let a = a.as_str().unwrap();
            assert!(
                !a.contains("made from the uid"),
                "the uid is live, so the ClientToken is known: {a}"
            );
            // ApproveOtaTask's version is for people; it is not a parameter of the call.
            match a.split_once(" version ") {
                Some((head, tail)) => format!("{head} {}", tail.split_once(' ').unwrap().1),
                None => a.to_string(),
            }
        })
        .collect();
    predicted.sort();
    assert!(predicted.len() >= 4, "every kind has a write to predict: {predicted:?}");
    let predicted_reasons: std::collections::BTreeMap<String, String> = resources
        .iter()
        .map(|r| {
            assert!(r.get("uncertain").is_none(), "{r:#}");
            (
                format!("{}/{}", r["kind"].as_str().unwrap(), r["name"].as_str().unwrap()),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(predicted_reasons["FotaTaskPolicy/push"], "Conflict", "{before:#}");
    // Two schedules of one delivery group: plan compares them as the operator does.
    assert_eq!(predicted_reasons["OtaSchedule/approve-too"], "Conflict", "{before:#}");

    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    struct Watch<'a> {
        client: &'a Client,
        ns: &'a str,
        seen: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    }
    impl registry::EachKind for Watch<'_> {
        type Output = ();
        fn visit<K: alicloud_ops_operator::controller::kind::ManagedKind>(&mut self) {
            record_reasons::<K>(self.client, self.ns, self.seen.clone());
        }
    }
    registry::each_kind(&mut Watch {
        client: &client,
        ns: &ns,
        seen: seen.clone(),
    });
    let _op = operator_with(&ns, &emu, &["--resync-interval", "1h"]);
    let first_reasons = eventually("a Ready reason on every resource", WAIT, || async {
        let seen = seen.lock().unwrap();
        let mut first = std::collections::BTreeMap::new();
        for (k, r) in seen.iter() {
            first.entry(k.clone()).or_insert_with(|| r.clone());
        }
        (first.len() == predicted_reasons.len()).then_some(first)
    })
    .await;
    assert_eq!(
        first_reasons, predicted_reasons,
        "the first Ready reason set by the operator"
    );
    eventually("the operator's writes", WAIT, || async {
        (writes_in_plan_words(&emu).len() >= predicted.len()).then_some(())
    })
    .await;
    // Time for a write the plan did not foresee.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(writes_in_plan_words(&emu), predicted, "the writes the operator sent");

    // With the operator's statuses in the cluster, the plan knows what is done.
    let (code, after) = plan(&[]);
    let announced: Vec<&Value> = after["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["actions"].as_array().unwrap().is_empty())
        .collect();
    assert!(announced.is_empty(), "announced again: {announced:#?}");
    assert_eq!(
        code,
        Some(1),
        "the losing policy's Conflict is still an error: {after:#}"
    );

    // A window applied later over a desktop the first one holds: plan compares it with the
    // live windows as the operator does (it holds ecd-hz20002 with "now" and enters only
    // ecd-hz20003), and the operator then sends exactly that.
    let overlap = window_yaml("overlap", "ecd-hz20002, ecd-hz20003", 2);
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(&overlap);
    std::fs::write(&file, text).unwrap();
    let (_, with_overlap) = plan(&[]);
    let planned = with_overlap["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "overlap")
        .unwrap()
        .clone();
    let foreseen: Vec<String> = planned["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(foreseen, ["SetDesktopMaintenance ENTER ecd-hz20003"], "{planned:#}");
    let before = writes_in_plan_words(&emu);
    kubectl_run(&["apply", "-f", file.to_str().unwrap()]);
    let status = wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "overlap", "Active").await;
    assert_eq!(
        status["desktopsInMaintenance"],
        json!(["ecd-hz20002", "ecd-hz20003"]),
        "{status}"
    );
    let mut sent = writes_in_plan_words(&emu);
    for w in &before {
        let i = sent.iter().position(|s| s == w).unwrap();
        sent.remove(i);
    }
    assert_eq!(sent, foreseen, "the operator's writes for the overlapping window");
    // Without the live objects, the plan says which predictions it cannot be sure of.
    let (_, offline) = plan(&["--offline"]);
    assert!(
        offline["resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["uncertain"].is_string()),
        "{offline:#}"
    );
}
