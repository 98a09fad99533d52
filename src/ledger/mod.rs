//! The ledger: the only module that speaks SQL.
