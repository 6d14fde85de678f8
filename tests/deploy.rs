//! The deploy/ artifacts against the code: the RAM policies allow exactly the calls the
//! operator makes (as found in src/cloud/ops), and the read-only one allows no write.

use std::collections::BTreeSet;
use std::path::Path;

use alicloud_ops_operator::emulator::ram::Policy;
use serde_json::Value;

#[path = "support/mod.rs"]
mod support;

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Every cloud action the operator's code sends: `RpcRequest::new(Product::X, "Action"`.
fn actions_in_code() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(repo("src/cloud/ops")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for part in text.split("RpcRequest::new(Product::").skip(1) {
            let action = part.split('"').nth(1).unwrap();
            out.insert(action.to_string());
        }
    }
    out
}

/// deploy/ram/README.md's table: API action → RAM action (`None` for "none").
fn documented() -> Vec<(String, Option<String>)> {
    documented_calls().into_iter().map(|(api, _, ram)| (api, ram)).collect()
}

/// deploy/ram/README.md's table: (API action, product code, RAM action).
fn documented_calls() -> Vec<(String, String, Option<String>)> {
    let text = std::fs::read_to_string(repo("deploy/ram/README.md")).unwrap();
    text.lines()
        .filter(|l| l.starts_with("| ") && l.contains(" 20"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let mut api = cells[1].split_whitespace();
            let action = api.next().unwrap().to_string();
            let product = api.next().unwrap().trim_start_matches('(').to_string();
            let ram = cells[2].split('`').nth(1).map(str::to_string);
            (action, product, ram)
        })
        .collect()
}

/// The actions a policy allows, by resource.
fn allowed(file: &str) -> BTreeSet<(String, String)> {
    let policy: Value = serde_json::from_str(&std::fs::read_to_string(repo(file)).unwrap()).unwrap();
    assert_eq!(policy["Version"], "1", "{file}");
    let mut out = BTreeSet::new();
    for st in policy["Statement"].as_array().unwrap() {
        assert_eq!(st["Effect"], "Allow", "{file}: only Allow statements");
        let actions: Vec<String> = match &st["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(a) => a.iter().map(|a| a.as_str().unwrap().to_string()).collect(),
            other => panic!("{file}: Action {other}"),
        };
        let resource = st["Resource"].as_str().unwrap().to_string();
        for a in actions {
            out.insert((a, resource.clone()));
        }
    }
    out
}

fn is_read(api: &str) -> bool {
    api.starts_with("Describe") || api.starts_with("List")
}

#[test]
fn ram_policies_allow_exactly_the_calls_the_operator_makes() {
    let code = actions_in_code();
    let table = documented();
    let in_table: BTreeSet<String> = table.iter().map(|(api, _)| api.clone()).collect();
    assert_eq!(
        in_table, code,
        "deploy/ram/README.md documents every call in src/cloud/ops, and no other"
    );

    let needed = |filter: &dyn Fn(&str) -> bool| -> BTreeSet<String> {
        table
            .iter()
            .filter(|(api, _)| filter(api))
            .filter_map(|(_, ram)| ram.clone())
            .collect()
    };
    let operator = allowed("deploy/ram/operator.json");
    let operator_actions: BTreeSet<String> = operator.iter().map(|(a, _)| a.clone()).collect();
    assert_eq!(operator_actions, needed(&|_| true), "operator.json");
    let read_only = allowed("deploy/ram/read-only.json");
    let read_actions: BTreeSet<String> = read_only.iter().map(|(a, _)| a.clone()).collect();
    assert_eq!(
        read_actions,
        needed(&is_read),
        "read-only.json: the reads, and nothing that writes"
    );
    assert!(read_actions.iter().all(|a| {
        table
            .iter()
            .filter(|(_, r)| r.as_deref() == Some(a))
            .all(|(api, _)| is_read(api))
    }));
    // The share is the one write that can be granted per image.
    assert!(
        operator.contains(&(
            "swas-open:ModifyImageShareStatus".into(),
            "acs:swas-open:*:*:customimage/*".into()
        )),
        "{operator:?}"
    );
}

