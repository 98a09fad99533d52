//! The retry policy: the one place that decides how long to wait before trying a route again.
