//! Installing: admission names the field, kubectl and Helm install what the operator needs and no more, the plugin runs.

use std::collections::BTreeSet;

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn invalid_resources_are_rejected_naming_the_field() {
    let client = admin().await;
    let ns = namespace(&client, "bad").await;
    let window = json!({"start": "2026-12-01T00:00:00Z", "end": "2026-12-01T01:00:00Z"});
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"]}),
            "set exactly one of window or recurring",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "selector": {}, "window": window}),
            "selector: give at least one of officeSiteId, tags, desktopGroupIds, policyGroupIds, endUserIds",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "selector": {"tags": {"acs:owner": "x"}}, "window": window}),
            "selector.tags: a tag key is 1 to 128 characters and does not start with aliyun or acs:",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "exclude": {"tags": {"aliyun-x": "y"}}, "window": window}),
            "exclude.tags: a tag key is 1 to 128 characters and does not start with aliyun or acs:",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "selector": {"tags": (0..21).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}, "window": window}),
            "spec.selector.tags",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "window": window,
                   "blackouts": [{"start": "2026-12-24T00:00:00Z", "end": "2026-12-23T00:00:00Z"}]}),
            "a blackout's end must be after its start",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "window": window,
                   "blackouts": [{"start": "2026-12-24T00:00:00Z", "end": "2026-12-27T00:00:00Z"},
                                 {"start": "2026-12-26T00:00:00+08:00", "end": "2027-01-02T00:00:00Z"}]}),
            "blackouts must not overlap",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "window": window, "notify": {"before": ["1h", "200h"]}}),
            "notify.before: each lead time is a duration such as 1h or 15m, longer than 0 and at most 168h",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "drain": {"policy": "Wait", "idleAfter": "10m"}, "window": window}),
            "drain.idleAfter, drain.retryEvery and drain.minMaintenance are allowed only with policy SkipBusy",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "drain": {"policy": "SkipBusy", "retryEvery": "1s"}, "window": window}),
            "drain.retryEvery is between 10s and 24h",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "drain": {"forceAfter": "1h"}, "window": window}),
            "drain.forceAfter is required with policy WaitThenForce, and allowed with no other policy",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "drain": {"policy": "WaitThenForce"}, "window": window}),
            "drain.forceAfter is required with policy WaitThenForce, and allowed with no other policy",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "drain": {"policy": "Sometimes"}, "window": window}),
            "spec.drain.policy",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "drain": {"policy": "WaitThenForce", "forceAfter": "200h"}, "window": window}),
            "drain.forceAfter is at most 168h",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "window": {"start": "2026-12-01T00:00:00Z", "end": "2026-12-01T01:00:00Z"}}),
            "set exactly one of desktopIds or selector",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "window": {"start": "2026-12-01T02:00:00Z", "end": "2026-12-01T01:00:00Z"}}),
            "window.end must be after window.start",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["desk-1"], "window": {"start": "2026-12-01T00:00:00Z", "end": "2026-12-01T01:00:00Z"}}),
            "spec.desktopIds[0]",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a", "ecd-a"], "window": {"start": "2026-12-01T00:00:00Z", "end": "2026-12-01T01:00:00Z"}}),
            "spec.desktopIds[1]",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "recurring": {"cron": "every day", "duration": "2h"}}),
            "spec.recurring.cron",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "window": {"start": "tomorrow", "end": "2026-12-01T01:00:00Z"}}),
            "spec.window.start",
        ),
        (
            "ImageShare",
            json!({"regionId": "cn-hangzhou", "imageId": "m-1", "resyncInterval": "9999999999999999999s"}),
            "spec.resyncInterval",
        ),
        (
            "ImageShare",
            json!({"regionId": "cn-hangzhou", "imageId": "m-1", "resyncInterval": "5s"}),
            "resyncInterval must be between 10s and 24h",
        ),
        (
            "ImageShare",
            json!({"regionId": "cn-hangzhou", "imageId": "m-1", "resyncInterval": "999999999999h"}),
            "spec.resyncInterval",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "recurring": {"cron": "0 1 * * *", "duration": "3000000000h"}}),
            "spec.recurring.duration",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "recurring": {"cron": "0 1 * * *", "duration": "169h"}}),
            "at most 168h",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "window": {"start": "2026-12-01T02:00:00+08:00", "end": "2026-12-20T01:00:00Z"}}),
            "a window lasts at most 7 days",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "window": {"start": "2026-12-01T03:00:00Z", "end": "2026-12-01T10:00:00+08:00"}}),
            "window.end must be after window.start",
        ),
        (
            "ImageShare",
            json!({"regionId": "Hangzhou", "imageId": "m-1"}),
            "spec.regionId",
        ),
        (
            "ImageShare",
            json!({"regionId": "cn-hangzhou", "imageId": "m-1", "deletionPolicy": "Delete"}),
            "spec.deletionPolicy",
        ),
        ("ImageShare", json!({"regionId": "cn-hangzhou"}), "spec.imageId"),
        (
            "ImageShare",
            json!({"regionId": "cn-hangzhou", "imageId": "m-1", "managementPolicy": "Sometimes"}),
            "spec.managementPolicy",
        ),
        (
            "ImageShare",
            json!({"regionId": "cn-hangzhou", "imageId": "m-1", "resyncInterval": "soon"}),
            "spec.resyncInterval",
        ),
        (
            "OtaSchedule",
            json!({"bizRegionId": "cn-hangzhou", "appInstanceGroupId": "aig-1"}),
            "set exactly one of startTime or window",
        ),
        (
            "OtaSchedule",
            json!({"bizRegionId": "cn-hangzhou", "appInstanceGroupId": "aig-1", "otaType": "Aota", "startTime": "2026-12-01T00:00:00Z"}),
            "spec.otaType",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "recurring": {"cron": "0 25 * * *", "duration": "2h"}}),
            "spec.recurring.cron: Invalid value: \"0 25 * * *\": cron 0 25 * * *: the hour (the 2nd field) must be within 0-23",
        ),
        (
            "OtaSchedule",
            json!({"bizRegionId": "cn-hangzhou", "appInstanceGroupId": "aig-1", "window": {"cron": "0 3 * 1-13 0"}}),
            "spec.window.cron: Invalid value: \"0 3 * 1-13 0\": cron 0 3 * 1-13 0: the month (the 4th field) must be within 1-12",
        ),
        (
            "OtaSchedule",
            json!({"bizRegionId": "cn-hangzhou", "appInstanceGroupId": "aig-1", "window": {"cron": "0 3 * * 0", "timeZone": "Mars/Olympus"}}),
            "spec.window.timeZone: Invalid value: \"string\": unknown time zone Mars/Olympus",
        ),
        (
            "DesktopMaintenanceWindow",
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "recurring": {"cron": "0 1 * * *", "duration": "2h", "timeZone": "+08:00"}}),
            "spec.recurring.timeZone: Invalid value: \"+08:00\": timeZone must be an IANA time zone name such as Asia/Shanghai, not a UTC offset",
        ),
        ("FotaTaskPolicy", json!({"regionId": "cn-hangzhou"}), "spec.autoPush"),
        (
            "FotaTaskPolicy",
            json!({"regionId": "cn-hangzhou", "autoPush": "yes"}),
            "spec.autoPush",
        ),
        (
            "FotaTaskPolicy",
            json!({"regionId": "cn-hangzhou", "autoPush": true, "credentialsRef": {"name": "Not_A_Name"}}),
            "spec.credentialsRef.name",
        ),
        (
            "UpdateRollout",
            json!({"ota": {"bizRegionId": "cn-hangzhou"}, "waves": []}),
            "spec.waves",
        ),
        (
            "UpdateRollout",
            json!({"ota": {"bizRegionId": "cn-hangzhou"}, "waves": [{"name": "canary", "selector": {}}]}),
            "selector: give appInstanceGroupIds or tags",
        ),
        (
            "UpdateRollout",
            json!({"ota": {"bizRegionId": "cn-hangzhou"}, "waves": [{"name": "canary", "selector": {"tags": {"ring": "canary"}}, "maxUnavailable": 0}]}),
            "maxUnavailable is a number of at least 1 or a percentage from 1% to 100%",
        ),
        (
            "UpdateRollout",
            json!({"ota": {"bizRegionId": "cn-hangzhou"}, "waves": [{"name": "canary", "selector": {"tags": {"ring": "canary"}}, "maxUnavailable": "150%"}]}),
            "maxUnavailable is a number of at least 1 or a percentage from 1% to 100%",
        ),
        (
            "UpdateRollout",
            json!({"ota": {"bizRegionId": "cn-hangzhou"}, "waves": [{"name": "canary", "selector": {"tags": {"ring": "canary"}}, "soak": "800h"}]}),
            "soak must be at most 720h (30 days)",
        ),
        (
            "UpdateRollout",
            json!({"ota": {"bizRegionId": "cn-hangzhou"}, "waves": [{"name": "canary", "selector": {"appInstanceGroupIds": ["aig-1"]}}], "failurePolicy": {"maxFailures": 2}}),
            "failurePolicy.maxFailures is more than a wave's appInstanceGroupIds or desktopIds: that wave could never stop",
        ),
        (
            "UpdateRollout",
            json!({"ota": {"bizRegionId": "cn-hangzhou"}, "waves": [{"name": "canary", "selector": {"tags": {"ring": "canary"}}}], "failurePolicy": {"maxFailures": "101%"}}),
            "maxFailures is a number of at least 0 or a percentage from 0% to 100%",
        ),
        (
            "UpdateRollout",
            json!({"ota": {"bizRegionId": "cn-hangzhou"}, "waves": [{"name": "a", "selector": {"tags": {"ring": "canary"}}}, {"name": "a", "selector": {"tags": {"ring": "broad"}}}]}),
            "waves: each wave needs a name of its own",
        ),
        (
            "UpdateRollout",
            json!({"ota": {"bizRegionId": "cn-hangzhou"}, "fota": {"regionId": "cn-hangzhou"}, "waves": [{"name": "a", "selector": {"tags": {"ring": "canary"}}}]}),
            "give exactly one target: ota (App Streaming delivery groups) or fota",
        ),
        (
            "UpdateRollout",
            json!({"fota": {"regionId": "cn-hangzhou"}, "waves": [{"name": "a", "selector": {"appInstanceGroupIds": ["aig-1"]}}]}),
            "a fota rollout selects cloud computers; appInstanceGroupIds is for ota",
        ),
        (
            "UpdateRollout",
            json!({"ota": {"bizRegionId": "cn-hangzhou"}, "waves": [{"name": "a", "selector": {"desktopIds": ["ecd-1"]}}]}),
            "an ota rollout selects delivery groups, by appInstanceGroupIds or tags",
        ),
        (
            "UpdateRollout",
            json!({"fota": {"regionId": "cn-hangzhou"}, "waves": [{"name": "a", "selector": {"desktopIds": ["ecd-1"]}}], "failurePolicy": {"maxFailures": 2}}),
            "failurePolicy.maxFailures is more than a wave's appInstanceGroupIds or desktopIds",
        ),
        (
            "UpdateRollout",
            json!({"fota": {"regionId": "cn-hangzhou", "drain": {"policy": "WaitThenForce", "forceAfter": "1h"}}, "waves": [{"name": "a", "selector": {"tags": {"ring": "canary"}}}]}),
            "fota.drain.policy: a rollout disconnects nobody; give Wait or SkipBusy",
        ),
        (
            "UpdateRollout",
            json!({"fota": {"regionId": "cn-hangzhou", "drain": {"policy": "SkipBusy", "idleAfter": "30m"}}, "waves": [{"name": "a", "selector": {"tags": {"ring": "canary"}}}]}),
            "fota.drain.idleAfter: the cloud updates only computers nobody is connected to",
        ),
    ];
    for (i, (kind, spec, want)) in cases.into_iter().enumerate() {
        let plural = registry::find(kind).expect("a registered kind").plural;
        let ar = kube::discovery::ApiResource {
            group: "ops.alicloud.dev".into(),
            version: "v1alpha1".into(),
            api_version: "ops.alicloud.dev/v1alpha1".into(),
            kind: kind.into(),
            plural,
        };
        let api = Api::<kube::api::DynamicObject>::namespaced_with(client.clone(), &ns, &ar);
        let obj: kube::api::DynamicObject =
            serde_json::from_value(json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": kind, "metadata": {"name": format!("bad{i}")}, "spec": spec})).unwrap();
        let err = api
            .create(&PostParams::default(), &obj)
            .await
            .expect_err(&format!("case {i} ({want}) must be rejected"));
        let text = err.to_string();
        assert!(text.contains(want), "case {i}: {text:?} does not name {want:?}");
    }
    // Cron names and croner's special characters pass the range rules.
    create::<OtaSchedule>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "OtaSchedule", "metadata": {"name": "named"},
               "spec": {"bizRegionId": "cn-hangzhou", "appInstanceGroupId": "aig-1",
                        "window": {"cron": "*/15 0-23 1,15W JAN-DEC MON-FRI", "timeZone": "Europe/Berlin"}}}),
    )
    .await;
    // Immutable fields.
    create::<ImageShare>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": "fixed"}, "spec": {"regionId": "cn-hangzhou", "imageId": "m-1"}}),
    )
    .await;
    let err = Api::<ImageShare>::namespaced(client.clone(), &ns)
        .patch(
            "fixed",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"imageId": "m-2"}})),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("imageId cannot be changed"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_applies_crds_and_examples() {
    cluster();
    let kubectl =
        std::env::var("KUBECTL").unwrap_or_else(|_| format!("{}/target/venv/bin/kubectl", env!("CARGO_MANIFEST_DIR")));
    let out = std::process::Command::new(&kubectl)
        .args(["apply", "-f", "crds/", "-f", "examples/"])
        .env("KUBECONFIG", &cluster().kubeconfig)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("{kubectl}: {e}; run `make test` (scripts/setup-python.sh installs kubectl)"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for name in [
        "hangzhou-auto-push",
        "weekly-site1",
        "app-image-to-ecs",
        "office-apps-sunday",
        "office-apps-rollout",
        "alicloud-credentials",
    ] {
        assert!(stdout.contains(name), "{name} not applied:\n{stdout}");
    }
    let out = std::process::Command::new(&kubectl)
        .args([
            // The category every kind's CRD carries: no list of kinds to keep.
            "get",
            "alicloud-ops",
            "-n",
            "default",
        ])
        .env("KUBECONFIG", &cluster().kubeconfig)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("READY") && listed.contains("office-apps-sunday") && listed.contains("office-apps-rollout"),
        "{listed}"
    );
}

// ---- The promises under faults (issue 9) ----

/// The overlays apply to a real apiserver with kubectl, and the namespaced install (a Role,
/// not the ClusterRole) is all the operator needs to serve its namespace, finalizers and
/// leader election included: the operator runs as that ServiceAccount, impersonated.
#[tokio::test(flavor = "multi_thread")]
async fn the_overlays_apply_and_the_namespaced_install_is_enough() {
    let Scene { client, ns, emu } = Scene::new("nsmode").await;
    let applied = kubectl_run(&["apply", "-k", "deploy/overlays/networkpolicy"]);
    assert!(
        applied.contains("networkpolicy.networking.k8s.io/alicloud-ops-operator"),
        "{applied}"
    );
    assert!(
        applied.contains("poddisruptionbudget.policy/alicloud-ops-operator"),
        "{applied}"
    );

    let dir = repo(&format!("target/e2e-kustomize/{ns}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {ns}\nresources:\n  - ../../../deploy/overlays/namespaced\n"
        ),
    )
    .unwrap();
    let applied = kubectl_run(&["apply", "-k", dir.to_str().unwrap()]);
    assert!(
        applied.contains("role.rbac.authorization.k8s.io/alicloud-ops-operator-namespaced"),
        "{applied}"
    );
    assert!(
        !applied.contains("clusterrolebinding.rbac.authorization.k8s.io/alicloud-ops-operator "),
        "{applied}"
    );
    let kubeconfig = dir.join("kubeconfig");
    let admin_config = std::fs::read_to_string(&cluster().kubeconfig).unwrap();
    std::fs::write(
        &kubeconfig,
        admin_config.replace(
            "    token: ",
            &format!("    as: system:serviceaccount:{ns}:alicloud-ops-operator\n    token: "),
        ),
    )
    .unwrap();
    secret(&client, &ns, "cloud", KEY_SECRET).await;
    let op = Operator::start_full(
        &ns,
        &emu.url(),
        "alicloud-ops-operator",
        &["--lease-namespace", &ns],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    create::<ImageShare>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": "s"},
               "spec": {"regionId": "cn-hangzhou", "imageId": "m-hz0003", "deletionPolicy": "UnShare",
                        "credentialsRef": {"name": "cloud"}}}),
    )
    .await;
    wait_reason::<ImageShare>(&client, &ns, "s", "InSync").await;
    Api::<ImageShare>::namespaced(client.clone(), &ns)
        .delete("s", &DeleteParams::default())
        .await
        .unwrap();
    gone::<ImageShare>(&client, &ns, "s", WAIT).await;
    let logs = op.logs();
    assert!(!logs.contains("forbidden"), "a permission was missing:\n{logs}");
}

