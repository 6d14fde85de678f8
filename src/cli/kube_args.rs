//! The cluster flags the commands that read resources share, as kubectl has them:
//! `--kubeconfig` (else `$KUBECONFIG`, else `~/.kube/config`, else the in-cluster
//! ServiceAccount), `--context`, `-n/--namespace` and `-A/--all-namespaces`.

use std::path::PathBuf;

use clap::Args;
use kube::config::{Config, KubeConfigOptions, Kubeconfig};

#[derive(Args, Debug, Clone, Default)]
pub struct KubeArgs {
    /// The kubeconfig file (default: `$KUBECONFIG`, then `~/.kube/config`, then the in-cluster
    /// ServiceAccount).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
}

/// A client for the cluster, with where it points and its default namespace.
pub struct Connected {
    pub client: kube::Client,
    pub server: String,
    pub namespace: String,
}

impl KubeArgs {
    /// The cluster as kubectl would find it; `Ok(None)` when there is no kubeconfig at all.
    /// A kubeconfig that is found but cannot be used is an error.
    pub async fn connect(&self) -> Result<Option<Connected>, String> {
        self.connect_with_user_agent(None).await
    }

    /// As [`Self::connect`], with requests that carry `user_agent` (the apiserver's audit log
    /// records it: `doctor` names itself, so its probes are not mistaken for the operator's).
    pub async fn connect_with_user_agent(&self, user_agent: Option<&str>) -> Result<Option<Connected>, String> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let home_config = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config"));
        let config = if let Some(path) = &self.kubeconfig {
            let kubeconfig =
                Kubeconfig::read_from(path).map_err(|e| format!("--kubeconfig {}: {e}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &options).await
        } else if std::env::var_os("KUBECONFIG").is_some() || home_config.is_some_and(|p| p.exists()) {
            Config::from_kubeconfig(&options).await
        } else if self.context.is_none()
            && let Ok(config) = Config::incluster()
        {
            Ok(config)
        } else if let Some(context) = &self.context {
            return Err(format!(
                "--context {context}: no kubeconfig found (KUBECONFIG, ~/.kube/config)"
            ));
        } else {
            return Ok(None);
        };
        let mut config = config.map_err(|e| format!("kubeconfig: {e}"))?;
        if let Some(agent) = user_agent {
            let value =
                reqwest::header::HeaderValue::from_str(agent).map_err(|e| format!("user agent {agent:?}: {e}"))?;
            config.headers.push((reqwest::header::USER_AGENT, value));
        }
        let server = config.cluster_url.to_string();
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = kube::Client::try_from(config).map_err(|e| format!("kubeconfig: {e}"))?;
        Ok(Some(Connected {
            client,
            server,
            namespace,
        }))
    }

    /// As [`Self::connect`], for commands that cannot work without a cluster.
    pub async fn require(&self) -> Result<Connected, String> {
        self.connect()
            .await?
            .ok_or_else(|| "no kubeconfig found: set KUBECONFIG, or pass --kubeconfig".to_string())
    }
}
