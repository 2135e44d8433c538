//! `jf completion SHELL`: prints a completion script.

use clap::CommandFactory;
use clap_complete::Shell;

/// Print the shell completion script for jf.
///
/// For example, in bash: `source <(jf completion bash)`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run<C: CommandFactory>(args: &Args) {
    let mut command = C::command();
    clap_complete::generate(args.shell, &mut command, "jf", &mut std::io::stdout());
}
