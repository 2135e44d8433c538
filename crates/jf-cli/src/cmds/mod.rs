//! One module per command: argument parsing and printing only.

pub mod completion;
pub mod config;
pub mod create;
pub mod db;
pub mod delete;
pub mod extend;
pub mod get;
pub mod list;
pub mod sleep;
pub mod status;
pub mod users;
