//! Products, API versions and where each product's requests go.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use url::Url;

/// A cloud product the operator talks to, with its RPC API version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Product {
    Ecd,
    SwasOpen,
    AppstreamCenter,
    Sts,
}

impl Product {
    pub const ALL: [Product; 4] = [Product::Ecd, Product::SwasOpen, Product::AppstreamCenter, Product::Sts];

    /// The product code, as used on the command line and in metrics.
    pub fn code(self) -> &'static str {
        match self {
            Product::Ecd => "ecd",
            Product::SwasOpen => "swas-open",
            Product::AppstreamCenter => "appstream-center",
            Product::Sts => "sts",
        }
    }

    pub fn version(self) -> &'static str {
        match self {
            Product::Ecd => "2020-09-30",
            Product::SwasOpen => "2020-06-01",
            Product::AppstreamCenter => "2021-09-01",
            Product::Sts => "2015-04-01",
        }
    }

    /// Finds the product of an API version (the emulator routes by `Version`).
    pub fn from_version(version: &str) -> Option<Product> {
        Product::ALL.into_iter().find(|p| p.version() == version)
    }

    /// The published host for a region.
    ///
    /// - ecd: `ecd.<region>.aliyuncs.com`.
    /// - swas-open: `swas.<region>.aliyuncs.com` (the SDK's own default, `swas-open.aliyuncs.com`,
    ///   is not a published endpoint).
    /// - appstream-center: only two hosts exist; the delivery group's region travels as
    ///   `BizRegionId`, so China regions use cn-shanghai and all others ap-southeast-1.
    /// - sts: the central `sts.aliyuncs.com`, unless a region is configured for STS.
    pub fn default_host(self, region: &str) -> String {
        match self {
            Product::Ecd => format!("ecd.{region}.aliyuncs.com"),
            Product::SwasOpen => format!("swas.{region}.aliyuncs.com"),
            Product::AppstreamCenter => {
                if region.starts_with("cn-") {
                    "appstream-center.cn-shanghai.aliyuncs.com".to_string()
                } else {
                    "appstream-center.ap-southeast-1.aliyuncs.com".to_string()
                }
            }
            Product::Sts => {
                if region.is_empty() {
                    "sts.aliyuncs.com".to_string()
                } else {
                    format!("sts.{region}.aliyuncs.com")
                }
            }
        }
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Product {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Product::ALL
            .into_iter()
            .find(|p| p.code() == s)
            .ok_or_else(|| format!("unknown product {s:?}: expected one of ecd, swas-open, appstream-center, sts"))
    }
}

/// Where requests go. An override sends every product to one base URL (the emulator);
/// per-product overrides win over it.
#[derive(Clone, Debug, Default)]
pub struct Endpoints {
    pub all: Option<Url>,
    pub per_product: BTreeMap<Product, Url>,
    /// Region of the STS endpoint; empty means the central `sts.aliyuncs.com`.
    pub sts_region: String,
}

impl Endpoints {
    pub fn with_override(url: Url) -> Self {
        Endpoints {
            all: Some(url),
            ..Default::default()
        }
    }

    /// The base URL (scheme, host and optional port; path `/`) for a product and region.
    pub fn base_url(&self, product: Product, region: &str) -> Url {
        if let Some(url) = self.per_product.get(&product).or(self.all.as_ref()) {
            return url.clone();
        }
        let region = if product == Product::Sts {
            self.sts_region.as_str()
        } else {
            region
        };
        Url::parse(&format!("https://{}/", product.default_host(region))).expect("hosts built from a region are valid")
    }
}

/// The `Host` header value for a URL, as HTTP clients send it: the port only when it is
/// not the scheme's default.
pub fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// Parses a user-given endpoint: a full URL, or a bare host (HTTPS assumed).
pub fn parse_endpoint(value: &str) -> Result<Url, String> {
    let with_scheme = if value.contains("://") {
        value.to_string()
    } else {
        format!("https://{value}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| format!("invalid endpoint {value:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("invalid endpoint {value:?}: the scheme must be http or https"));
    }
    if url.host_str().is_none() {
        return Err(format!("invalid endpoint {value:?}: no host"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_hosts_per_product_and_region() {
        let e = Endpoints::default();
        assert_eq!(
            e.base_url(Product::Ecd, "cn-hangzhou").as_str(),
            "https://ecd.cn-hangzhou.aliyuncs.com/"
        );
        assert_eq!(
            e.base_url(Product::SwasOpen, "cn-beijing").as_str(),
            "https://swas.cn-beijing.aliyuncs.com/"
        );
        assert_eq!(
            e.base_url(Product::AppstreamCenter, "cn-hangzhou").as_str(),
            "https://appstream-center.cn-shanghai.aliyuncs.com/"
        );
        assert_eq!(
            e.base_url(Product::AppstreamCenter, "eu-central-1").as_str(),
            "https://appstream-center.ap-southeast-1.aliyuncs.com/"
        );
        assert_eq!(
            e.base_url(Product::Sts, "cn-hangzhou").as_str(),
            "https://sts.aliyuncs.com/"
        );
        let regional = Endpoints {
            sts_region: "cn-beijing".into(),
            ..Default::default()
        };
        assert_eq!(
            regional.base_url(Product::Sts, "x").as_str(),
            "https://sts.cn-beijing.aliyuncs.com/"
        );
    }

    #[test]
    fn overrides_win_and_per_product_beats_global() {
        let mut e = Endpoints::with_override(parse_endpoint("http://127.0.0.1:9000").unwrap());
        e.per_product
            .insert(Product::Sts, parse_endpoint("sts.example.test").unwrap());
        assert_eq!(
            e.base_url(Product::Ecd, "cn-hangzhou").as_str(),
            "http://127.0.0.1:9000/"
        );
        assert_eq!(e.base_url(Product::Sts, "").as_str(), "https://sts.example.test/");
        assert_eq!(host_header(&e.base_url(Product::Ecd, "r")), "127.0.0.1:9000");
        assert_eq!(host_header(&e.base_url(Product::Sts, "r")), "sts.example.test");
    }

    #[test]
    fn rejects_bad_endpoints() {
        assert!(parse_endpoint("ftp://x").is_err());
        assert!(parse_endpoint("http://").is_err());
    }

    #[test]
    fn product_codes_round_trip() {
        for p in Product::ALL {
            assert_eq!(p.code().parse::<Product>().unwrap(), p);
            assert_eq!(Product::from_version(p.version()), Some(p));
        }
        assert!("ecs".parse::<Product>().unwrap_err().contains("unknown product"));
    }
}
