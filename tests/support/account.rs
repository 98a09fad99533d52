//! Accounts built in code, for tests that drive a session directly rather
//! than through a config file: one place that names every field, so a new
//! option of `Account` is added here and nowhere else.

use std::time::Duration;

use mailferry::config::{Account, AuthMechanism, PasswordSource, Security};
use mailferry::secret::Secret;

/// An account on 127.0.0.1 with `LOGIN` and an inline password, plaintext
/// allowed only when `security` is plain, no CA file, a 20 s timeout and no
/// limits; change the rest with struct update syntax.
pub fn account(
    name: &str,
    port: u16,
    security: Security,
    username: &str,
    password: &str,
) -> Account {
    Account {
        name: name.into(),
        host: "127.0.0.1".into(),
        port,
        security,
        username: username.into(),
        password: PasswordSource::Inline(Secret::new(password)),
        auth: AuthMechanism::Login,
        ca_file: None,
        tls_pin_sha256: None,
        allow_plaintext: security == Security::Plain,
        timeout: Duration::from_secs(20),
        max_connections: None,
        max_bytes_per_day: None,
        max_bytes_per_second: None,
        max_message_size: None,
        max_line_length: None,
    }
}