/// The helm and kubectl that `make test` builds and installs (scripts/build-go-tools.sh,
/// scripts/setup-python.sh).
fn tool(name: &str, path: &str) -> String {
    let bin = repo(path);
    assert!(
        bin.exists(),
        "{name} is not installed ({}); run `make tools`",
        bin.display()
    );
    bin.display().to_string()
}

fn run(bin: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(bin)
        .args(args)
        .current_dir(repo("."))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{bin} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Objects of a multi-document YAML, by `Kind/name`.
fn objects(yaml: &str) -> std::collections::BTreeMap<String, Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|d| {
            let v: Value = serde::Deserialize::deserialize(d).unwrap();
            (!v.is_null()).then(|| {
                (
                    format!(
                        "{}/{}",
                        v["kind"].as_str().unwrap(),
                        v["metadata"]["name"].as_str().unwrap()
                    ),
                    v,
                )
            })
        })
        .collect()
}

/// Helm leaves the release's Namespace to `--create-namespace`; everything else matches.
fn without_namespace(
    mut objects: std::collections::BTreeMap<String, Value>,
) -> std::collections::BTreeMap<String, Value> {
    objects.retain(|k, _| !k.starts_with("Namespace/"));
    objects
}

fn assert_same(
    chart: &std::collections::BTreeMap<String, Value>,
    kustomize: &std::collections::BTreeMap<String, Value>,
    what: &str,
) {
    let names = |m: &std::collections::BTreeMap<String, Value>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(chart), names(kustomize), "{what}: the same objects");
    for (key, object) in chart {
        assert_eq!(
            serde_json::to_string_pretty(object).unwrap(),
            serde_json::to_string_pretty(&kustomize[key]).unwrap(),
            "{what}: {key} differs"
        );
    }
}

/// One source of truth: the chart with its default values renders the kustomize base, and in
/// namespaced mode the namespaced overlay, object for object.
#[test]
fn the_helm_chart_renders_what_kustomize_installs() {
    let helm = tool("helm", "target/tools/helm");
    let kubectl = tool("kubectl", "target/venv/bin/kubectl");
    let chart = "deploy/helm/alicloud-ops-operator";
    run(&helm, &["lint", "--strict", chart]);
    let template = |extra: &[&str]| {
        let mut args = vec![
            "template",
            "alicloud-ops-operator",
            chart,
            "--namespace",
            "alicloud-ops-system",
            "--include-crds",
        ];
        args.extend_from_slice(extra);
        objects(&run(&helm, &args))
    };
    let base = without_namespace(objects(&run(&kubectl, &["kustomize", "deploy/base"])));
    assert_same(&template(&[]), &base, "default values against deploy/base");
    let namespaced = without_namespace(objects(&run(&kubectl, &["kustomize", "deploy/overlays/namespaced"])));
    assert_same(
        &template(&["--set", "installMode=namespaced"]),
        &namespaced,
        "installMode=namespaced against deploy/overlays/namespaced",
    );
    let servicemonitor = without_namespace(objects(&run(
        &kubectl,
        &["kustomize", "deploy/overlays/servicemonitor"],
    )));
    assert_same(
        &template(&["--set", "serviceMonitor.enabled=true"]),
        &servicemonitor,
        "serviceMonitor.enabled against deploy/overlays/servicemonitor",
    );
    let networkpolicy = without_namespace(objects(&run(&kubectl, &["kustomize", "deploy/overlays/networkpolicy"])));
    assert_same(
        &template(&["--set", "networkPolicy.enabled=true"]),
        &networkpolicy,
        "networkPolicy.enabled against deploy/overlays/networkpolicy",
    );
}

/// Every value of the chart has a description, and the README's table is the one
/// scripts/helm-values-table.py makes from values.yaml.
#[test]
fn every_chart_value_is_documented_and_the_values_table_is_current() {
    let python = tool("python", "target/venv/bin/python");
    run(&python, &["scripts/helm-values-table.py", "--check"]);
}

