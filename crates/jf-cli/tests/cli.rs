//! The `jf` binary's surface: help, version, usage errors and completions.

use std::process::{Command, Output};

fn jf(arguments: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jf"))
        .args(arguments)
        .env_remove("KUBECONFIG")
        .output()
        .expect("jf runs")
}

#[test]
fn answers_version_and_help() {
    let output = jf(&["--version"]);
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("jf {}", env!("CARGO_PKG_VERSION"))
    );

    let output = jf(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--kubeconfig"), "{help}");
    assert!(help.contains("--context"), "{help}");
}

#[test]
fn usage_errors_exit_with_2() {
    let output = jf(&["no-such-command"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unrecognized subcommand"));

    let output = jf(&["completion", "powershell-ish"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("possible values"), "{stderr}");
}

#[test]
fn prints_completions() {
    for (shell, marker) in [
        ("bash", "_jf()"),
        ("zsh", "#compdef jf"),
        ("fish", "complete -c jf"),
    ] {
        let output = jf(&["completion", shell]);
        assert!(output.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
    }
}