/// From the apiserver's own audit log: the operator's ServiceAccount lists and watches
/// Secrets only through the credentials label, and reads them only by name; and it never
/// uses a verb on a resource beyond the ones its ClusterRole exists for.
#[tokio::test(flavor = "multi_thread")]
async fn the_audit_log_shows_least_privilege_in_use() {
    let Scene { client, ns, emu } = Scene::new("audit").await;
    secret(&client, &ns, "cloud", KEY_SECRET).await;
    let op = operator(&ns, &emu);
    create::<ImageShare>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": "s"},
               "spec": {"regionId": "cn-hangzhou", "imageId": "m-hz0001", "credentialsRef": {"name": "cloud"}}}),
    )
    .await;
    wait_reason::<ImageShare>(&client, &ns, "s", "InSync").await;
    let _ = op.scrape().await;
    drop(op);
    let sa = "system:serviceaccount:alicloud-ops-system:alicloud-ops-operator";
    let log = std::fs::read_to_string(cluster().dir.join("audit.log")).unwrap();
    let mut used = std::collections::BTreeSet::new();
    let mut secret_requests = 0;
    for line in log.lines() {
        let Ok(e) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if e["impersonatedUser"]["username"] != sa {
            continue;
        }
        // `doctor` runs as the operator's identity on purpose, and probes what it may do.
        if e["userAgent"]
            .as_str()
            .is_some_and(|a| a.starts_with(alicloud_ops_operator::cli::doctor::USER_AGENT))
        {
            continue;
        }
        let resource = e["objectRef"]["resource"].as_str().unwrap_or("");
        let sub = e["objectRef"]["subresource"].as_str().unwrap_or("");
        let verb = e["verb"].as_str().unwrap_or("").to_string();
        let uri = e["requestURI"].as_str().unwrap_or("");
        if resource == "secrets" {
            secret_requests += 1;
            match verb.as_str() {
                "get" => assert!(
                    e["objectRef"]["name"].is_string(),
                    "a Secret read without a name: {uri}"
                ),
                "list" | "watch" => assert!(
                    uri.contains("labelSelector=ops.alicloud.dev%2Fcredentials%3Dtrue"),
                    "Secrets listed without the credentials label: {uri}"
                ),
                other => panic!("verb {other} on Secrets: {uri}"),
            }
        }
        let what = if sub.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}/{sub}")
        };
        if !what.is_empty() {
            used.insert(format!("{what} {verb}"));
        }
    }
    assert!(secret_requests > 0, "the operator's Secret traffic is in the audit log");
    println!("the operator used: {used:?}");
    let allowed: Vec<String> = registry::names().into_iter().map(|n| n.plural).collect();
    for u in &used {
        let (what, verb) = u.split_once(' ').unwrap();
        let base = what.split('/').next().unwrap();
        let ours = allowed.iter().any(|p| p == base);
        let ok = match base {
            _ if ours && what.ends_with("/status") => matches!(verb, "get" | "patch"),
            _ if ours => matches!(verb, "get" | "list" | "watch" | "patch"),
            "secrets" => matches!(verb, "get" | "list" | "watch"),
            "events" => matches!(verb, "create" | "patch"),
            "leases" => matches!(verb, "get" | "list" | "watch" | "create" | "update" | "patch"),
            "tokenreviews" | "subjectaccessreviews" => verb == "create",
            _ => false,
        };
        assert!(ok, "the operator used {u}, beyond what it is meant to: {used:?}");
    }
}

