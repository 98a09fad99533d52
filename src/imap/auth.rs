//! Logging in: LOGIN, AUTHENTICATE PLAIN / XOAUTH2 / OAUTHBEARER, and the SASL payloads they send.
//!
//! The secret is fetched fresh from the account's password source at every
//! login (OAuth tokens live about an hour). Credentials are refused before
//! anything is sent when the connection is not encrypted and the account
//! does not allow plaintext. Logs show `LOGIN user ***` /
//! `AUTHENTICATE XOAUTH2 ***`, never the secret.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::config::{Account, AuthMechanism};
use crate::secret::Secret;

use super::encode::{sasl_response, EncodeError};
use super::error::{ImapError, ServerStatus, StatusKind};
use super::session::ImapSession;

/// SASL rounds after the initial response before we call it a loop: an
/// error challenge (RFC 7628 §3.2.2) takes one.
const MAX_CHALLENGES: usize = 2;

impl ImapSession {
    /// Logs in per `account.auth`, then refreshes capabilities.
    pub(super) async fn login(&mut self, account: &Account) -> Result<(), ImapError> {
        if !self.conn.is_tls() && !account.allow_plaintext {
            return Err(ImapError::PlaintextRefused {
                account: account.name.clone(),
            });
        }
        let secret = account.password.resolve(&account.name).await?;
        let user = &account.username;
        let status = match account.auth {
            AuthMechanism::Login => self.login_command(user, &secret).await?,
            AuthMechanism::Plain => {
                self.authenticate("PLAIN", &sasl_plain(user, &secret)?)
                    .await?
            }
            AuthMechanism::Xoauth2 => {
                self.authenticate("XOAUTH2", &sasl_xoauth2(user, &secret)?)
                    .await?
            }
            AuthMechanism::Oauthbearer => {
                let host = self.host().to_string();
                let payload = sasl_oauthbearer(user, &host, account.port, &secret)?;
                self.authenticate("OAUTHBEARER", &payload).await?
            }
            AuthMechanism::Apop => {
                return Err(ImapError::Unsupported {
                    host: self.host().to_string(),
                    capability: "APOP (a POP3 mechanism; use login or plain for IMAP)",
                })
            }
        };
        if status.kind != StatusKind::Ok {
            return Err(ImapError::Auth {
                account: account.name.clone(),
                status,
            });
        }
        self.capabilities_after(&status).await
    }

    /// RFC 3501 §6.2.3 LOGIN: `LOGIN SP userid SP password`, both astrings.
    async fn login_command(
        &mut self,
        user: &str,
        secret: &Secret,
    ) -> Result<ServerStatus, ImapError> {
        if self.caps.has("LOGINDISABLED") {
            return Err(ImapError::Unsupported {
                host: self.host().to_string(),
                capability: "LOGIN (the server says LOGINDISABLED; try auth = \"plain\")",
            });
        }
        let req = self
            .command("LOGIN")
            .string("user name", user.as_bytes())?
            .secret("password", secret)?
            .finish();
        Ok(self.run(&req).await?.0)
    }

    /// RFC 3501 §6.2.2 AUTHENTICATE, with the initial response on the
    /// command line when the server offers SASL-IR (RFC 4959), else after
    /// the first `+`. A further challenge is an error report (RFC 7628
    /// §3.2.2, XOAUTH2's JSON): answered with an empty line, after which the
    /// server sends its tagged NO.
    async fn authenticate(
        &mut self,
        mechanism: &'static str,
        initial: &str,
    ) -> Result<ServerStatus, ImapError> {
        let sasl_ir = self.caps.has("SASL-IR");
        let command = self.command("AUTHENTICATE").syntax(mechanism);
        let req = if sasl_ir {
            command.sasl_initial_response(initial)
        } else {
            command
        }
        .finish();
        if !self.send(&req).await? {
            return self.take_done(&req.tag);
        }
        let mut rounds = 0;
        if !sasl_ir {
            if self.wait_continue(&req.tag).await?.is_none() {
                return self.take_done(&req.tag);
            }
            tracing::debug!(host = self.host(), "imap > (SASL response) ***");
            self.write(&sasl_response(initial)).await?;
        }
        while let Some(challenge) = self.wait_continue(&req.tag).await? {
            rounds += 1;
            if rounds > MAX_CHALLENGES {
                return Err(self.protocol("server keeps sending SASL challenges"));
            }
            tracing::debug!(
                host = self.host(),
                challenge = %String::from_utf8_lossy(&decode_challenge(&challenge)),
                "imap SASL error challenge; answering with an empty response"
            );
            self.write(&sasl_response("")).await?;
        }
        self.take_done(&req.tag)
    }
}

