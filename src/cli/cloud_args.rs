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
    /// Allow an `http://` endpoint that is not on this machine. Credentials and STS tokens
    /// would cross the network in the clear (the signature protects integrity, not secrecy).
    #[arg(long, env = "ALICLOUD_OPS_ALLOW_INSECURE_ENDPOINT", global = true)]
    pub allow_insecure_endpoint: bool,
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

/// A host on this machine: `localhost`, 127.0.0.0/8 or `::1`.
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl CloudArgs {
    pub fn endpoints(&self) -> Result<Endpoints, String> {
        self.endpoints_with_env(&|k| std::env::var(k).ok())
    }

    /// As [`CloudArgs::endpoints`], reading `ALIBABA_CLOUD_STS_ENDPOINT` through `env`.
    pub fn endpoints_with_env(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Endpoints, String> {
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
        // ACK's RRSA webhook injects the STS endpoint (a VPC one, where egress is VPC-only).
        if self.endpoint_sts.is_none()
            && self.endpoint.is_none()
            && let Some(u) = env("ALIBABA_CLOUD_STS_ENDPOINT").filter(|u| !u.trim().is_empty())
        {
            e.per_product.insert(
                Product::Sts,
                parse_endpoint(u.trim()).map_err(|m| format!("ALIBABA_CLOUD_STS_ENDPOINT: {m}"))?,
            );
        }
        if !self.allow_insecure_endpoint {
            for url in e.all.iter().chain(e.per_product.values()) {
                if url.scheme() == "http" && !is_loopback(url) {
                    return Err(format!(
                        "endpoint {url}: http:// would send credentials and STS tokens in the clear to \
                         another machine; use https://, or --allow-insecure-endpoint to accept that"
                    ));
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cloud: CloudArgs,
    }

    fn args(extra: &[&str]) -> CloudArgs {
        let mut argv = vec!["t"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().cloud
    }

    #[test]
    fn http_to_another_machine_is_refused_unless_allowed() {
        let no_env = |_: &str| None;
        let err = args(&["--endpoint", "http://10.0.0.8:9180"])
            .endpoints_with_env(&no_env)
            .unwrap_err();
        assert!(
            err.contains("--allow-insecure-endpoint") && err.contains("10.0.0.8"),
            "{err}"
        );
        let err = args(&["--endpoint-ecd", "http://emulator.default.svc:9180"])
            .endpoints_with_env(&no_env)
            .unwrap_err();
        assert!(err.contains("emulator.default.svc"), "{err}");
        for ok in [
            "http://127.0.0.1:9180",
            "http://localhost:9180",
            "http://[::1]:9180",
            "https://ecd.example.com",
        ] {
            args(&["--endpoint", ok]).endpoints_with_env(&no_env).unwrap();
        }
        args(&["--endpoint", "http://10.0.0.8:9180", "--allow-insecure-endpoint"])
            .endpoints_with_env(&no_env)
            .unwrap();
    }

    #[test]
    fn the_sts_endpoint_that_ack_injects_is_used() {
        let env = |k: &str| (k == "ALIBABA_CLOUD_STS_ENDPOINT").then(|| "sts-vpc.cn-hangzhou.aliyuncs.com".to_string());
        let e = args(&[]).endpoints_with_env(&env).unwrap();
        assert_eq!(
            e.base_url(Product::Sts, "cn-hangzhou").as_str(),
            "https://sts-vpc.cn-hangzhou.aliyuncs.com/"
        );
        // The flag wins over the environment.
        let e = args(&["--endpoint-sts", "https://sts.example.com"])
            .endpoints_with_env(&env)
            .unwrap();
        assert_eq!(
            e.base_url(Product::Sts, "cn-hangzhou").as_str(),
            "https://sts.example.com/"
        );
    }
}
