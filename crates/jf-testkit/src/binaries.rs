//! Where the local control plane's programs are: the Kubernetes, etcd and kwok builds that
//! `dev/build-control-plane` caches, and the PostgreSQL and Redis servers from Debian.

use std::path::{Path, PathBuf};

use crate::Error;

/// The pinned versions, shared with the build script so the two cannot disagree.
const VERSIONS: &str = include_str!("../../../dev/versions.env");

/// The PostgreSQL major version the local cluster runs.
pub const POSTGRES_MAJOR: &str = "15";

/// Paths of every program a local cluster runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kube_scheduler: PathBuf,
    pub kubectl: PathBuf,
    pub etcd: PathBuf,
    pub kwok: PathBuf,
    /// kwok's stage definitions (`node/fast`, `pod/fast`, …) from its module.
    pub kwok_stages: PathBuf,
    /// The directory holding `initdb` and `postgres`.
    pub postgres_bin: PathBuf,
    pub redis_server: PathBuf,
}

impl Binaries {
    /// Finds every program, or says which is missing and how to get it.
    pub fn locate() -> Result<Self, Error> {
        let cache = cache_dir();
        let component = |name: &str, variable: &str| -> Result<PathBuf, Error> {
            let dir = cache.join(format!("{name}-{}", pinned_version(variable)?));
            if dir.join(".complete").is_file() {
                Ok(dir)
            } else {
                Err(Error::MissingProgram {
                    program: name.to_owned(),
                    looked_in: dir,
                    hint: "run ./dev/build-control-plane (or ./dev/up) to build it",
                })
            }
        };
        let kubernetes = component("kubernetes", "KUBERNETES_VERSION")?.join("bin");
        let etcd = component("etcd", "ETCD_VERSION")?.join("bin/etcd");
        let kwok = component("kwok", "KWOK_VERSION")?;
        let postgres_bin = postgres_bin_dir()?;
        let redis_server = find_on_path("redis-server").ok_or_else(|| Error::MissingProgram {
            program: "redis-server".to_owned(),
            looked_in: PathBuf::from("$PATH"),
            hint: "run ./dev/deps to install the Debian package redis-server",
        })?;
        Ok(Self {
            kube_apiserver: kubernetes.join("kube-apiserver"),
            kube_controller_manager: kubernetes.join("kube-controller-manager"),
            kube_scheduler: kubernetes.join("kube-scheduler"),
            kubectl: kubernetes.join("kubectl"),
            etcd,
            kwok: kwok.join("bin/kwok"),
            kwok_stages: kwok.join("stages"),
            postgres_bin,
            redis_server,
        })
    }
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/jango-fett`, as in `dev/lib.sh`.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/root"))
                .join(".cache")
        });
    base.join("jango-fett")
}

fn pinned_version(variable: &str) -> Result<&'static str, Error> {
    VERSIONS
        .lines()
        .filter_map(|line| line.split_once('='))
        .find(|(name, _)| name.trim() == variable)
        .map(|(_, value)| value.trim())
        .ok_or_else(|| Error::Versions(variable.to_owned()))
}

/// `$JF_POSTGRES_BIN`, else Debian's `/usr/lib/postgresql/15/bin`.
fn postgres_bin_dir() -> Result<PathBuf, Error> {
    let dir = std::env::var_os("JF_POSTGRES_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new("/usr/lib/postgresql")
                .join(POSTGRES_MAJOR)
                .join("bin")
        });
    if dir.join("postgres").is_file() && dir.join("initdb").is_file() {
        Ok(dir)
    } else {
        Err(Error::MissingProgram {
            program: format!("PostgreSQL {POSTGRES_MAJOR} (initdb, postgres)"),
            looked_in: dir,
            hint: "run ./dev/deps to install the Debian package postgresql-15",
        })
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pinned_versions() {
        assert!(pinned_version("KUBERNETES_VERSION").is_ok_and(|v| v.starts_with("v1.36.")));
        assert!(pinned_version("ETCD_VERSION").is_ok_and(|v| v.starts_with("v3.6.")));
        assert!(pinned_version("KWOK_VERSION").is_ok_and(|v| v.starts_with("v0.8.")));
        assert!(pinned_version("NOPE").is_err());
    }
}
