//! The `mailferry` command line.
fn main() {}
