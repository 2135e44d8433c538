use std::process::ExitCode;

use clap::Parser as _;
use jf_operator::Settings;

/// The most worker threads the runtime has, whatever the node's cores. The operator waits on
/// the API server far more than it computes, and each worker costs memory of its own: its
/// stack, and the allocator's arena it allocates from. `TOKIO_WORKER_THREADS` sets another
/// number.
const MAX_WORKER_THREADS: usize = 2;

fn main() -> ExitCode {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        runtime.worker_threads(cores.min(MAX_WORKER_THREADS));
    }
    match runtime.build() {
        Ok(runtime) => runtime.block_on(run()),
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
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
