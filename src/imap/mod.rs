//! The IMAP target connector: command encoding, response framing and a session over [`crate::net`].
