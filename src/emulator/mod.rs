//! A local Alibaba Cloud: the real wire protocol (signed RPC, official JSON shapes and
//! error codes), real state, a controllable clock and injectable faults.
//!
//! Start it in-process with [`Emulator::start`] (tests use `127.0.0.1:0` and read the URL
//! back), or from the CLI with `alicloud-ops-operator emulator`.

mod appstream;
pub mod auth;
pub mod clock;
mod ecd;
pub mod error;
pub mod faults;
mod fota;
pub mod params;
pub mod ram;
mod server;
pub mod state;
mod sts;
mod swas;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;

pub use server::{REQUEST_LOG_CAPACITY, RequestCounters, RequestRecord, World};
pub use state::CloudState;

/// The key pair the emulator accepts when none is given; printed at start-up.
pub const DEFAULT_ACCESS_KEY_ID: &str = "LTAI5tEmulatorDefault";
pub const DEFAULT_ACCESS_KEY_SECRET: &str = "emulator-secret-do-not-use-in-production";
/// The account every key belongs to unless [`EmulatorConfig::accounts`] says otherwise.
pub const DEFAULT_ACCOUNT_ID: &str = "1866226837513800";

#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    pub listen: SocketAddr,
    /// Accepted (AccessKeyId, AccessKeySecret) pairs.
    pub access_keys: Vec<(String, String)>,
    /// (AccessKeyId, AccountId): the keys of another account than [`DEFAULT_ACCOUNT_ID`].
    /// Keys of one account share its quotas, and STS GetCallerIdentity names it.
    pub accounts: Vec<(String, String)>,
    /// RAM policies: (principal, policy), the principal an AccessKeyId or `role/<RoleName>` for
    /// the keys AssumeRoleWithOIDC hands out for that role. A key with no policy is the
    /// account's own and may call everything.
    pub policies: Vec<(String, ram::Policy)>,
    pub state: CloudState,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            access_keys: vec![(DEFAULT_ACCESS_KEY_ID.into(), DEFAULT_ACCESS_KEY_SECRET.into())],
            accounts: Vec::new(),
            policies: Vec::new(),
            state: CloudState::default_dataset(),
        }
    }
}

/// A running emulator. Dropping it stops the server.
pub struct Emulator {
    addr: SocketAddr,
    world: Arc<World>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Emulator {
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Emulator> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let world = Arc::new(World::new(config.state, &config.access_keys, &config.accounts));
        for (principal, policy) in config.policies {
            world.attach_policy(&principal, Some(policy));
        }
        let (tx, rx) = oneshot::channel();
        let app = server::router(world.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Emulator {
            addr,
            world,
            shutdown: Some(tx),
            task,
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Direct access to the emulated world, for tests in the same process.
    pub fn world(&self) -> &Arc<World> {
        &self.world
    }

    /// Stops accepting requests and waits for the server to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Waits until the server ends (it runs until stopped).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub(crate) fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}
