//! `jf get envs`: `jf list` in kubectl's words.

use super::list;

/// List resources, kubectl-style: `jf get envs` is `jf list`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// List the environments (the same as `jf list`).
    #[command(name = "environments", visible_aliases = ["envs", "env"])]
    Environments(list::Args),
}
