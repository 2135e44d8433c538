use std::process::ExitCode;

use clap::Parser as _;
use jf_operator::Settings;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = Settings::parse();
    if let Err(error) = jf_operator::telemetry::init_logging(settings.log_format, &settings.log) {
        eprintln!("error: invalid --log filter: {error:#}");
        return ExitCode::from(2);
    }
    match jf_operator::run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "the operator stopped");
            ExitCode::FAILURE
        }
    }
}
