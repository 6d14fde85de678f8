//! RAM policies, enforced per caller as the cloud enforces them: a key (or an assumed role)
//! with a policy attached may call only what the policy allows; a key without one is the
//! account's own and may call everything.
//!
//! The documents are RAM's own (`deploy/ram/*.json`): `Version` "1", `Statement`s of `Effect`
//! (`Allow` or `Deny`), `Action` and `Resource` (a string or a list, `*` and `?` as wildcards).
//! An explicit Deny wins, then any Allow; anything else is denied. `Condition` is refused when
//! the document is loaded: the emulator cannot evaluate it, and ignoring it would allow more
//! than the cloud does.
//!
//! Assumptions (listed in the README's emulator section):
//! - a denied call is answered HTTP 403, `Forbidden.RAM`, with the message the API metadata
//!   gives for that code, and an `AccessDeniedDetail` object naming the RAM action
//!   (`AuthAction`), the principal and `NoPermissionType` (`ImplicitDeny` or `ExplicitDeny`);
//! - the RAM action of a call is [`crate::cloud::ram::ram_action`]'s; STS calls need none;
//! - the resource of ModifyImageShareStatus is
//!   `acs:swas-open:{regionId}:{accountId}:customimage/{ImageId}` (its API page); every other
//!   call authorises on "All Resources", so only a `Resource` of `*` allows it.

use serde_json::{Value, json};

use super::error::ApiFailure;
use super::params::Params;
use crate::cloud::endpoint::Product;

/// One statement of a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Statement {
    allow: bool,
    actions: Vec<String>,
    resources: Vec<String>,
}

/// A RAM policy document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    statements: Vec<Statement>,
}

/// How a policy answers one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// No statement allows it.
    ImplicitDeny,
    /// A `Deny` statement matches it.
    ExplicitDeny,
}

fn strings(v: &Value, field: &str) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(String::from)
                    .ok_or_else(|| format!("{field}: every item must be a string"))
            })
            .collect(),
        _ => Err(format!("{field}: a string or a non-empty list of strings")),
    }
}

impl Policy {
    /// Reads a policy document; the error names the field.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        if doc["Version"] != "1" {
            return Err("Version: must be \"1\"".into());
        }
        let list = doc["Statement"]
            .as_array()
            .ok_or("Statement: a list of statements is required")?;
        let mut statements = Vec::new();
        for (i, st) in list.iter().enumerate() {
            let at = |f: &str| format!("Statement[{i}].{f}");
            let allow = match st["Effect"].as_str() {
                Some("Allow") => true,
                Some("Deny") => false,
                _ => return Err(format!("{}: Allow or Deny", at("Effect"))),
            };
            if st.get("Condition").is_some() {
                return Err(format!(
                    "{}: not emulated (it would allow more than the cloud does)",
                    at("Condition")
                ));
            }
            if st.get("NotAction").is_some() || st.get("NotResource").is_some() {
                return Err(format!("{}: NotAction and NotResource are not emulated", at("Action")));
            }
            statements.push(Statement {
                allow,
                actions: strings(&st["Action"], &at("Action"))?,
                resources: strings(&st["Resource"], &at("Resource"))?,
            });
        }
        Ok(Policy { statements })
    }

    /// Whether the policy lets `action` act on `resource`.
    pub fn decide(&self, action: &str, resource: &str) -> Decision {
        let matches = |st: &&Statement| {
            st.actions
                .iter()
                .any(|a| glob(&a.to_ascii_lowercase(), &action.to_ascii_lowercase()))
                && st.resources.iter().any(|r| glob(r, resource))
        };
        if self.statements.iter().filter(|s| !s.allow).any(|s| matches(&s)) {
            Decision::ExplicitDeny
        } else if self.statements.iter().filter(|s| s.allow).any(|s| matches(&s)) {
            Decision::Allow
        } else {
            Decision::ImplicitDeny
        }
    }

    /// The policy without `action` (exactly as written) in any statement; statements left with
    /// no action go. For tests that take one permission away.
    pub fn without_action(&self, action: &str) -> Policy {
        let statements = self
            .statements
            .iter()
            .map(|s| Statement {
                actions: s.actions.iter().filter(|a| *a != action).cloned().collect(),
                ..s.clone()
            })
            .filter(|s| !s.actions.is_empty())
            .collect();
        Policy { statements }
    }

    /// Every action the policy names, as written.
    pub fn actions(&self) -> Vec<String> {
        self.statements.iter().flat_map(|s| s.actions.clone()).collect()
    }
}