/// The PR-preview snippets are valid YAML, and each `plan` command in them is one the binary
/// accepts, with markdown output.
#[test]
fn the_ci_snippets_parse_and_call_plan_as_it_is() {
    use clap::Parser;
    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        plan: alicloud_ops_operator::cli::plan::PlanArgs,
    }
    for file in ["docs/ci/github-actions-plan.yml", "docs/ci/gitlab-ci-plan.yml"] {
        let text = std::fs::read_to_string(repo(file)).unwrap();
        let _: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let line = text
            .lines()
            .find_map(|l| l.split_once("alicloud-ops-operator plan ").map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("{file}: no plan command"));
        let args: Vec<&str> = line.split(" > ").next().unwrap().split_whitespace().collect();
        let parsed = Wrapper::try_parse_from(std::iter::once("plan").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{file}: {args:?}: {e}"));
        assert_eq!(
            parsed.plan.output,
            alicloud_ops_operator::cli::plan::Output::Markdown,
            "{file}"
        );
    }
}

/// `deploy/` names every registered kind, and no other: the RBAC rules of the operator (the
/// kustomize base, the namespaced overlay, the chart) and the Argo CD health check. A fifth
/// kind registered in `controller::registry` fails here until deploy/ grants it.
#[test]
fn deploy_grants_exactly_the_registered_kinds() {
    use alicloud_ops_operator::controller::registry;
    let plurals: BTreeSet<String> = registry::names().into_iter().map(|n| n.plural).collect();
    let statuses: BTreeSet<String> = plurals.iter().map(|p| format!("{p}/status")).collect();
    for file in [
        "deploy/base/rbac.yaml",
        "deploy/overlays/namespaced/role.yaml",
        "deploy/helm/alicloud-ops-operator/templates/rbac.yaml",
    ] {
        let text = std::fs::read_to_string(repo(file)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut granted: Vec<BTreeSet<String>> = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            if line.trim_start().trim_start_matches("- ") == "apiGroups: [ops.alicloud.dev]" {
                let resources = lines[i + 1]
                    .trim()
                    .strip_prefix("resources: [")
                    .and_then(|r| r.strip_suffix(']'))
                    .unwrap_or_else(|| panic!("{file}:{}: expected `resources: [...]`", i + 2));
                granted.push(resources.split(',').map(|r| r.trim().to_string()).collect());
            }
        }
        assert_eq!(granted, vec![plurals.clone(), statuses.clone()], "{file}");
    }
    let health = std::fs::read_to_string(repo("deploy/argocd/health.lua")).unwrap();
    for n in registry::names() {
        assert!(
            health.contains(n.kind),
            "deploy/argocd/health.lua does not name {}",
            n.kind
        );
    }
}

/// The reasons that need a person are Degraded in the Argo CD health check, and the
/// `kubectl explain` text of a condition's `reason` names the terminal ones and the others
/// that need a person, as `Reason` states them.
#[test]
fn health_and_explain_state_the_reason_table() {
    use alicloud_ops_operator::reconcile::Reason;
    let words = |text: &str| -> BTreeSet<String> {
        text.split('`')
            .skip(1)
            .step_by(2)
            .filter(|w| Reason::parse(w).is_some())
            .map(String::from)
            .collect()
    };
    let set = |f: fn(Reason) -> bool| -> BTreeSet<String> {
        Reason::ALL
            .into_iter()
            .filter(|r| f(*r))
            .map(|r| r.as_str().to_string())
            .collect()
    };
    let lua = std::fs::read_to_string(repo("deploy/argocd/health.lua")).unwrap();
    let lua_table = |name: &str| -> BTreeSet<String> {
        let table = lua
            .split(&format!("local {name} = {{"))
            .nth(1)
            .and_then(|t| t.split('}').next())
            .unwrap_or_else(|| panic!("health.lua: `local {name} = {{ ... }}`"));
        table
            .split(',')
            .filter_map(|e| e.split('=').next())
            .map(|w| w.trim().to_string())
            .filter(|w| !w.is_empty())
            .collect()
    };
    assert_eq!(
        lua_table("degraded"),
        set(Reason::needs_attention),
        "deploy/argocd/health.lua"
    );
    assert_eq!(
        lua_table("suspended"),
        set(|r| r.health() == alicloud_ops_operator::reconcile::Health::Suspended),
        "deploy/argocd/health.lua"
    );

    let crd = serde_json::to_value(alicloud_ops_operator::controller::registry::crds().remove(0)).unwrap();
    let explain = crd
        .pointer("/spec/versions/0/schema/openAPIV3Schema/properties/status/properties/conditions/items/properties/reason/description")
        .and_then(Value::as_str)
        .expect("a description of status.conditions[].reason");
    let (terminal, rest) = explain.split_once("Retried at the resync").expect("two sentences");
    assert_eq!(words(terminal), set(Reason::is_terminal), "{explain}");
    assert_eq!(
        words(rest),
        set(|r| r.needs_attention() && !r.is_terminal()),
        "{explain}"
    );
}

