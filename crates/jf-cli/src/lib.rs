//! The operations behind `jf`'s commands. Command modules (`cmds/`) parse arguments and print;
//! the work is here, where tests can call it directly.

pub mod connection;
