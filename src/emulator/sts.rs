//! sts 2015-04-01: AssumeRoleWithOIDC. Any well-formed OIDC token is accepted; the
//! credentials it hands out work until they expire by the emulator's clock.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::auth::KeyStore;
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
    keys.add_sts(id.clone(), secret.clone(), security_token.clone(), expiration);
    let role_name = role_arn.rsplit('/').next().unwrap_or_default();
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
