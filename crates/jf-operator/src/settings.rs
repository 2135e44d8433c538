//! The operator's settings: command-line flags, each with an environment-variable fallback.

use std::net::SocketAddr;

use clap::{Parser, ValueEnum};

/// Reconciles Jango Fett's developer environments and their dependencies.
#[derive(Debug, Clone, Parser)]
#[command(name = "jango-fett-operator", version, about)]
pub struct Settings {
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "JF_HTTP_ADDRESS", default_value = "0.0.0.0:8080")]
    pub http_address: SocketAddr,

    /// Log format: `human` for terminals, `json` for log collectors.
    #[arg(long, env = "JF_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Log filter, in tracing's `EnvFilter` syntax (e.g. `info,jf_operator=debug`).
    #[arg(long, env = "JF_LOG", default_value = "info")]
    pub log: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn flags_are_consistent() {
        Settings::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let settings = Settings::parse_from(["jango-fett-operator"]);
        assert_eq!(settings.http_address.port(), 8080);
        assert_eq!(settings.log_format, LogFormat::Human);
    }
}
