use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use alicloud_ops_operator::cli;

/// Kubernetes operator for Alibaba Cloud end-user-computing maintenance. (The local cloud
/// emulator is a binary of its own: `alicloud-cloud-emulator`.)
#[derive(Parser, Debug)]
#[command(name = "alicloud-ops-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format.
    #[arg(long, env = "ALICLOUD_OPS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Send one signed request with the resolved credentials and print the JSON answer.
    Call(cli::call::CallArgs),
    /// Print the CustomResourceDefinitions (or write them with --out-dir).
    Crd(cli::crd::CrdArgs),
    /// Check what the operator will need before the first resource: credentials, account,
    /// cloud reads and RAM permissions, CRDs, RBAC, the Lease. Exit code 0: all well; 1 otherwise.
    Doctor(cli::doctor::DoctorArgs),
    /// Show what the operator would do for these manifests, reading the cloud and writing nothing.
    /// Exit code 0: in sync; 2: changes pending; 1: errors.
    Plan(cli::plan::PlanArgs),
    /// Pause an UpdateRollout: nothing more is approved (sets spec.paused).
    Pause(cli::kubectl::RolloutArgs),
    /// Promote an UpdateRollout's wave (the current one, or --wave): the next wave may start.
    Promote(cli::kubectl::RolloutArgs),
    /// Request an immediate reconcile of KIND/NAME (sets the reconcile-requested-at annotation).
    Reconcile(cli::kubectl::ReconcileArgs),
    /// Resume an UpdateRollout: spec.paused false, and the failures that stopped it accepted.
    Resume(cli::kubectl::RolloutArgs),
    /// Run the operator: reconcile every kind against the cloud.
    Run(cli::run::RunArgs),
    /// Show every resource of every kind with its Ready reason and what the operator does next.
    Status(cli::kubectl::StatusArgs),
}

/// The CLI, named `kubectl alicloud-ops` in help and errors when kubectl runs it as a plugin.
fn parse() -> Cli {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let as_plugin = std::path::Path::new(&argv0)
        .file_stem()
        .is_some_and(|s| s == cli::kubectl::PLUGIN);
    let mut command = Cli::command();
    if as_plugin {
        command = command.bin_name("kubectl alicloud-ops");
    }
    let matches = command.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// jemalloc rather than glibc's malloc. glibc's free lists left the operator's heap a quarter
/// larger than what it held (heaptrack's peak against the resident set, 10,000 resources);
/// jemalloc's size classes keep freed memory reusable. The emulator and the tests keep the
/// system allocator: this is the operator's footprint, measured by `make bench-cluster`.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its first allocation (the environment's `_RJEM_MALLOC_CONF`
/// still overrides them). One arena: the work is I/O on a core or two, and every further
/// arena keeps freed memory of its own that the others do not reuse.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: MallocConf = MallocConf(c"narenas:1".as_ptr());

/// jemalloc's `const char *malloc_conf`.
#[repr(transparent)]
struct MallocConf(*const std::ffi::c_char);

// SAFETY: it points at a static string that nothing writes.
unsafe impl Sync for MallocConf {}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let cli = parse();
    init_logging(cli.log_format);
    let code = match &cli.command {
        Command::Call(args) => match cli::call::run(args).await {
            Ok(json) => {
                println!("{}", serde_json::to_string_pretty(&json).expect("JSON prints"));
                0
            }
            Err(e) => {
                eprintln!("{}", e.report());
                1
            }
        },
        Command::Plan(args) => match cli::plan::run(args).await {
            Ok(report) => {
                match args.output {
                    cli::plan::Output::Json => {
                        println!("{}", serde_json::to_string_pretty(&report).expect("JSON prints"))
                    }
                    cli::plan::Output::Markdown => print!("{}", cli::plan::render_markdown(&report)),
                    cli::plan::Output::Table => print!("{}", cli::plan::render_table(&report)),
                }
                report.exit_code()
            }
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        },
        Command::Doctor(args) => {
            let checks = cli::doctor::run(args).await;
            print!("{}", cli::doctor::render(&checks));
            cli::doctor::exit_code(&checks)
        }
        Command::Run(args) => match cli::run::run(args).await {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("error: {e}");
                1
            }
        },
        Command::Status(args) => match cli::kubectl::status(args).await {
            Ok(rows) => {
                print!("{}", cli::kubectl::render_status(&rows, args.all_namespaces));
                0
            }
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        },
        Command::Promote(args) | Command::Pause(args) | Command::Resume(args) => {
            let what = match &cli.command {
                Command::Promote(_) => cli::kubectl::RolloutCommand::Promote,
                Command::Pause(_) => cli::kubectl::RolloutCommand::Pause,
                _ => cli::kubectl::RolloutCommand::Resume,
            };
            match cli::kubectl::rollout(what, args).await {
                Ok(line) => {
                    println!("{line}");
                    0
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    1
                }
            }
        }
        Command::Reconcile(args) => match cli::kubectl::reconcile(args).await {
            Ok(line) => {
                println!("{line}");
                0
            }
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        },
        Command::Crd(args) => match cli::crd::run(args) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        },
    };
    std::process::exit(code);
}
