//! Signed requests per second the emulator verifies and answers on this machine.
//!
//! `cargo bench --bench emulator_throughput` (env: BENCH_SECONDS, BENCH_CONCURRENCY,
//! BENCH_SIGNATURE=v2|v3, BENCH_OBJECTS: images and desktops in the listed regions, default
//! 10,000 each; BENCH_PAGE_SIZE: items per page, default the APIs' own default of 10; the
//! operator reads pages of 100). Client and server share the machine, so the figure is a
//! floor for the server alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alicloud_ops_operator::cloud::endpoint::{Endpoints, Product, parse_endpoint};
use alicloud_ops_operator::cloud::metrics::CloudMetrics;
use alicloud_ops_operator::cloud::request::RpcRequest;
use alicloud_ops_operator::cloud::transport::{Transport, TransportConfig};
use alicloud_ops_operator::cloud::{Credentials, SignatureVersion};
use alicloud_ops_operator::emulator::{DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, Emulator, EmulatorConfig};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let seconds: u64 = env("BENCH_SECONDS", 5);
    let concurrency: usize = env("BENCH_CONCURRENCY", 64);
    let version = match std::env::var("BENCH_SIGNATURE").as_deref() {
        Ok("v2") => SignatureVersion::V2,
        _ => SignatureVersion::V3,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let objects: usize = env("BENCH_OBJECTS", 10_000);
    let page_size: usize = env("BENCH_PAGE_SIZE", 10);
    rt.block_on(async move {
        let mut state = alicloud_ops_operator::emulator::CloudState::default_dataset();
        let template_image = state.swas["cn-shanghai"].custom_images[0].clone();
        state.swas.get_mut("cn-shanghai").unwrap().custom_images = (0..objects)
            .map(|i| alicloud_ops_operator::cloud::ops::swas::CustomImage {
                image_id: format!("m-bench{i:05}"),
                ..template_image.clone()
            })
            .collect();
        let template_desktop = state.ecd["cn-hangzhou"].desktops[0].clone();
        state.ecd.get_mut("cn-hangzhou").unwrap().desktops = (0..objects)
            .map(|i| alicloud_ops_operator::cloud::ops::ecd::Desktop {
                desktop_id: format!("ecd-bench{i:05}"),
                ..template_desktop.clone()
            })
            .collect();
        let emu = Emulator::start(EmulatorConfig {
            state,
            ..Default::default()
        })
        .await
        .unwrap();
        let transport = Arc::new(
            Transport::new(
                TransportConfig {
                    endpoints: Endpoints::with_override(parse_endpoint(&emu.url()).unwrap()),
                    signature_version: version,
                    ..Default::default()
                },
                Arc::new(CloudMetrics::default()),
            )
            .unwrap(),
        );
        let creds = Credentials::new(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, None, None);
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..concurrency {
            let (transport, creds, ok, failed) = (transport.clone(), creds.clone(), ok.clone(), failed.clone());
            tasks.push(tokio::spawn(async move {
                // A mix of the reads the operator makes, on small pages.
                // A mix of the reads the operator makes: pages of 100 from the big lists.
                let page = (i % 50 + 1).to_string();
                let req = match i % 4 {
                    0 => RpcRequest::new(Product::Ecd, "DescribeFotaTasks", "cn-hangzhou")
                        .query("RegionId", "cn-hangzhou"),
                    1 => RpcRequest::new(Product::AppstreamCenter, "ListAppInstanceGroup", "cn-hangzhou")
                        .query("ProductType", "CloudApp")
                        .query("BizRegionId", "cn-shanghai"),
                    2 => RpcRequest::new(Product::Ecd, "DescribeDesktops", "cn-hangzhou")
                        .query("RegionId", "cn-hangzhou")
                        .query("MaxResults", page_size.to_string()),
                    _ => RpcRequest::new(Product::SwasOpen, "ListCustomImages", "cn-shanghai")
                        .query("RegionId", "cn-shanghai")
                        .query("PageSize", page_size.to_string())
                        .query("PageNumber", &page),
                };
                while Instant::now() < deadline {
                    match transport.send_once(&req, Some(&creds)).await {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let elapsed = started.elapsed().as_secs_f64();
        let ok = ok.load(Ordering::Relaxed);
        let failed = failed.load(Ordering::Relaxed);
        let counted = emu.world().counters().total;
        println!(
            "emulator throughput ({version} signatures, {concurrency} concurrent clients, {elapsed:.1}s, {} cores, {objects} images and {objects} desktops, pages of {page_size})",
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        );
        println!("  signed requests answered: {ok} ok, {failed} failed, {counted} counted by the emulator");
        println!("  requests/second: {:.0}", ok as f64 / elapsed);
        assert_eq!(failed, 0, "no request may fail");
        emu.stop().await;
    });
}
