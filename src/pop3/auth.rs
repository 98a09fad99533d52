//! Logging in: USER/PASS, APOP, and SASL (PLAIN, XOAUTH2, OAUTHBEARER) per RFC 1939 §7 and RFC 5034.
//!
//! The secret is resolved at each login (a rotated token is picked up), and
//! only after the checks that could refuse to send it: credentials never
//! cross an unencrypted connection unless the account says
//! `allow_plaintext = true` (that covers APOP and bearer tokens too: an APOP
//! digest can be brute-forced offline, a token is as good as a password).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::config::{Account, AuthMechanism};
use crate::secret::Secret;

use super::command::{check_arg, Command};
use super::error::{Pop3Error, Refusal};
use super::md5::md5_hex;
use super::reply::Status;
use super::session::Pop3Session;

/// RFC 5034 §4: "If the client [...] would exceed the 255-octet limit on
/// the size of a POP3 command, the client MUST NOT include an initial
/// response"; it sends it after the server's empty challenge instead.
const MAX_AUTH_LINE: usize = 255;

impl Pop3Session {
    /// Authenticates per `account.auth`.
    pub(super) async fn login(&mut self, account: &Account) -> Result<(), Pop3Error> {
        let user = &account.username;
        if user.is_empty() || user.contains(['\r', '\n', '\0']) {
            return Err(Pop3Error::InvalidArgument {
                host: self.host(),
                what: "the user name",
            });
        }
        if !self.conn.is_tls() && !account.allow_plaintext {
            return Err(Pop3Error::PlaintextRefused { host: self.host() });
        }
        if account.auth == AuthMechanism::Apop && self.apop_timestamp.is_none() {
            return Err(Pop3Error::NoApopTimestamp { host: self.host() });
        }
        let secret = account.password.resolve(&account.name).await?;
        match account.auth {
            AuthMechanism::Login => self.user_pass(user, secret).await,
            AuthMechanism::Apop => self.apop(user, &secret).await,
            AuthMechanism::Plain => {
                let initial = format!("\0{user}\0{}", secret.expose());
                self.sasl("PLAIN", &initial, false).await
            }
            AuthMechanism::Xoauth2 => {
                let initial = format!("user={user}\x01auth=Bearer {}\x01\x01", secret.expose());
                self.sasl("XOAUTH2", &initial, true).await
            }
            AuthMechanism::Oauthbearer => {
                let initial = format!(
                    "n,a={},\x01auth=Bearer {}\x01\x01",
                    gs2_escape(user),
                    secret.expose()
                );
                self.sasl("OAUTHBEARER", &initial, true).await
            }
        }
    }

    /// RFC 1939 §7 USER name / PASS string.
    async fn user_pass(&mut self, user: &str, password: Secret) -> Result<(), Pop3Error> {
        if !check_arg(user) {
            return Err(Pop3Error::InvalidArgument {
                host: self.host(),
                what: "the user name",
            });
        }
        self.send(&[Command::User(user.to_string())]).await?;
        self.expect_login_ok("USER").await?;
        self.send(&[Command::Pass(password)]).await?;
        self.expect_login_ok("PASS").await
    }

    /// RFC 1939 §7 APOP name digest, the digest being MD5 of the greeting's
    /// timestamp followed by the password, in lower-case hex.
    async fn apop(&mut self, user: &str, password: &Secret) -> Result<(), Pop3Error> {
        if !check_arg(user) {
            return Err(Pop3Error::InvalidArgument {
                host: self.host(),
                what: "the user name",
            });
        }
        let stamp = self.apop_timestamp.clone().unwrap_or_default();
        let digest = md5_hex(format!("{stamp}{}", password.expose()).as_bytes());
        let command = Command::Apop {
            user: user.to_string(),
            digest: Secret::new(digest),
        };
        self.send(&[command]).await?;
        self.expect_login_ok("APOP").await
    }

    /// RFC 5034 §4 AUTH. `two_step` sends the mechanism alone and the
    /// response after the server's `+ ` (Microsoft's POP3 refuses the
    /// one-line form of XOAUTH2); PLAIN goes on one line when it fits.
    async fn sasl(
        &mut self,
        mechanism: &'static str,
        initial: &str,
        two_step: bool,
    ) -> Result<(), Pop3Error> {
        let encoded = Secret::new(BASE64.encode(initial));
        // "AUTH " + mechanism + " " + response + CRLF.
        let one_line = !two_step && 8 + mechanism.len() + encoded.expose().len() <= MAX_AUTH_LINE;
        if one_line {
            self.send(&[Command::Auth {
                mechanism,
                initial: Some(encoded),
            }])
            .await?;
        } else {
            self.send(&[Command::Auth {
                mechanism,
                initial: None,
            }])
            .await?;
            match self.read_status("AUTH").await? {
                Status::Continue(_) => {}
                Status::Ok(_) => return Ok(()),
                Status::Err(refusal) => return Err(self.auth_refused("AUTH", refusal)),
            }
            self.send(&[Command::SaslResponse(encoded)]).await?;
        }
        match self.read_status("AUTH").await? {
            Status::Ok(_) => Ok(()),
            Status::Err(refusal) => Err(self.auth_refused("AUTH", refusal)),
            Status::Continue(challenge) => self.sasl_error_challenge(&challenge).await,
        }
    }

    /// A challenge after the credentials is an OAuth error report (a base64
    /// JSON status, RFC 7628 §3.2.2 / Google's XOAUTH2): answer with an empty
    /// line, as the server then waits for, and report the -ERR that follows
    /// with the JSON in its text.
    async fn sasl_error_challenge(&mut self, challenge: &str) -> Result<(), Pop3Error> {
        let json = BASE64
            .decode(challenge)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|_| challenge.to_string());
        self.send(&[Command::SaslResponse(Secret::new(""))]).await?;
        let mut refusal = match self.read_status("AUTH").await? {
            Status::Err(refusal) => refusal,
            // Logged in after all: odd, but the server decides.
            Status::Ok(_) => return Ok(()),
            Status::Continue(_) => {
                return Err(self.protocol("AUTH", "a second challenge after the error challenge"))
            }
        };
        refusal.text = format!("{} (server said: {json})", refusal.text);
        Err(self.auth_refused("AUTH", refusal))
    }

    async fn expect_login_ok(&mut self, command: &'static str) -> Result<(), Pop3Error> {
        match self.read_status(command).await? {
            Status::Ok(_) => Ok(()),
            Status::Err(refusal) => Err(self.auth_refused(command, refusal)),
            Status::Continue(_) => Err(self.protocol(command, "a continuation")),
        }
    }

    fn auth_refused(&self, command: &'static str, refusal: Refusal) -> Pop3Error {
        Pop3Error::AuthRefused {
            host: self.host(),
            command,
            refusal,
            login_delay: self.caps().login_delay,
        }
    }
}

/// RFC 5801 §4 saslname: "," and "=" are written "=2C" and "=3D".
fn gs2_escape(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

#[cfg(test)]
mod tests {
    #[test]
    fn gs2_names_escape_comma_and_equals() {
        assert_eq!(super::gs2_escape("a,b=c"), "a=2Cb=3Dc");
        assert_eq!(super::gs2_escape("alice@x"), "alice@x");
    }
}