/// `*` matches any run of characters, `?` one.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

pub use crate::cloud::ram::ram_action;

/// The resource a call authorises on: an ARN where the API page names one, else `*`.
pub fn resource(product: Product, action: &str, account: &str, params: &Params) -> String {
    match (product, action) {
        (Product::SwasOpen, "ModifyImageShareStatus") => format!(
            "acs:swas-open:{}:{account}:customimage/{}",
            params.get("RegionId").unwrap_or_default(),
            params.get("ImageId").unwrap_or_default()
        ),
        _ => "*".into(),
    }
}

/// The cloud's answer to a call the caller's policy does not allow.
pub fn denied(action: &str, principal: &str, account: &str, decision: Decision) -> ApiFailure {
    let kind = match decision {
        Decision::ExplicitDeny => "ExplicitDeny",
        _ => "ImplicitDeny",
    };
    ApiFailure::new(
        403,
        "Forbidden.RAM",
        "User not authorized to operate on the specified resource, or this API does not support RAM.",
    )
    .with_detail(json!({
        "AuthAction": action,
        "AuthPrincipalDisplayName": principal,
        "AuthPrincipalOwnerId": account,
        "AuthPrincipalType": "SubUser",
        "NoPermissionType": kind,
        "PolicyType": "AccountLevelIdentityBasedPolicy",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_ram_matches() {
        assert!(glob("*", "acs:swas-open:cn-hangzhou:1:customimage/m-1"));
        assert!(glob(
            "acs:swas-open:*:*:customimage/*",
            "acs:swas-open:cn-hangzhou:1:customimage/m-1"
        ));
        assert!(!glob(
            "acs:swas-open:*:*:customimage/*",
            "acs:swas-open:cn-hangzhou:1:instance/i-1"
        ));
        assert!(glob("ecd:describe*", "ecd:describedesktops"));
        assert!(!glob("ecd:describe*", "ecd:setdesktopmaintenance"));
        assert!(glob("ecd:?pdateFotaTask", "ecd:UpdateFotaTask"));
        // A call on All Resources is allowed only by `*`.
        assert!(!glob("acs:ecd:*:*:desktop/*", "*"));
    }

    #[test]
    fn deny_wins_and_anything_unlisted_is_denied() {
        let policy = Policy::parse(
            r#"{"Version": "1", "Statement": [
                {"Effect": "Allow", "Action": "ecd:*", "Resource": "*"},
                {"Effect": "Deny", "Action": ["ecd:SetDesktopMaintenance"], "Resource": "*"}]}"#,
        )
        .unwrap();
        assert_eq!(policy.decide("ecd:DescribeDesktops", "*"), Decision::Allow);
        assert_eq!(policy.decide("ECD:describedesktops", "*"), Decision::Allow);
        assert_eq!(policy.decide("ecd:SetDesktopMaintenance", "*"), Decision::ExplicitDeny);
        assert_eq!(policy.decide("swas-open:ListCustomImages", "*"), Decision::ImplicitDeny);
    }

    #[test]
    fn a_document_the_emulator_cannot_evaluate_is_refused_naming_the_field() {
        let err = |text: &str| Policy::parse(text).unwrap_err();
        assert!(err(r#"{"Version": "2", "Statement": []}"#).starts_with("Version"));
        assert!(
            err(r#"{"Version": "1", "Statement": [{"Effect": "Maybe", "Action": "a", "Resource": "*"}]}"#)
                .starts_with("Statement[0].Effect")
        );
        assert!(
            err(
                r#"{"Version": "1", "Statement": [{"Effect": "Allow", "Action": "a", "Resource": "*",
                "Condition": {"IpAddress": {"acs:SourceIp": "10.0.0.0/8"}}}]}"#
            )
            .starts_with("Statement[0].Condition")
        );
        assert!(
            err(r#"{"Version": "1", "Statement": [{"Effect": "Allow", "Action": [], "Resource": "*"}]}"#)
                .starts_with("Statement[0].Action")
        );
    }

    #[test]
    fn the_project_policies_load() {
        for file in ["deploy/ram/operator.json", "deploy/ram/read-only.json"] {
            let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/").to_string() + file).unwrap();
            Policy::parse(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        }
    }
}
