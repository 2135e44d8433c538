//! What the figures were measured on: the machine, the versions and the commit.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::report::{Git, Machine};

/// The pinned versions of the local control plane.
const VERSIONS: &str = include_str!("../../../dev/versions.env");

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Machine {
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        cpu_model: cpuinfo
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned()),
        memory_bytes: meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:")?.trim().strip_suffix("kB"))
            .and_then(|kilobytes| kilobytes.trim().parse::<u64>().ok())
            .map_or(0, |kilobytes| kilobytes * 1024),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|release| release.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned()),
    }
}

/// The versions pinned in dev/versions.env, the API server's own, and the operator's.
pub fn versions(kubernetes_running: &str, operator: &Path) -> BTreeMap<String, String> {
    let mut versions: BTreeMap<String, String> = VERSIONS
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| {
            (
                name.trim().trim_end_matches("_VERSION").to_lowercase(),
                value.trim().to_owned(),
            )
        })
        .collect();
    versions.insert(
        "kube-apiserver (running)".to_owned(),
        kubernetes_running.to_owned(),
    );
    versions.insert(
        "postgresql".to_owned(),
        jf_testkit::binaries::POSTGRES_MAJOR.to_owned(),
    );
    if let Some(version) = output(Command::new(operator).arg("--version")) {
        versions.insert("jango-fett-operator".to_owned(), version);
    }
    versions
}

/// The commit of the work tree the benchmark runs in, if it is a git checkout.
pub fn git() -> Option<Git> {
    let commit = output(Command::new("git").args(["rev-parse", "HEAD"]))?;
    let dirty = output(Command::new("git").args(["status", "--porcelain"]))
        .is_some_and(|status| !status.is_empty());
    Some(Git { commit, dirty })
}

fn output(command: &mut Command) -> Option<String> {
    let output = command.output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
