//! /metrics, the dashboard and the alerts.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn metrics_answer_only_tokens_allowed_to_read_them() {
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    let Scene { client, ns, emu } = Scene::new("metrics").await;
    let op = Operator::start_with(
        &ns,
        &emu.url(),
        &format!("lease-{ns}"),
        &["--metrics-auth", "kubernetes"],
    );
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("metrics-reader-{ns}")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "alicloud-ops-operator-metrics-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}]
    }))
    .unwrap();
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let (reader, nobody) = (
        service_account_token(&client, &ns, "reader", None).await,
        service_account_token(&client, &ns, "nobody", None).await,
    );
    let http = https_client();
    let status = |token: Option<String>| {
        let mut req = http.get(&op.metrics);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    };
    eventually("the metrics server is up", WAIT, || async {
        (status(None).await != 0).then_some(())
    })
    .await;
    assert_eq!(status(None).await, 401, "no token");
    assert_eq!(status(Some("not-a-token".into())).await, 401, "an unknown token");
    assert_eq!(status(Some(nobody)).await, 403, "a token RBAC does not allow");
    assert_eq!(status(Some(reader.clone())).await, 200, "the metrics reader");
    let probe = reqwest::get(format!("{}/healthz", op.health)).await.unwrap();
    assert_eq!(probe.status(), 200, "probes stay open, on their own port");
    // Tokens travel only over TLS: the metrics port does not speak plain HTTP.
    let plain = reqwest::Client::new()
        .get(op.metrics.replace("https://", "http://"))
        .bearer_auth(&reader)
        .send()
        .await;
    assert!(
        plain.as_ref().map_or(true, |r| r.status() != 200),
        "/metrics answered over plain HTTP: {plain:?}"
    );
    // A flood of made-up tokens costs at most a bounded number of TokenReviews: past the
    // burst, unknown tokens are answered 429 without asking Kubernetes.
    let mut answers = Vec::new();
    for i in 0..40 {
        answers.push(status(Some(format!("made-up-token-{i}"))).await);
    }
    assert!(answers.contains(&429), "every unknown token was reviewed: {answers:?}");
    assert!(answers.iter().all(|a| *a == 401 || *a == 429), "{answers:?}");
    assert_eq!(
        status(Some(reader.clone())).await,
        200,
        "a known token still reads (cached)"
    );
}

