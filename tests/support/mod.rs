//! Shared helpers for integration tests: a real private Dovecot and throw-away TLS certificates.
//!
//! Every integration test binary that says `mod support;` compiles all of
//! this, and most use only part of it: hence the `dead_code` allowance.
//!
//! ```ignore
//! mod support;
//! let dovecot = support::dovecot::shared();
//! let alice = dovecot.user("alice");
//! dovecot.load(&alice, "INBOX", &[b"Subject: hi\n\nbody\n".to_vec()]);
//! // ... connect to 127.0.0.1:dovecot.pop3_port() as alice ...
//! assert_eq!(dovecot.count(&alice, "INBOX"), 1);
//! ```
#![allow(dead_code)]

pub mod account;
pub mod certs;
mod config;
pub mod corpus;
pub mod deadline;
pub mod dovecot;
pub mod e2e;
mod maildir;
mod probe;
pub mod proxy;
pub mod servers;
pub mod slurm;
pub mod token_server;
mod watchdog;