/// RFC 4616 PLAIN: `authzid NUL authcid NUL passwd`, empty authzid.
pub fn sasl_plain(user: &str, secret: &Secret) -> Result<String, EncodeError> {
    check_user(user)?;
    let mut raw = Vec::new();
    raw.push(0);
    raw.extend_from_slice(user.as_bytes());
    raw.push(0);
    raw.extend_from_slice(secret.expose().as_bytes());
    Ok(STANDARD.encode(raw))
}

/// Google's / Microsoft's XOAUTH2: `user=U ^A auth=Bearer T ^A ^A`.
pub fn sasl_xoauth2(user: &str, token: &Secret) -> Result<String, EncodeError> {
    check_user(user)?;
    check_token(token)?;
    let raw = format!("user={user}\x01auth=Bearer {}\x01\x01", token.expose());
    Ok(STANDARD.encode(raw))
}

/// RFC 7628 §3.1 OAUTHBEARER: `gs2-header kvsep *(kvpair) kvsep`, with
/// `gs2-header = "n,a=" saslname ","` (RFC 5801 §4: `,` as `=2C`, `=` as
/// `=3D`), `host` and `port` pairs, and `auth=Bearer T`. The `a=` is
/// required by Dovecot (`n,,` gets a plain NO).
pub fn sasl_oauthbearer(
    user: &str,
    host: &str,
    port: u16,
    token: &Secret,
) -> Result<String, EncodeError> {
    check_user(user)?;
    check_token(token)?;
    let saslname = user.replace('=', "=3D").replace(',', "=2C");
    let raw = format!(
        "n,a={saslname},\x01host={host}\x01port={port}\x01auth=Bearer {}\x01\x01",
        token.expose()
    );
    Ok(STANDARD.encode(raw))
}

/// A user name with a control character would end a SASL field early.
fn check_user(user: &str) -> Result<(), EncodeError> {
    if user.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(EncodeError { what: "user name" });
    }
    Ok(())
}

fn check_token(token: &Secret) -> Result<(), EncodeError> {
    if token.expose().bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(EncodeError {
            what: "OAuth token",
        });
    }
    Ok(())
}

/// A challenge's text, base64-decoded when it is base64 (for the log).
fn decode_challenge(text: &[u8]) -> Vec<u8> {
    STANDARD.decode(text).unwrap_or_else(|_| text.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(b64: &str) -> Vec<u8> {
        STANDARD.decode(b64).unwrap()
    }

    /// The wire forms verified against Dovecot (notes/dovecot-oauth2.md).
    #[test]
    fn payloads_match_the_verified_wire_forms() {
        let token = Secret::new("tok-dst1");
        assert_eq!(
            sasl_xoauth2("dst1", &token).unwrap(),
            "dXNlcj1kc3QxAWF1dGg9QmVhcmVyIHRvay1kc3QxAQE="
        );
        assert_eq!(
            decoded(&sasl_oauthbearer("dst1", "127.0.0.1", 17143, &token).unwrap()),
            b"n,a=dst1,\x01host=127.0.0.1\x01port=17143\x01auth=Bearer tok-dst1\x01\x01"
        );
        assert_eq!(
            decoded(&sasl_plain("bob", &Secret::new("pw")).unwrap()),
            b"\0bob\0pw"
        );
    }

    #[test]
    fn saslname_escapes_comma_and_equals() {
        let b64 = sasl_oauthbearer("a,b=c", "h", 1, &Secret::new("t")).unwrap();
        assert!(decoded(&b64).starts_with(b"n,a=a=2Cb=3Dc,\x01"));
    }

    #[test]
    fn control_characters_are_refused() {
        assert!(sasl_xoauth2("a\x01b", &Secret::new("t")).is_err());
        assert!(sasl_xoauth2("a", &Secret::new("t\x01")).is_err());
        assert!(sasl_plain("a\0b", &Secret::new("t")).is_err());
    }
}
