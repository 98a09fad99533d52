//! The daemon: every route on its interval, in parallel, until told to stop.
