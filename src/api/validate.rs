//! Client-side validation with the very schema and CEL rules the CRDs carry, so `plan`
//! rejects what `kubectl apply` would, naming the field.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use regex::Regex;
use serde_json::Value;

/// The openAPIV3Schema of a CRD's first version.
pub fn schema_of(crd: &CustomResourceDefinition) -> Option<Value> {
    let schema = crd
        .spec
        .versions
        .first()?
        .schema
        .as_ref()?
        .open_api_v3_schema
        .as_ref()?;
    serde_json::to_value(schema).ok()
}

/// Checks a whole object (`apiVersion`, `kind`, `metadata`, `spec`) against `crd`. Returns
/// every problem as `field.path: what is wrong`.
pub fn validate(crd: &CustomResourceDefinition, object: &Value) -> Result<(), Vec<String>> {
    let schema =
        schema_of(crd).ok_or_else(|| vec![format!("kind: the CRD of {} has no schema", crd.spec.names.kind)])?;
    let mut errors = Vec::new();
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() {
        errors.push("metadata.name: Required value".to_string());
    }
    let Some(spec) = object.get("spec") else {
        errors.push("spec: Required value".to_string());
        return Err(errors);
    };
    if let Some(spec_schema) = schema.pointer("/properties/spec") {
        structural(spec_schema, spec, "spec", &mut errors);
    }
    if let Some(obj) = object.as_object() {
        for k in obj.keys() {
            if !matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "spec" | "status") {
                errors.push(format!("{k}: unknown field"));
            }
        }
    }
    if errors.is_empty() {
        // CEL rules run on a structurally valid object, as in the apiserver.
        let scoped = serde_json::json!({"spec": spec});
        if let Err(e) = kube::core::cel::Validator::new().validate(&schema, &scoped, None) {
            errors.extend(e.as_slice().iter().map(|v| v.to_string()));
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn structural(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if value.is_null() {
        if !schema.get("nullable").and_then(Value::as_bool).unwrap_or(false) {
            errors.push(format!("{path}: must not be null"));
        }
        return;
    }
    if schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true)
        && !matches!(type_name(value), "integer" | "string")
    {
        errors.push(format!(
            "{path}: Invalid value: {value}: must be an integer or a string"
        ));
        return;
    }
    if let Some(want) = schema.get("type").and_then(Value::as_str) {
        let got = type_name(value);
        let ok = got == want || (want == "number" && got == "integer");
        if !ok {
            errors.push(format!("{path}: Invalid value: {value}: must be of type {want}"));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
        errors.push(format!(
            "{path}: Unsupported value: {value}: supported values: {}",
            list.join(", ")
        ));
    }
    match value {
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && len < min
            {
                errors.push(format!(
                    "{path}: Invalid value: {value}: must be at least {min} characters long"
                ));
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && len > max
            {
                errors.push(format!("{path}: Too long: may not be more than {max} characters"));
            }
            if let Some(p) = schema.get("pattern").and_then(Value::as_str)
                && let Ok(re) = Regex::new(p)
                && !re.is_match(s)
            {
                errors.push(format!("{path}: Invalid value: {value}: should match '{p}'"));
            }
            if schema.get("format").and_then(Value::as_str) == Some("date-time")
                && chrono::DateTime::parse_from_rfc3339(s).is_err()
            {
                errors.push(format!(
                    "{path}: Invalid value: {value}: must be an RFC 3339 date-time such as 2026-11-28T22:00:00Z"
                ));
            }
        }
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && n < min
            {
                errors.push(format!("{path}: Invalid value: must have at least {min} items"));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && n > max
            {
                errors.push(format!("{path}: Too many: {n}: must have at most {max} items"));
            }
            if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set") {
                for (i, item) in items.iter().enumerate() {
                    if items[..i].contains(item) {
                        errors.push(format!("{path}[{i}]: Duplicate value: {item}"));
                    }
                }
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    structural(item_schema, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            for req in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
                if let Some(r) = req.as_str()
                    && !map.contains_key(r)
                {
                    errors.push(format!("{path}.{r}: Required value"));
                }
            }
            // A map (`additionalProperties`): every value has that schema.
            let values = schema.get("additionalProperties").filter(|a| a.is_object());
            if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
                && map.len() as u64 > max
            {
                errors.push(format!(
                    "{path}: Too many properties: {}: must have at most {max}",
                    map.len()
                ));
            }
            for (k, v) in map {
                match props.and_then(|p| p.get(k)).or(values) {
                    Some(s) => structural(s, v, &format!("{path}.{k}"), errors),
                    None if schema.get("x-kubernetes-preserve-unknown-fields").is_none() => {
                        errors.push(format!("{path}.{k}: unknown field"))
                    }
                    None => {}
                }
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or_default();
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                && x < min
            {
                errors.push(format!(
                    "{path}: Invalid value: {n}: must be greater than or equal to {min}"
                ));
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                && x > max
            {
                errors.push(format!(
                    "{path}: Invalid value: {n}: must be less than or equal to {max}"
                ));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DesktopMaintenanceWindow, ImageShare};
    use kube::CustomResourceExt;
    use serde_json::json;

    fn dmw(spec: Value) -> Value {
        json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "DesktopMaintenanceWindow", "metadata": {"name": "w"}, "spec": spec})
    }

    #[test]
    fn a_good_object_passes() {
        let ok = dmw(
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "window": {"start": "2026-11-22T12:00:00Z", "end": "2026-11-22T14:00:00Z"}}),
        );
        assert_eq!(validate(&DesktopMaintenanceWindow::crd(), &ok), Ok(()));
    }

    #[test]
    fn schema_errors_name_the_field() {
        let bad = dmw(
            json!({"regionId": "Hangzhou", "desktopIds": ["ecd-a", "ecd-a", "x"], "windw": {}, "window": {"start": "soon", "end": "2026-11-22T14:00:00Z"}}),
        );
        let errs = validate(&DesktopMaintenanceWindow::crd(), &bad).unwrap_err();
        let all = errs.join("\n");
        assert!(all.contains("spec.regionId: Invalid value"), "{all}");
        assert!(all.contains("spec.desktopIds[1]: Duplicate value"), "{all}");
        assert!(all.contains("spec.desktopIds[2]: Invalid value"), "{all}");
        assert!(all.contains("spec.windw: unknown field"), "{all}");
        assert!(all.contains("spec.window.start: Invalid value"), "{all}");
    }

    #[test]
    fn cel_rules_run_as_in_the_apiserver() {
        let bad = dmw(
            json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"], "selector": {"officeSiteId": "s"},
            "window": {"start": "2026-11-22T15:00:00Z", "end": "2026-11-22T14:00:00Z"}}),
        );
        let all = validate(&DesktopMaintenanceWindow::crd(), &bad).unwrap_err().join("\n");
        assert!(all.contains("set exactly one of desktopIds or selector"), "{all}");
        assert!(all.contains("window.end must be after window.start"), "{all}");
    }

    #[test]
    fn cron_fields_out_of_range_and_utc_offsets_are_refused_as_the_apiserver_does() {
        let with = |cron: &str, tz: &str| {
            dmw(json!({"regionId": "cn-hangzhou", "desktopIds": ["ecd-a"],
                "recurring": {"cron": cron, "duration": "2h", "timeZone": tz}}))
        };
        for (cron, words) in [
            ("60 1 * * *", "the minute (the 1st field) must be within 0-59"),
            ("0 1-24 * * *", "the hour (the 2nd field) must be within 0-23"),
            ("0 1 0 * *", "the day of month (the 3rd field) must be within 1-31"),
            ("0 1 * */13 *", "the month (the 4th field) must be within 1-12"),
            ("0 1 * * 1,8", "the day of week (the 5th field) must be within 0-7"),
        ] {
            let all = validate(&DesktopMaintenanceWindow::crd(), &with(cron, "UTC"))
                .unwrap_err()
                .join("\n");
            assert!(
                all.contains(&format!("spec.recurring.cron: cron {cron}: {words}")),
                "{all}"
            );
        }
        for cron in [
            "59 23 31 12 7",
            "*/15 0-23 1,15W JAN-DEC MON-FRI",
            "0 3 L * 5L",
            "0 3 ? * 1#2",
            "10 10 10 10 0",
        ] {
            assert_eq!(
                validate(&DesktopMaintenanceWindow::crd(), &with(cron, "Asia/Shanghai")),
                Ok(()),
                "{cron}"
            );
        }
        let all = validate(&DesktopMaintenanceWindow::crd(), &with("0 1 * * *", "+08:00"))
            .unwrap_err()
            .join("\n");
        assert!(
            all.contains("spec.recurring.timeZone: timeZone must be an IANA time zone name"),
            "{all}"
        );
    }

    /// The rollout's rules, as the apiserver runs them (`tests/e2e/install.rs` sends the same
    /// specs to it): integers or percentages, bounds, and rules across fields.
    #[test]
    fn rollout_rules_run_as_in_the_apiserver() {
        let crd = crate::controller::registry::crd_of("UpdateRollout").unwrap();
        let check = |spec: Value| {
            validate(
                &crd,
                &json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "UpdateRollout", "metadata": {"name": "r"}, "spec": spec}),
            )
        };
        let wave = |extra: Value| {
            let mut w = json!({"name": "canary", "selector": {"tags": {"ring": "canary"}}});
            w.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            w
        };
        let ota = json!({"bizRegionId": "cn-hangzhou"});
        let fota = json!({"regionId": "cn-hangzhou"});
        assert_eq!(
            check(
                json!({"fota": {"regionId": "cn-hangzhou", "appVersion": "2.1.0", "drain": {"policy": "SkipBusy", "retryEvery": "2m"}},
                       "waves": [{"name": "canary", "selector": {"desktopIds": ["ecd-1", "ecd-2"]}}, {"name": "rest", "selector": {"officeSiteId": "cn-hangzhou+dir-1", "tags": {"ring": "broad"}}, "maxUnavailable": "10%"}],
                       "failurePolicy": {"maxFailures": 1}})
            ),
            Ok(())
        );
        assert_eq!(
            check(
                json!({"ota": ota, "waves": [wave(json!({"maxUnavailable": "25%", "soak": "30m"})), {"name": "broad", "selector": {"appInstanceGroupIds": ["aig-1", "aig-2"]}, "maxUnavailable": 2}],
                         "failurePolicy": {"maxFailures": 1}})
            ),
            Ok(())
        );
        let cases = [
            (json!({"ota": ota, "waves": []}), "spec.waves"),
            (
                json!({"ota": ota, "waves": [{"name": "canary", "selector": {}}]}),
                "selector: give appInstanceGroupIds or tags",
            ),
            (
                json!({"ota": ota, "waves": [wave(json!({"maxUnavailable": 0}))]}),
                "maxUnavailable is a number of at least 1",
            ),
            (
                json!({"ota": ota, "waves": [wave(json!({"maxUnavailable": "150%"}))]}),
                "maxUnavailable is a number of at least 1",
            ),
            (
                json!({"ota": ota, "waves": [wave(json!({"maxUnavailable": true}))]}),
                "must be an integer or a string",
            ),
            (
                json!({"ota": ota, "waves": [wave(json!({"soak": "800h"}))]}),
                "soak must be at most 720h",
            ),
            (
                json!({"ota": ota, "waves": [{"name": "c", "selector": {"appInstanceGroupIds": ["aig-1"]}}], "failurePolicy": {"maxFailures": 2}}),
                "failurePolicy.maxFailures is more than a wave's appInstanceGroupIds",
            ),
            (
                json!({"ota": ota, "waves": [wave(json!({}))], "failurePolicy": {"maxFailures": "101%"}}),
                "maxFailures is a number of at least 0",
            ),
            (
                json!({"ota": ota, "waves": [wave(json!({})), wave(json!({}))]}),
                "waves: each wave needs a name of its own",
            ),
            (
                json!({"ota": ota, "fota": fota, "waves": [wave(json!({}))]}),
                "give exactly one target",
            ),
            (json!({"waves": [wave(json!({}))]}), "give exactly one target"),
            (
                json!({"ota": ota, "waves": [{"name": "c", "selector": {"officeSiteId": "cn-hangzhou+dir-1"}}]}),
                "an ota rollout selects delivery groups",
            ),
            (
                json!({"fota": fota, "waves": [{"name": "c", "selector": {"appInstanceGroupIds": ["aig-1"]}}]}),
                "a fota rollout selects cloud computers",
            ),
            (
                json!({"fota": fota, "waves": [{"name": "c", "selector": {"desktopIds": ["ecd-1"]}}], "failurePolicy": {"maxFailures": 2}}),
                "failurePolicy.maxFailures is more than a wave's appInstanceGroupIds or desktopIds",
            ),
            (
                json!({"fota": {"regionId": "cn-hangzhou", "drain": {"policy": "Immediate"}}, "waves": [wave(json!({}))]}),
                "fota.drain.policy: a rollout disconnects nobody",
            ),
            (
                json!({"fota": {"regionId": "cn-hangzhou", "drain": {"policy": "SkipBusy", "idleAfter": "30m"}}, "waves": [wave(json!({}))]}),
                "fota.drain.idleAfter",
            ),
        ];
        for (spec, want) in cases {
            let errors = check(spec.clone()).expect_err(&format!("{spec} must be refused"));
            assert!(
                errors.iter().any(|e| e.contains(want)),
                "{spec}: {errors:?} does not say {want:?}"
            );
        }
    }

    #[test]
    fn enums_types_and_required_fields() {
        let bad = json!({"apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": "i"},
            "spec": {"regionId": "cn-hangzhou", "shared": "yes", "deletionPolicy": "Delete"}});
        let all = validate(&ImageShare::crd(), &bad).unwrap_err().join("\n");
        assert!(all.contains("spec.imageId: Required value"), "{all}");
        assert!(
            all.contains("spec.shared: Invalid value: \"yes\": must be of type boolean"),
            "{all}"
        );
        assert!(
            all.contains("spec.deletionPolicy: Unsupported value: \"Delete\""),
            "{all}"
        );
    }
}
