//! The deploy/ artifacts against the code: the RAM policies allow exactly the calls the
//! operator makes (as found in src/cloud/ops), and the read-only one allows no write.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

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
    let text = std::fs::read_to_string(repo("deploy/ram/README.md")).unwrap();
    text.lines()
        .filter(|l| l.starts_with("| ") && l.contains(" 20"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let api = cells[1].split_whitespace().next().unwrap().to_string();
            let ram = cells[2].split('`').nth(1).map(str::to_string);
            (api, ram)
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
