//! Flags every cloud-facing command shares: endpoints, signing, limits.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::cloud::client::ClientSettings;
use crate::cloud::endpoint::{Endpoints, Product, parse_endpoint};
use crate::cloud::metrics::CloudMetrics;
use crate::cloud::ratelimit::RateLimitConfig;
use crate::cloud::transport::TransportConfig;
use crate::cloud::{CloudClient, CloudError, CredentialSource, SignatureVersion};

#[derive(Args, Clone, Debug)]
pub struct CloudArgs {
    /// Send every product's requests to this base URL (for example the local emulator,
    /// http://127.0.0.1:9180).
    #[arg(long, env = "ALICLOUD_OPS_ENDPOINT", global = true)]
    pub endpoint: Option<String>,
    /// Endpoint for ecd only (wins over --endpoint).
    #[arg(long, env = "ALICLOUD_OPS_ENDPOINT_ECD", global = true)]
    pub endpoint_ecd: Option<String>,
    /// Endpoint for swas-open only (wins over --endpoint).
    #[arg(long, env = "ALICLOUD_OPS_ENDPOINT_SWAS_OPEN", global = true)]
    pub endpoint_swas_open: Option<String>,
    /// Endpoint for appstream-center only (wins over --endpoint).
    #[arg(long, env = "ALICLOUD_OPS_ENDPOINT_APPSTREAM_CENTER", global = true)]
    pub endpoint_appstream_center: Option<String>,
    /// Endpoint for sts only (wins over --endpoint). Without it, ALIBABA_CLOUD_STS_ENDPOINT
    /// (which ACK's RRSA webhook injects, e.g. sts-vpc.cn-hangzhou.aliyuncs.com) is used.
    #[arg(long, env = "ALICLOUD_OPS_ENDPOINT_STS", global = true)]
    pub endpoint_sts: Option<String>,
    /// Region of the STS endpoint (sts.<region>.aliyuncs.com); empty means sts.aliyuncs.com.
    #[arg(long, env = "ALIBABA_CLOUD_STS_REGION", default_value = "", global = true)]
    pub sts_region: String,
    /// Request signing: v3 (ACS3-HMAC-SHA256, default) or v2 (HMAC-SHA1, discontinued by Alibaba).
    #[arg(long, env = "ALICLOUD_OPS_SIGNATURE_VERSION", value_enum, default_value_t = SignatureVersion::V3, global = true)]
    pub signature_version: SignatureVersion,
    /// Client-side cloud calls per second per (AccessKeyId, product, region); 0 disables.
    #[arg(long, env = "ALICLOUD_OPS_CLOUD_QPS", default_value_t = 10.0, global = true)]
    pub cloud_qps: f64,
    /// Burst of the client-side cloud rate limit.
    #[arg(long, env = "ALICLOUD_OPS_CLOUD_BURST", default_value_t = 20, global = true)]
    pub cloud_burst: u32,
    /// Seconds to wait for a cloud connection.
    #[arg(long, env = "ALICLOUD_OPS_CONNECT_TIMEOUT", default_value_t = 5, global = true)]
    pub connect_timeout_secs: u64,
    /// Seconds to wait for a whole cloud request.
    #[arg(long, env = "ALICLOUD_OPS_REQUEST_TIMEOUT", default_value_t = 30, global = true)]
    pub request_timeout_secs: u64,
}

impl CloudArgs {
    pub fn endpoints(&self) -> Result<Endpoints, String> {
        let mut e = Endpoints {
            sts_region: self.sts_region.clone(),
            ..Default::default()
        };
        if let Some(u) = &self.endpoint {
            e.all = Some(parse_endpoint(u).map_err(|m| format!("--endpoint: {m}"))?);
        }
        for (product, value, flag) in [
            (Product::Ecd, &self.endpoint_ecd, "--endpoint-ecd"),
            (Product::SwasOpen, &self.endpoint_swas_open, "--endpoint-swas-open"),
            (
                Product::AppstreamCenter,
                &self.endpoint_appstream_center,
                "--endpoint-appstream-center",
            ),
            (Product::Sts, &self.endpoint_sts, "--endpoint-sts"),
        ] {
            if let Some(u) = value {
                e.per_product
                    .insert(product, parse_endpoint(u).map_err(|m| format!("{flag}: {m}"))?);
            }
        }
        Ok(e)
    }

    pub fn settings(&self) -> Result<ClientSettings, String> {
        if !(self.cloud_qps >= 0.0 && self.cloud_qps.is_finite()) {
            return Err(format!(
                "--cloud-qps: {} is not a number of calls per second >= 0",
                self.cloud_qps
            ));
        }
        Ok(ClientSettings {
            transport: TransportConfig {
                endpoints: self.endpoints()?,
                signature_version: self.signature_version,
                connect_timeout: Duration::from_secs(self.connect_timeout_secs.max(1)),
                request_timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
            },
            limits: RateLimitConfig {
                qps: self.cloud_qps,
                burst: self.cloud_burst.max(1),
                ..Default::default()
            },
            retry: Default::default(),
        })
    }

    /// A client with the default credential chain, read from the process environment.
    pub fn client(&self, metrics: Arc<CloudMetrics>) -> Result<CloudClient, String> {
        let source = CredentialSource::from_chain(None, &|k| std::env::var(k).ok());
        CloudClient::build(self.settings()?, source, metrics).map_err(|e: CloudError| e.to_string())
    }
}
