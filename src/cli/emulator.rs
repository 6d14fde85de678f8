//! `alicloud-cloud-emulator`: run the local cloud.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::emulator::{CloudState, DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, Emulator, EmulatorConfig};

#[derive(Args, Debug)]
pub struct EmulatorArgs {
    /// Address to listen on. Loopback unless you mean otherwise.
    #[arg(long, default_value = "127.0.0.1:9180", env = "ALICLOUD_OPS_EMULATOR_LISTEN")]
    pub listen: SocketAddr,
    /// Load this dataset (YAML or JSON, the shape of GET /_emulator/state) instead of the default one.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Accept this key pair, as ID:SECRET, or ID:SECRET:ACCOUNT to place it in another cloud
    /// account than the default one (repeatable). Without it, the default pair is accepted.
    #[arg(long = "access-key", value_name = "ID:SECRET[:ACCOUNT]")]
    pub access_keys: Vec<String>,
    /// Make an action's writes take this long to show, as ACTION=SECONDS (repeatable;
    /// `ModifyImageShareStatus`, `SetDesktopMaintenance`), over the dataset's `settleSeconds`.
    #[arg(long = "settle", value_name = "ACTION=SECONDS")]
    pub settle: Vec<String>,
    /// Enforce a RAM policy document (deploy/ram/*.json) on a key, as PRINCIPAL=FILE, the
    /// principal an AccessKeyId or `role/<RoleName>` for the keys STS issues for that role
    /// (repeatable). A key without a policy may call everything, as an account's own key may.
    #[arg(long = "ram-policy", value_name = "PRINCIPAL=FILE")]
    pub ram_policies: Vec<String>,
}

pub fn load_state(path: &PathBuf) -> Result<CloudState, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("--state {}: {e}", path.display()))?;
    // YAML is a superset of JSON, so one parser reads both.
    let state: CloudState = serde_yaml::from_str(&text).map_err(|e| format!("--state {}: {e}", path.display()))?;
    state
        .validate()
        .map_err(|e| format!("--state {}: {e}", path.display()))?;
    Ok(state)
}

pub fn config(args: &EmulatorArgs) -> Result<EmulatorConfig, String> {
    let mut access_keys = Vec::new();
    let mut accounts = Vec::new();
    for raw in &args.access_keys {
        let mut parts = raw.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(id), Some(secret), account) if !id.is_empty() && !secret.is_empty() => {
                access_keys.push((id.to_string(), secret.to_string()));
                match account {
                    Some(a) if !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) => {
                        accounts.push((id.to_string(), a.to_string()))
                    }
                    Some(_) => return Err(format!("--access-key {id:?}: the ACCOUNT must be digits")),
                    None => {}
                }
            }
            _ => {
                // Never echo the secret.
                return Err(format!(
                    "--access-key {:?}: expected ID:SECRET or ID:SECRET:ACCOUNT",
                    raw.split(':').next().unwrap_or("")
                ));
            }
        }
    }
    if access_keys.is_empty() {
        access_keys.push((DEFAULT_ACCESS_KEY_ID.into(), DEFAULT_ACCESS_KEY_SECRET.into()));
    }
    let mut state = match &args.state {
        Some(p) => load_state(p)?,
        None => CloudState::default_dataset(),
    };
    for raw in &args.settle {
        let (action, seconds) = raw
            .split_once('=')
            .and_then(|(a, s)| Some((a.trim(), s.trim().parse::<u32>().ok()?)))
            .ok_or_else(|| format!("--settle {raw:?}: expected ACTION=SECONDS, e.g. ModifyImageShareStatus=5"))?;
        state.settle_seconds.insert(action.to_string(), seconds);
    }
    state.validate().map_err(|e| format!("--settle: {e}"))?;
    let mut policies = Vec::new();
    for raw in &args.ram_policies {
        let (principal, file) = raw
            .split_once('=')
            .filter(|(p, f)| !p.is_empty() && !f.is_empty())
            .ok_or_else(|| format!("--ram-policy {raw:?}: expected PRINCIPAL=FILE"))?;
        let text = std::fs::read_to_string(file).map_err(|e| format!("--ram-policy {principal}: {file}: {e}"))?;
        let policy =
            crate::emulator::ram::Policy::parse(&text).map_err(|e| format!("--ram-policy {principal}: {file}: {e}"))?;
        policies.push((principal.to_string(), policy));
    }
    Ok(EmulatorConfig {
        listen: args.listen,
        access_keys,
        accounts,
        policies,
        state,
    })
}

pub async fn run(args: &EmulatorArgs) -> Result<(), String> {
    let cfg = config(args)?;
    let default_key = args.access_keys.is_empty();
    let emu = Emulator::start(cfg)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let mut banner = format!("alicloud-cloud-emulator listening on {}\n", emu.url());
    if default_key {
        banner.push_str(&format!(
            "  default access key: ALIBABA_CLOUD_ACCESS_KEY_ID={DEFAULT_ACCESS_KEY_ID}\n"
        ));
        banner.push_str(&format!(
            "                      ALIBABA_CLOUD_ACCESS_KEY_SECRET={DEFAULT_ACCESS_KEY_SECRET}\n"
        ));
    }
    banner.push_str(&format!("  point the operator at it: --endpoint {}\n", emu.url()));
    banner.push_str(&format!(
        "  admin API: {}/_emulator/state | requests | clock | faults\n",
        emu.url()
    ));
    // Whoever started us may stop reading after the first line; that must not stop the server.
    let mut out = std::io::stdout();
    let _ = std::io::Write::write_all(&mut out, banner.as_bytes()).and_then(|_| std::io::Write::flush(&mut out));
    tokio::select! {
        _ = emu.wait() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(settle: &[&str]) -> EmulatorArgs {
        EmulatorArgs {
            listen: "127.0.0.1:0".parse().unwrap(),
            state: None,
            access_keys: vec![],
            settle: settle.iter().map(|s| s.to_string()).collect(),
            ram_policies: vec![],
        }
    }

    #[test]
    fn settle_delays_are_read_and_checked() {
        let cfg = config(&args(&["ModifyImageShareStatus=5", "SetDesktopMaintenance = 3"])).unwrap();
        assert_eq!(cfg.state.settle_seconds["ModifyImageShareStatus"], 5);
        assert_eq!(cfg.state.settle_seconds["SetDesktopMaintenance"], 3);
        let err = config(&args(&["ModifyImageShareStatus"])).unwrap_err();
        assert!(err.contains("expected ACTION=SECONDS"), "{err}");
        let err = config(&args(&["ApproveOtaTask=5"])).unwrap_err();
        assert!(err.contains("settleSeconds.ApproveOtaTask"), "{err}");
    }
}
