//! Connecting to the cluster the way kubectl does: `--kubeconfig`, then `$KUBECONFIG`, then
//! `~/.kube/config`, then the in-cluster service account; `--context` picks a context.

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// Flags shared by every command that talks to the cluster.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConnectionArgs {
    /// Path to the kubeconfig file to use [default: $KUBECONFIG, then ~/.kube/config].
    #[arg(long, global = true, value_name = "FILE", help_heading = "Connection")]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use.
    #[arg(long, global = true, value_name = "NAME", help_heading = "Connection")]
    pub context: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("failed to read the kubeconfig {path}", path = .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("failed to load the kubeconfig")]
    Load(#[from] kube::config::KubeconfigError),
    #[error("failed to find a cluster to talk to")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("failed to create the Kubernetes client")]
    Client(#[from] kube::Error),
}

impl ConnectionError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Read { .. } | Self::Load(_) | Self::Infer(_) => Some(
                "point --kubeconfig or KUBECONFIG at the kubeconfig of your cluster, \
                 and --context at one of its contexts"
                    .to_owned(),
            ),
            Self::Client(_) => None,
        }
    }
}

impl ConnectionArgs {
    pub async fn config(&self) -> Result<Config, ConnectionError> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..KubeConfigOptions::default()
        };
        // Like kubectl, an empty KUBECONFIG counts as unset.
        let kubeconfig = self.kubeconfig.clone().or_else(|| {
            std::env::var_os("KUBECONFIG")
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
        });
        match &kubeconfig {
            Some(path) => {
                // KUBECONFIG may list several files, like kubectl's.
                let mut merged: Option<Kubeconfig> = None;
                for file in std::env::split_paths(path).filter(|file| file.exists()) {
                    let config =
                        Kubeconfig::read_from(&file).map_err(|source| ConnectionError::Read {
                            path: file.clone(),
                            source,
                        })?;
                    merged = Some(match merged {
                        Some(merged) => merged.merge(config)?,
                        None => config,
                    });
                }
                let kubeconfig = merged.ok_or_else(|| ConnectionError::Read {
                    path: path.clone(),
                    source: kube::config::KubeconfigError::ReadConfig(
                        std::io::ErrorKind::NotFound.into(),
                        path.clone(),
                    ),
                })?;
                Ok(Config::from_custom_kubeconfig(kubeconfig, &options).await?)
            }
            None => match Config::from_kubeconfig(&options).await {
                Ok(config) => Ok(config),
                // Inside a pod without a kubeconfig, use the pod's service account.
                Err(_) if self.context.is_none() => Ok(Config::infer().await?),
                Err(error) => Err(error.into()),
            },
        }
    }

    pub async fn client(&self) -> Result<Client, ConnectionError> {
        Ok(Client::try_from(self.config().await?)?)
    }
}
