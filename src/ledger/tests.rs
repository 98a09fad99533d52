//! Unit tests that need the ledger's insides (its connection, its clock).
