//! sts 2015-04-01: AssumeRoleWithOIDC and GetCallerIdentity. Any well-formed OIDC token is
//! accepted; the credentials it hands out work until they expire by the emulator's clock,
//! and act as the role's account.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::auth::{Caller, Identity, KeyStore};
use super::error::{ApiFailure, ApiResult};
use super::params::Params;

fn check_arn(name: &str, value: &str, kind: &str) -> ApiResult<()> {
    let ok = value
        .strip_prefix("acs:ram::")
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(account, res)| {
            !account.is_empty()
                && account.bytes().all(|b| b.is_ascii_digit())
                && res
                    .strip_prefix(kind)
                    .is_some_and(|n| n.starts_with('/') && n.len() > 1)
        });
    if ok {
        Ok(())
    } else {
        Err(ApiFailure::invalid(
            name,
            format!("{value:?} is not an ARN of the form acs:ram::<account>:{kind}/<name>"),
        ))
    }
}

pub fn assume_role_with_oidc(keys: &mut KeyStore, params: &Params, now: DateTime<Utc>) -> ApiResult<Value> {
    let role_arn = params.required("RoleArn")?;
    check_arn("RoleArn", role_arn, "role")?;
    check_arn("OIDCProviderArn", params.required("OIDCProviderArn")?, "oidc-provider")?;
    let token = params.required("OIDCToken")?;
    if !(4..=20_000).contains(&token.len()) {
        return Err(ApiFailure::invalid("OIDCToken", "must be 4 to 20000 characters"));
    }
    let session = params.required("RoleSessionName")?;
    if !(2..=64).contains(&session.len())
        || !session
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
    {
        return Err(ApiFailure::invalid(
            "RoleSessionName",
            "must be 2 to 64 characters of letters, digits, '.', '@', '-' and '_'",
        ));
    }
    let duration = params.int("DurationSeconds", 900, 43_200, 3600)?;
    let id = format!("STS.{}", &uuid::Uuid::new_v4().simple().to_string()[..20]);
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let security_token = format!("CAIS{}", uuid::Uuid::new_v4().simple());
    let expiration = now + Duration::seconds(duration);
    let role_name = role_arn.rsplit('/').next().unwrap_or_default();
    let account = role_arn
        .strip_prefix("acs:ram::")
        .and_then(|r| r.split_once(':'))
        .map(|(a, _)| a.to_string())
        .unwrap_or_default();
    let role_id = format!("3{:0>17}", role_name.len());
    let identity = Identity {
        account_id: account.clone(),
        identity_type: "AssumedRoleUser".into(),
        arn: format!("acs:ram::{account}:assumed-role/{role_name}/{session}"),
        user_id: format!("{role_id}:{session}"),
        principal_id: format!("{role_id}:{session}"),
        role_id,
    };
    keys.add_sts(id.clone(), secret.clone(), security_token.clone(), expiration, identity);
    Ok(json!({
        "OIDCTokenInfo": {"Subject": "system:serviceaccount", "Issuer": "https://oidc-emulator.local", "ClientIds": "sts.aliyuncs.com"},
        "AssumedRoleUser": {"Arn": format!("{role_arn}/{session}"), "AssumedRoleId": format!("3{}:{session}", role_name.len())},
        "Credentials": {
            "AccessKeyId": id,
            "AccessKeySecret": secret,
            "SecurityToken": security_token,
            "Expiration": crate::cloud::canonical::timestamp(expiration),
        },
    }))
}

/// Who the caller's key acts as: the account, the RAM user or assumed role.
pub fn get_caller_identity(keys: &KeyStore, caller: &Caller) -> ApiResult<Value> {
    let identity = keys
        .identity(caller.access_key_id())
        .ok_or_else(|| ApiFailure::new(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."))?;
    let mut body = json!({
        "AccountId": identity.account_id,
        "IdentityType": identity.identity_type,
        "Arn": identity.arn,
        "UserId": identity.user_id,
        "PrincipalId": identity.principal_id,
    });
    if !identity.role_id.is_empty() {
        body["RoleId"] = json!(identity.role_id);
    }
    Ok(body)
}
