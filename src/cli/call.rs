//! `alicloud-ops-operator call`: one signed request, for checking credentials and endpoints.

use std::sync::Arc;

use clap::Args;
use serde_json::Value;

use super::cloud_args::CloudArgs;
use crate::cloud::request::RpcRequest;
use crate::cloud::{CloudError, Product};

#[derive(Args, Debug)]
pub struct CallArgs {
    /// ecd, swas-open, appstream-center or sts.
    pub product: Product,
    /// The API action, e.g. DescribeFotaTasks.
    pub action: String,
    /// Parameters as Name=Value. They go where the official SDK puts them (the form body
    /// for ApproveOtaTask and AssumeRoleWithOIDC, the query otherwise).
    pub params: Vec<String>,
    /// Region that picks the endpoint; defaults to the RegionId or BizRegionId parameter.
    #[arg(long)]
    pub region: Option<String>,
    /// Force a parameter into the form body: Name=Value (repeatable).
    #[arg(long = "form", value_name = "NAME=VALUE")]
    pub form: Vec<String>,
    #[command(flatten)]
    pub cloud: CloudArgs,
}

/// Whether the official SDK sends this parameter in the form body.
pub fn sdk_puts_in_body(product: Product, action: &str, name: &str) -> bool {
    match (product, action) {
        (Product::AppstreamCenter, "ApproveOtaTask" | "GetOtaTaskByTaskId" | "ListOtaTask" | "CancelOtaTask") => true,
        (Product::AppstreamCenter, "ListAppInstanceGroup") => ["Status.", "UserGroupIds.", "ExcludedUserGroupIds."]
            .iter()
            .any(|p| name.starts_with(p)),
        (Product::Sts, "AssumeRoleWithOIDC") => true,
        _ => false,
    }
}

fn split_pair(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("parameter {raw:?} is not Name=Value"))
}

pub fn build_request(args: &CallArgs) -> Result<RpcRequest, String> {
    // Typed calls name their action with a static string; the CLI sends one request per process.
    let action: &'static str = Box::leak(args.action.clone().into_boxed_str());
    let mut query = Vec::new();
    let mut body = Vec::new();
    for raw in &args.params {
        let (k, v) = split_pair(raw)?;
        if sdk_puts_in_body(args.product, action, &k) {
            body.push((k, v))
        } else {
            query.push((k, v))
        }
    }
    for raw in &args.form {
        body.push(split_pair(raw)?);
    }
    let region = args
        .region
        .clone()
        .or_else(|| {
            query
                .iter()
                .chain(&body)
                .find(|(k, _)| k == "RegionId" || k == "BizRegionId")
                .map(|(_, v)| v.clone())
        })
        .unwrap_or_else(|| "cn-hangzhou".to_string());
    let mut req = RpcRequest::new(args.product, action, region);
    req.query = query;
    req.body = body;
    Ok(req)
}

/// Sends the request and returns the JSON answer.
pub async fn run(args: &CallArgs) -> Result<Value, CallError> {
    let req = build_request(args).map_err(CallError::Usage)?;
    let client = args.cloud.client(Arc::default()).map_err(CallError::Usage)?;
    if req.product == Product::Sts && req.action == "AssumeRoleWithOIDC" {
        // Exchanging an OIDC token is not signed with a key.
        return client.transport().send_once(&req, None).await.map_err(CallError::Cloud);
    }
    eprintln!("credentials: {}", client.credentials().describe());
    client.call(&req).await.map_err(CallError::Cloud)
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Cloud(CloudError),
}

impl CallError {
    /// The lines printed on stderr: code, message and request id when the cloud answered.
    pub fn report(&self) -> String {
        match self {
            CallError::Usage(m) => format!("error: {m}"),
            CallError::Cloud(e) => match e.api_error() {
                Some(a) => format!(
                    "error: {} (HTTP {})\nmessage: {}\nrequest id: {}",
                    a.code,
                    a.status,
                    a.message,
                    if a.request_id.is_empty() { "-" } else { &a.request_id }
                ),
                None => format!("error: {} ({})", e, e.code()),
            },
        }
    }
}