/// The binary, installed as `kubectl-alicloud_ops` on the PATH, is a kubectl plugin:
/// `kubectl alicloud-ops status` lists the resources with their reason and next step (`-n`,
/// `-A`), `reconcile KIND/NAME` makes the operator look at once, `plan` reads the live objects,
/// and `--context` and `KUBECONFIG` work as in kubectl.
#[tokio::test(flavor = "multi_thread")]
async fn kubectl_runs_the_binary_as_the_alicloud_ops_plugin() {
    let Scene { client, ns, emu } = Scene::new("plugin").await;
    let op = operator_with(&ns, &emu, &["--resync-interval", "1h"]);
    let plugins = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_alicloud-ops-operator"),
        plugins.path().join("kubectl-alicloud_ops"),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        plugins.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let plugin = |args: &[&str]| {
        let out = with_emulator_key(&mut std::process::Command::new(kubectl()))
            .arg("alicloud-ops")
            .args(args)
            .env("KUBECONFIG", &cluster().kubeconfig)
            .env("PATH", &path)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let share = |name: &str, image: &str| {
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": name},
               "spec": {"regionId": "cn-hangzhou", "imageId": image}})
    };
    create::<ImageShare>(&client, &ns, share("kept", "m-hz0001")).await;
    create::<ImageShare>(&client, &ns, share("missing", "m-gone")).await;
    wait_reason::<ImageShare>(&client, &ns, "kept", "InSync").await;
    wait_reason::<ImageShare>(&client, &ns, "missing", "NotFound").await;

    let (code, out, err) = plugin(&["status", "-n", &ns]);
    assert_eq!(code, Some(0), "{out}{err}");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split("   ").map(str::trim).filter(|c| !c.is_empty()).collect())
        .collect();
    assert_eq!(lines[0][..5], ["KIND", "NAME", "READY", "REASON", "NEXT"], "{out}");
    assert_eq!(
        lines[1][..5],
        [
            "ImageShare",
            "kept",
            "True",
            "InSync",
            "looks again at the resync or the next window boundary"
        ],
        "{out}"
    );
    assert_eq!(
        lines[2][..5],
        [
            "ImageShare",
            "missing",
            "False",
            "NotFound",
            "looks again at the resync"
        ],
        "{out}"
    );
    assert!(lines[2][5].contains("m-gone"), "the Ready message: {out}");
    let (_, everywhere, _) = plugin(&["status", "-A"]);
    assert!(everywhere.starts_with("NAMESPACE"), "{everywhere}");
    assert!(
        everywhere.lines().any(|l| l.starts_with(&ns) && l.contains("missing")),
        "{everywhere}"
    );

    let reconciles = || async { metric_sum(&op.scrape().await, "alicloud_ops_reconciles_total", "ImageShare") };
    let before = reconciles().await;
    let (code, out, err) = plugin(&["reconcile", "imageshare/kept", "-n", &ns]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("ImageShare/kept"), "{out}");
    eventually("the requested reconcile", WAIT, || async {
        (reconciles().await > before).then_some(())
    })
    .await;
    let (code, _, err) = plugin(&["reconcile", "imageshare/nope", "-n", &ns]);
    assert_eq!(code, Some(1));
    assert!(err.contains("ImageShare") && err.contains("nope"), "{err}");
    let (code, _, err) = plugin(&["reconcile", "pods/kept"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not a kind of ops.alicloud.dev"), "{err}");

    // --context picks a context of the kubeconfig, as kubectl's does.
    let (code, _, err) = plugin(&["status", "-n", &ns, "--context", "no-such-context"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no-such-context"), "{err}");

    // plan through the plugin, with the live objects and -n for documents that name none.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("share.yaml");
    std::fs::write(&file, "apiVersion: ops.alicloud.dev/v1alpha1\nkind: ImageShare\nmetadata: {name: kept}\nspec: {regionId: cn-hangzhou, imageId: m-hz0001, shared: false}\n").unwrap();
    let (code, out, err) = plugin(&[
        "plan",
        "-f",
        file.to_str().unwrap(),
        "-n",
        &ns,
        "--endpoint",
        &emu.url(),
    ]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(out.contains(&format!("ImageShare {ns}/kept: Changes")), "{out}");
    assert!(
        out.contains("ClientToken=ishare-"),
        "the live uid gives the real token: {out}"
    );
    let (_, help, _) = plugin(&["--help"]);
    assert!(help.contains("kubectl alicloud-ops"), "{help}");
}

/// The chart, with the real helm: the release the harness was installed from is deployed and
/// owns the RBAC every test's operator runs with, and `helm template` applies to the
/// apiserver (server-side dry run: every object valid for this Kubernetes version).
#[tokio::test(flavor = "multi_thread")]
async fn the_helm_release_owns_the_rbac_the_operator_runs_with_and_templates_apply() {
    let client = admin().await;
    let helm = |args: &[&str]| {
        let out = std::process::Command::new(helm())
            .args(args)
            .env("KUBECONFIG", &cluster().kubeconfig)
            .current_dir(support::cluster::repo("."))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "helm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let releases: Value = serde_json::from_str(&helm(&["list", "-n", OPERATOR_NS, "-o", "json"])).unwrap();
    assert_eq!(releases[0]["name"], "alicloud-ops-operator", "{releases}");
    assert_eq!(releases[0]["status"], "deployed", "{releases}");
    let role: k8s_openapi::api::rbac::v1::ClusterRole =
        Api::all(client.clone()).get("alicloud-ops-operator").await.unwrap();
    assert_eq!(
        role.annotations().get("meta.helm.sh/release-name").map(String::as_str),
        Some("alicloud-ops-operator"),
        "the ClusterRole the operator's ServiceAccount is bound to comes from the chart"
    );
    let binding: k8s_openapi::api::rbac::v1::ClusterRoleBinding =
        Api::all(client.clone()).get("alicloud-ops-operator").await.unwrap();
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        format!(
            "system:serviceaccount:{}:{}",
            subject.namespace.as_deref().unwrap(),
            subject.name
        ),
        OPERATOR_SA,
        "the identity every e2e operator impersonates"
    );
    for values in [
        &[][..],
        &["--set", "installMode=namespaced", "--set", "networkPolicy.enabled=true"][..],
    ] {
        let mut args = vec![
            "template",
            "preview",
            "deploy/helm/alicloud-ops-operator",
            "--namespace",
            OPERATOR_NS,
        ];
        args.extend_from_slice(values);
        args.extend_from_slice(&["--set", "fullnameOverride=alicloud-ops-preview"]);
        let rendered = helm(&args);
        let file = cluster().dir.join(format!("helm-template-{}.yaml", values.len()));
        std::fs::write(&file, rendered).unwrap();
        let applied = kubectl_run(&["apply", "--dry-run=server", "-f", file.to_str().unwrap()]);
        assert!(
            applied.contains("deployment.apps/alicloud-ops-preview created (server dry run)"),
            "{applied}"
        );
    }
}

/// The krew manifest, installed by the real krew (tools/krew) from the archive
/// scripts/krew-archive.sh makes of the release binary: kubectl finds the plugin under the
/// name krew links, the binary then calls itself `kubectl alicloud-ops`, and the commands the
/// manifest describes are the binary's own, every one of them that acts on a cluster.
#[test]
fn krew_installs_the_plugin_from_its_manifest() {
    let run = |program: &str, args: &[&str], envs: &[(&str, &str)]| {
        let out = std::process::Command::new(program)
            .args(args)
            .envs(envs.iter().copied())
            .current_dir(support::cluster::repo("."))
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}; run `make test`"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{program} {args:?}: {text}");
        text
    };
    let made = run("scripts/krew-archive.sh", &[], &[]);
    let manifest_path = support::cluster::repo("target/krew/alicloud-ops.yaml");
    let manifest: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    let archive = made.split_whitespace().next().unwrap().to_string();

    // The names: krew links `kubectl-<name with _ for ->`, the name the binary knows itself by.
    let plugin = alicloud_ops_operator::cli::kubectl::PLUGIN;
    let name = manifest["metadata"]["name"].as_str().unwrap();
    assert_eq!(format!("kubectl-{}", name.replace('-', "_")), plugin);
    assert_eq!(
        manifest["spec"]["version"].as_str(),
        Some(format!("v{}", env!("CARGO_PKG_VERSION")).as_str())
    );
    let platform = &manifest["spec"]["platforms"][0];
    assert_eq!(platform["bin"], "alicloud-ops-operator");
    assert!(
        platform["uri"]
            .as_str()
            .unwrap()
            .ends_with(archive.rsplit('/').next().unwrap()),
        "{platform:?}"
    );

    let krew_root = tempfile::tempdir().unwrap();
    let root = krew_root.path().to_str().unwrap();
    let krew =
        std::env::var("KREW").unwrap_or_else(|_| support::cluster::repo("target/tools/krew").display().to_string());
    run(
        &krew,
        &[
            "install",
            &format!("--manifest={}", manifest_path.display()),
            &format!("--archive={archive}"),
        ],
        &[("KREW_ROOT", root)],
    );
    let path = format!("{root}/bin:{}", std::env::var("PATH").unwrap_or_default());
    let listed = run(&kubectl(), &["plugin", "list"], &[("PATH", &path)]);
    assert!(listed.contains(&format!("{root}/bin/{plugin}")), "{listed}");
    let help = run(&kubectl(), &["alicloud-ops", "--help"], &[("PATH", &path)]);
    assert!(help.contains("Usage: kubectl alicloud-ops "), "{help}");

    // The binary's commands, from its help; the manifest's, from its description.
    let commands: BTreeSet<String> = help
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect();
    let described: BTreeSet<String> = manifest["spec"]["description"]
        .as_str()
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("kubectl alicloud-ops "))
        .map(|rest| rest.split_whitespace().next().unwrap().to_string())
        .collect();
    assert!(
        described.is_subset(&commands),
        "described {described:?}, the binary has {commands:?}"
    );
    // What the plugin is not for: running the operator, printing CRDs, raw cloud calls, help.
    let in_cluster_only: BTreeSet<String> = ["run", "crd", "call", "help"].iter().map(|c| c.to_string()).collect();
    let for_users: BTreeSet<String> = commands.difference(&in_cluster_only).cloned().collect();
    assert_eq!(
        described, for_users,
        "the manifest describes every command a kubectl user runs"
    );
}
