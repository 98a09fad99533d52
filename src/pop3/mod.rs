//! The POP3 source connector: a sans-I/O reply parser and a thin async session over [`crate::net`].
