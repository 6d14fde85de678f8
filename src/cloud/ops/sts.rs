//! STS (2015-04-01): AssumeRoleWithOIDC, the RRSA exchange (not signed with a key), and
//! GetCallerIdentity, the account a key acts in.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::cloud::credentials::Credentials;
use crate::cloud::endpoint::Product;
use crate::cloud::error::CloudError;
use crate::cloud::request::RpcRequest;
use crate::cloud::secret::SecretString;
use crate::cloud::transport::Transport;

#[derive(Clone, Debug)]
pub struct AssumeRoleWithOidc {
    pub role_arn: String,
    pub oidc_provider_arn: String,
    pub oidc_token: SecretString,
    pub role_session_name: String,
    pub duration_seconds: u32,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StsCredentials {
    pub access_key_id: String,
    pub access_key_secret: SecretString,
    pub security_token: SecretString,
    pub expiration: DateTime<Utc>,
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretString::new)
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AssumeRoleWithOidcResponse {
    pub request_id: String,
    pub credentials: StsCredentials,
}

impl AssumeRoleWithOidcResponse {
    pub fn into_credentials(self) -> Credentials {
        let c = self.credentials;
        Credentials {
            access_key_id: c.access_key_id,
            access_key_secret: c.access_key_secret,
            security_token: Some(c.security_token),
            expiration: Some(c.expiration),
        }
    }
}

/// Exchanges an OIDC token for STS credentials. Parameters travel in the form body, as
/// credentials-go sends them.
pub async fn assume_role_with_oidc(
    transport: &Transport,
    r: &AssumeRoleWithOidc,
) -> Result<AssumeRoleWithOidcResponse, CloudError> {
    let req = RpcRequest::new(Product::Sts, "AssumeRoleWithOIDC", "")
        .body("RoleArn", r.role_arn.clone())
        .body("OIDCProviderArn", r.oidc_provider_arn.clone())
        .body("OIDCToken", r.oidc_token.expose())
        .body("RoleSessionName", r.role_session_name.clone())
        .body("DurationSeconds", r.duration_seconds.to_string());
    let json = transport.send_once(&req, None).await?;
    serde_json::from_value(json).map_err(|e| CloudError::Decode {
        action: req.action.into(),
        message: e.to_string(),
    })
}

/// Who a key acts as. Needs no RAM permission: every identity may ask.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CallerIdentity {
    pub account_id: String,
    #[serde(default)]
    pub arn: String,
    #[serde(default)]
    pub user_id: String,
    #[serde(default)]
    pub identity_type: String,
}

pub async fn get_caller_identity(client: &crate::cloud::CloudClient) -> Result<CallerIdentity, CloudError> {
    let req = RpcRequest::new(Product::Sts, "GetCallerIdentity", "");
    let identity: CallerIdentity = client.call_typed(&req).await?;
    if identity.account_id.is_empty() {
        return Err(CloudError::InvalidRequest(
            "GetCallerIdentity answered no AccountId".into(),
        ));
    }
    Ok(identity)
}
