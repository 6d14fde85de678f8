//! `doctor`: what the operator will need, one line per check, against the harness and the
//! emulator enforcing deploy/ram's policies.

use std::collections::BTreeSet;
use std::path::Path;

use super::*;

/// `doctor` as the identity `kubeconfig` names, with the emulator key `key`, for the resources
/// of `ns` and the Lease the e2e operators of `ns` use: (exit code, report).
fn doctor(kubeconfig: &Path, ns: &str, emu: &Emulator, key: (&str, &str)) -> (Option<i32>, String) {
    doctor_with(
        kubeconfig,
        ns,
        emu,
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", key.0),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", key.1),
        ],
    )
}

/// [`doctor`] with the credentials `env` gives (and no others).
fn doctor_with(kubeconfig: &Path, ns: &str, emu: &Emulator, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_alicloud-ops-operator"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ALIBABA_CLOUD_")) {
        cmd.env_remove(k);
    }
    let out = cmd
        .args(["doctor", "--endpoint", &emu.url()])
        .env("KUBECONFIG", kubeconfig)
        .env("ALICLOUD_OPS_NAMESPACE", ns)
        .env("ALICLOUD_OPS_LEASE_NAMESPACE", OPERATOR_NS)
        .env("ALICLOUD_OPS_LEASE_NAME", format!("lease-{ns}"))
        .envs(env.iter().copied())
        .env_remove("ALICLOUD_OPS_ENDPOINT")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// The checks of a report that failed, by what they checked.
fn failed(report: &str) -> BTreeSet<String> {
    report
        .lines()
        .filter_map(|l| l.strip_prefix("FAIL  "))
        .map(|l| l.split("  ").next().unwrap().trim().to_string())
        .collect()
}