/// The leader answers /readyz once every kind's cache holds its first list: the kubelet's
/// readiness probe (the chart's) passes on the replica that works, not only on the standby.
#[tokio::test(flavor = "multi_thread")]
async fn the_leader_is_ready_once_every_cache_holds_its_first_list() {
    let Scene {
        client: _client,
        ns,
        emu,
    } = Scene::new("readyz").await;
    let op = operator(&ns, &emu);
    let url = format!("{}/readyz", op.health);
    let answer = || async {
        match reqwest::get(&url).await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    };
    eventually("the operator leads", WAIT, || async {
        op.logs().contains("leading: starting controllers").then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    loop {
        let (code, body) = answer().await;
        if code == 200 {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "the leader's /readyz answered {code} {body:?} for {WAIT:?}:\n{}",
            op.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Metric names a `/metrics` page defines: each family's samples (`_total` for counters;
/// `_bucket`, `_sum` and `_count` for histograms), whether or not it has series yet.
fn exported_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            match kind {
                "counter" => {
                    names.insert(format!("{}_total", name.trim_end_matches("_total")));
                }
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
                _ => {
                    names.insert(name.to_string());
                }
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            names.insert(line.split(['{', ' ']).next().unwrap().to_string());
        }
    }
    names
}

/// Every `expr` in a JSON or YAML document, wherever it is nested.
fn expressions(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => expressions(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| expressions(v, out)),
        _ => {}
    }
}

/// The dashboard and the alerts ask only for metrics the operator really exports: a real
/// operator is scraped through a scenario that touches every kind (a window holding
/// desktops, an OTA version awaiting approval, a NotReady resource, cloud writes), and each
/// `alicloud_ops_*` name in every expression must be on its `/metrics`. The scrapes are kept
/// in target/e2e-metrics/ for the README's picture of the dashboard
/// (scripts/plot-dashboard.py).
#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_and_alerts_name_only_metrics_the_operator_exports() {
    let Scene { client, ns, emu } = Scene::new("dash").await;
    let op = operator(&ns, &emu);
    let out_dir = support::cluster::repo("target/e2e-metrics");
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).unwrap();
    let started = std::time::Instant::now();
    let scrapes = {
        let url = op.metrics.clone();
        let token = admin_token();
        let out_dir = out_dir.clone();
        tokio::spawn(async move {
            let http = https_client();
            for i in 0.. {
                if let Ok(r) = http.get(&url).bearer_auth(&token).send().await
                    && let Ok(text) = r.text().await
                {
                    let at = started.elapsed().as_secs_f64();
                    std::fs::write(out_dir.join(format!("{i:04}.prom")), format!("# at {at:.2}\n{text}")).unwrap();
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    // Failures for the error panels: the first UpdateFotaTask calls fail, a list is throttled.
    let world = emu.world();
    world
        .add_fault(fault(
            json!({"action": "UpdateFotaTask", "code": "InternalError", "status": 500, "count": 6}),
        ))
        .unwrap();
    world
        .add_fault(fault(
            json!({"action": "DescribeFotaTasks", "throttle": true, "count": 1}),
        ))
        .unwrap();
    let now = chrono::Utc::now();
    create::<DesktopMaintenanceWindow>(
        &client,
        &ns,
        dmw("now", &["ecd-hz20001", "ecd-hz20002"], chrono::Duration::hours(1), None),
    )
    .await;
    create::<OtaSchedule>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "OtaSchedule", "metadata": {"name": "watch"},
               "spec": {"bizRegionId": "cn-hangzhou", "appInstanceGroupId": "aig-hz0001", "managementPolicy": "ObserveOnly",
                        "window": {"cron": "0 3 * * 0"}}}),
    )
    .await;
    create::<ImageShare>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": "gone"},
               "spec": {"regionId": "cn-hangzhou", "imageId": "m-gone"}}),
    )
    .await;
    create::<FotaTaskPolicy>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "FotaTaskPolicy", "metadata": {"name": "push"},
               "spec": {"regionId": "cn-hangzhou", "autoPush": true}}),
    )
    .await;
    create::<alicloud_ops_operator::api::UpdateRollout>(
        &client,
        &ns,
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "UpdateRollout", "metadata": {"name": "roll"},
               "spec": {"ota": {"bizRegionId": "cn-hangzhou"}, "startDelay": "1h",
                        "waves": [{"name": "broad", "selector": {"appInstanceGroupIds": ["aig-hz0003"]}}]}}),
    )
    .await;
    wait_reason::<DesktopMaintenanceWindow>(&client, &ns, "now", "Active").await;
    wait_reason::<OtaSchedule>(&client, &ns, "watch", "DriftDetected").await;
    wait_reason::<alicloud_ops_operator::api::UpdateRollout>(&client, &ns, "roll", "Progressing").await;
    wait_reason::<ImageShare>(&client, &ns, "gone", "NotFound").await;
    wait_reason::<FotaTaskPolicy>(&client, &ns, "push", "InSync").await;
    // A few seconds of steady state for the picture.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let text = op.scrape().await;
    scrapes.abort();
    let exported = exported_names(&text);
    // The scenario reached the figures the dashboard shows.
    assert!(text.contains(&format!("alicloud_ops_desktops_in_maintenance{{kind=\"DesktopMaintenanceWindow\",namespace=\"{ns}\",name=\"now\"}} 2")), "{text}");
    assert!(
        text.contains(&format!(
            "alicloud_ops_ota_pending_approvals{{kind=\"OtaSchedule\",namespace=\"{ns}\",name=\"watch\"}} 1"
        )),
        "{text}"
    );
    let since = format!(
        "alicloud_ops_not_ready_since_timestamp_seconds{{kind=\"ImageShare\",namespace=\"{ns}\",name=\"gone\",reason=\"NotFound\"}} "
    );
    let at: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(&since))
        .expect(&text)
        .parse()
        .unwrap();
    assert!(
        (at - now.timestamp() as f64).abs() < 60.0,
        "NotReady since {at}, the test began at {now}"
    );
    assert!(text.contains("alicloud_ops_leader 1"), "{text}");
    assert!(
        metric_sum(&text, "alicloud_ops_reconcile_errors_total", "FotaTaskPolicy") > 0.0,
        "{text}"
    );

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(support::cluster::repo("deploy/grafana/alicloud-ops-operator.json")).unwrap(),
    )
    .unwrap();
    let rules: Value = serde_yaml::from_str(
        &std::fs::read_to_string(support::cluster::repo("deploy/prometheus/prometheusrule.yaml")).unwrap(),
    )
    .unwrap();
    for (what, doc) in [("the dashboard", &dashboard), ("the PrometheusRule", &rules)] {
        let mut exprs = Vec::new();
        expressions(doc, &mut exprs);
        assert!(exprs.len() >= 6, "{what}: {exprs:?}");
        for e in exprs {
            let names: Vec<&str> = e
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("alicloud_ops_"))
                .collect();
            assert!(!names.is_empty(), "{what}: {e:?} reads no metric of the operator");
            for n in names {
                assert!(
                    exported.contains(n),
                    "{what}: {e:?} names {n}, which the operator does not export"
                );
            }
        }
    }
}
