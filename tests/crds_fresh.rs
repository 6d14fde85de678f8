//! `crds/`, the Helm chart's `crds/` and `deploy/base/crds.yaml` must match the Rust types.
//! Regenerate with `make crds`.

use alicloud_ops_operator::cli::crd::{bundle, rendered};

#[test]
fn committed_crds_match_the_types() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["crds", "deploy/helm/alicloud-ops-operator/crds"] {
        for (name, yaml) in rendered() {
            let committed = std::fs::read_to_string(root.join(dir).join(&name)).unwrap_or_default();
            assert!(committed == yaml, "{dir}/{name} is stale: run `make crds`");
        }
        let files = std::fs::read_dir(root.join(dir)).unwrap().count();
        assert_eq!(files, rendered().len(), "{dir}/ holds exactly one file per kind");
    }
    let committed = std::fs::read_to_string(root.join("deploy/base/crds.yaml")).unwrap_or_default();
    assert!(committed == bundle(), "deploy/base/crds.yaml is stale: run `make crds`");
}

#[test]
fn every_crd_field_has_a_description_for_kubectl_explain() {
    fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (k, v) in props {
                let p = format!("{path}.{k}");
                if v.get("description").is_none() && !matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    missing.push(p.clone());
                }
                walk(&p, v, missing);
                if let Some(items) = v.get("items") {
                    walk(&format!("{p}[]"), items, missing);
                }
            }
        }
    }
    for (name, yaml) in rendered() {
        let crd: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let mut missing = Vec::new();
        walk("spec", schema, &mut missing);
        assert!(missing.is_empty(), "{name}: fields without a description: {missing:?}");
    }
}