/// The RAM actions a deploy/ram policy names.
fn actions_of(file: &str) -> BTreeSet<String> {
    support::project_policy(file).actions().into_iter().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_names_every_missing_permission_and_writes_nothing() {
    let Scene { client, ns, emu } = Scene::new("doctor").await;
    let key = (
        alicloud_ops_operator::emulator::DEFAULT_ACCESS_KEY_ID,
        alicloud_ops_operator::emulator::DEFAULT_ACCESS_KEY_SECRET,
    );
    // One resource of each product, in cn-hangzhou.
    create::<ImageShare>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": "s"},
               "spec": {"regionId": "cn-hangzhou", "imageId": "m-hz0001"}}),
    )
    .await;
    create::<FotaTaskPolicy>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "FotaTaskPolicy", "metadata": {"name": "p"},
               "spec": {"regionId": "cn-hangzhou", "autoPush": true}}),
    )
    .await;
    let start = chrono::Utc::now() + chrono::Duration::hours(1);
    create::<OtaSchedule>(&client, &ns, ota_schedule("o", "aig-hz0001", start)).await;

    // The operator's identity and operator.json: all is well, and the cloud is as it was.
    let (code, report) = doctor(&cluster().kubeconfig, &ns, &emu, key);
    assert_eq!(code, Some(0), "as the cluster's admin:\n{report}");
    assert!(
        report.contains("installed and current"),
        "an admin compares the CRDs:\n{report}"
    );
    let before = serde_json::to_value(emu.world().state()).unwrap();
    let (code, report) = doctor(&cluster().operator_kubeconfig, &ns, &emu, key);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(failed(&report), BTreeSet::new(), "{report}");
    for line in [
        "ok    account ",
        &format!("crd imageshares.{}", alicloud_ops_operator::api::GROUP),
        "rbac patch imageshares/status.ops.alicloud.dev",
        &format!("lease {OPERATOR_NS}/lease-{ns}"),
        "resources swas-open cn-hangzhou",
    ] {
        assert!(report.contains(line), "{line:?} missing:\n{report}");
    }
    let probed: BTreeSet<String> = report
        .lines()
        .filter_map(|l| l.strip_prefix("ok    ram "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(
        probed,
        actions_of("operator.json"),
        "every action of operator.json is checked:\n{report}"
    );
    assert_eq!(
        serde_json::to_value(emu.world().state()).unwrap(),
        before,
        "doctor changed the cloud"
    );

    // The same key under read-only.json: each write is named, and nothing else fails.
    under_project_policy(&emu, "read-only.json");
    let (code, report) = doctor(&cluster().operator_kubeconfig, &ns, &emu, key);
    assert_eq!(code, Some(1), "{report}");
    let writes: BTreeSet<String> = actions_of("operator.json")
        .difference(&actions_of("read-only.json"))
        .map(|a| format!("ram {a} cn-hangzhou"))
        .collect();
    assert_eq!(failed(&report), writes, "{report}");
    assert!(
        report.contains("refused by RAM (Forbidden.RAM): add ecd:UpdateFotaTask"),
        "{report}"
    );
    under_project_policy(&emu, "operator.json");

    // An identity without the chart's RBAC: every permission it lacks, named.
    service_account_token(&client, &ns, "nobody", None).await;
    let nobody = cluster().dir.join(format!("nobody-{ns}-kubeconfig"));
    let text = std::fs::read_to_string(&cluster().kubeconfig).unwrap();
    std::fs::write(
        &nobody,
        text.replace(
            "    token: ",
            &format!("    as: system:serviceaccount:{ns}:nobody\n    token: "),
        ),
    )
    .unwrap();
    let (code, report) = doctor(&nobody, &ns, &emu, key);
    assert_eq!(code, Some(1), "{report}");
    let nobody_failed = failed(&report);
    let rbac: Vec<&str> = report.lines().filter(|l| l.contains("  rbac ")).collect();
    assert!(
        !rbac.is_empty() && rbac.iter().all(|l| l.starts_with("FAIL")),
        "{report}"
    );
    assert!(
        nobody_failed.contains(&format!("lease {OPERATOR_NS}/lease-{ns}")),
        "{report}"
    );
    assert!(nobody_failed.contains("resources"), "{report}");

    // A key the cloud does not know: the account check says so.
    let (code, report) = doctor(
        &cluster().operator_kubeconfig,
        &ns,
        &emu,
        ("LTAI5tNobodyKnows", "wrong"),
    );
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report.contains("FAIL  account") && report.contains("InvalidAccessKeyId.NotFound"),
        "{report}"
    );

    // RRSA, as the operator's pod has it: the role's policy is what counts.
    let token = cluster().dir.join(format!("doctor-oidc-{ns}"));
    std::fs::write(
        &token,
        service_account_token(&client, &ns, "nobody", Some("sts.aliyuncs.com")).await,
    )
    .unwrap();
    let account = alicloud_ops_operator::emulator::DEFAULT_ACCOUNT_ID;
    emu.world().attach_policy(
        "role/alicloud-ops-operator",
        Some(support::project_policy("read-only.json")),
    );
    let rrsa = [
        (
            "ALIBABA_CLOUD_ROLE_ARN",
            format!("acs:ram::{account}:role/alicloud-ops-operator"),
        ),
        (
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
            format!("acs:ram::{account}:oidc-provider/ack-rrsa"),
        ),
        ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", token.display().to_string()),
    ];
    let rrsa: Vec<(&str, &str)> = rrsa.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, report) = doctor_with(&cluster().operator_kubeconfig, &ns, &emu, &rrsa);
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("AssumedRoleUser acs:ram::"), "{report}");
    assert_eq!(failed(&report), writes, "the role's policy, not the key's:\n{report}");

    // No credentials at all: the chain ends at the ECS role, which is not here, and says so.
    let (code, report) = doctor_with(&cluster().operator_kubeconfig, &ns, &emu, &[]);
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("FAIL  credentials") && l.contains("ECS RAM role")),
        "{report}"
    );
}
