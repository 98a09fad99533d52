//! Network: connect with deadlines, TLS, and the bounded reader both protocols share.