/// Each call the operator makes, signed with the default key and sent to the emulator while
/// `policy` is attached to it: the error code and message, or `None` when RAM let it through
/// (the emulator may still refuse its parameters).
async fn call_under(policy: &Policy, api: &str, product: &str) -> Option<(String, String)> {
    use alicloud_ops_operator::cloud::endpoint::Product;
    use alicloud_ops_operator::cloud::request::RpcRequest;
    let emu = support::emulator().await;
    emu.world().attach_policy(
        alicloud_ops_operator::emulator::DEFAULT_ACCESS_KEY_ID,
        Some(policy.clone()),
    );
    let client = support::client(&emu, alicloud_ops_operator::cloud::SignatureVersion::V3);
    let product: Product = product.parse().unwrap();
    let action: &'static str = Box::leak(api.to_string().into_boxed_str());
    let mut req = RpcRequest::new(product, action, "cn-hangzhou");
    for (k, v) in [
        ("RegionId", "cn-hangzhou"),
        ("BizRegionId", "cn-hangzhou"),
        ("ImageId", "m-hz0001"),
    ] {
        req.query.push((k.into(), v.into()));
    }
    match client.call(&req).await {
        Ok(_) => None,
        Err(e) if e.code() == "Forbidden.RAM" => Some(("Forbidden.RAM".into(), e.to_string())),
        Err(_) => None,
    }
}

/// The emulator enforces deploy/ram/operator.json as RAM does: every call the operator makes
/// passes under it, and without any one of its actions the call that action allows is refused
/// with `Forbidden.RAM`, and the error the operator reports names the missing action.
#[tokio::test(flavor = "multi_thread")]
async fn removing_any_action_from_operator_json_breaks_the_call_that_needs_it() {
    let operator = Policy::parse(&std::fs::read_to_string(repo("deploy/ram/operator.json")).unwrap()).unwrap();
    let mut removed = BTreeSet::new();
    for (api, product, ram) in documented_calls() {
        assert_eq!(
            call_under(&operator, &api, &product).await,
            None,
            "{api} under operator.json"
        );
        let Some(ram) = ram else { continue };
        let (code, message) = call_under(&operator.without_action(&ram), &api, &product)
            .await
            .unwrap_or_else(|| panic!("{api} went through without {ram}"));
        assert_eq!(code, "Forbidden.RAM");
        assert!(message.contains(&ram), "{api} without {ram}: {message}");
        removed.insert(ram);
    }
    let named: BTreeSet<String> = operator.actions().into_iter().collect();
    assert_eq!(removed, named, "every action of operator.json is needed by some call");
}

/// `plan` under deploy/ram/read-only.json: every read passes, every write is refused.
#[tokio::test(flavor = "multi_thread")]
async fn read_only_json_lets_every_read_through_and_no_write() {
    let read_only = Policy::parse(&std::fs::read_to_string(repo("deploy/ram/read-only.json")).unwrap()).unwrap();
    for (api, product, ram) in documented_calls() {
        let refused = call_under(&read_only, &api, &product).await;
        match (is_read(&api), &ram) {
            (_, None) => assert_eq!(refused, None, "{api} needs no permission"),
            (true, Some(_)) => assert_eq!(refused, None, "{api} is a read"),
            (false, Some(ram)) => {
                let (_, message) = refused.unwrap_or_else(|| panic!("{api}, a write, went through read-only.json"));
                assert!(message.contains(ram.as_str()), "{message}");
            }
        }
    }
}
