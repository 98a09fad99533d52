//! The sync engine: one pass of one route.
