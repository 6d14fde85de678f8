//! `alicloud-cloud-emulator`: the local Alibaba Cloud, as a binary of its own, so that the
//! operator's binary and image carry neither the emulator nor its default access key.

use clap::Parser;

use alicloud_ops_operator::cli::emulator::{EmulatorArgs, run};

/// A local Alibaba Cloud for tests, the demo and trying manifests: signed RPC (V2 and V3),
/// the official JSON shapes and error codes, state, a clock and injectable faults.
#[derive(Parser, Debug)]
#[command(name = "alicloud-cloud-emulator", version, about)]
struct Cli {
    #[command(flatten)]
    args: EmulatorArgs,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(&cli.args).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
