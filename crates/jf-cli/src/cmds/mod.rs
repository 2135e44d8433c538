//! One module per command: argument parsing and printing only.

pub mod blueprints;
pub mod completion;
pub mod config;
pub mod create;
pub mod db;
pub mod delete;
pub mod deploy;
pub mod extend;
pub mod get;
pub mod list;
pub mod logs;
pub mod restart;
pub mod sleep;
pub mod status;
pub mod users;
