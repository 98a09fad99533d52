//! The message identity: BLAKE3 of the normalised message, and header lookups.
