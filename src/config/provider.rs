//! Provider presets (`provider = "gmail" | "microsoft365"`): the host, TLS,
//! SASL mechanism, OAuth endpoints, scopes and limits a provider documents,
//! so a config names the account and the OAuth client, nothing else.
//!
//! Every value here is a default: an explicit key in the account wins. The
//! facts come from `notes/providers.md` and the providers' public docs.

use super::{AuthMechanism, Security};

/// A mail provider whose settings mailferry knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Gmail and Google Workspace.
    Gmail,
    /// Exchange Online (Microsoft 365, Outlook.com).
    Microsoft365,
}

/// The OAuth side of a preset.
pub(super) struct OAuthPreset {
    pub auth_url: &'static str,
    pub token_url: &'static str,
    /// `None`: the provider's device flow does not grant mail scopes
    /// (Google's limited-input flow allows only a short list without Gmail).
    pub device_url: Option<&'static str>,
    pub scopes: &'static [&'static str],
    /// Extra authorisation-request parameters the provider needs to hand
    /// out a refresh token.
    pub auth_params: &'static [(&'static str, &'static str)],
}

/// What a preset fills in for one account.
pub(super) struct Preset {
    pub host: &'static str,
    pub security: Security,
    pub auth: AuthMechanism,
    pub oauth: OAuthPreset,
    pub max_connections: Option<u32>,
    pub max_bytes_per_day: Option<u64>,
}

const GOOGLE: OAuthPreset = OAuthPreset {
    auth_url: "https://accounts.google.com/o/oauth2/v2/auth",
    token_url: "https://oauth2.googleapis.com/token",
    device_url: None,
    scopes: &["https://mail.google.com/"],
    // Without these Google issues no refresh token (or only on the first
    // consent), and the daemon would need a new login every hour.
    auth_params: &[("access_type", "offline"), ("prompt", "consent")],
};

/// The `common` endpoints serve multi-tenant and personal-account apps; a
/// single-tenant app overrides the three URLs with its tenant id.
const MICROSOFT: OAuthPreset = OAuthPreset {
    auth_url: "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
    token_url: "https://login.microsoftonline.com/common/oauth2/v2.0/token",
    device_url: Some("https://login.microsoftonline.com/common/oauth2/v2.0/devicecode"),
    scopes: &[
        "https://outlook.office.com/IMAP.AccessAsUser.All",
        "https://outlook.office.com/POP.AccessAsUser.All",
        "offline_access",
    ],
    auth_params: &[],
};

impl Provider {
    /// The preset for a POP3 source (`target = false`) or an IMAP target.
    pub(super) fn preset(self, target: bool) -> Preset {
        match self {
            // Per-account limits from support.google.com/a/answer/1071518:
            // IMAP upload 500 MB a day, POP download 1,250 MB a day, and at
            // most 15 IMAP connections at once.
            Provider::Gmail => Preset {
                host: if target {
                    "imap.gmail.com"
                } else {
                    "pop.gmail.com"
                },
                security: Security::Tls,
                auth: AuthMechanism::Xoauth2,
                oauth: GOOGLE,
                max_connections: Some(15),
                max_bytes_per_day: Some(if target { 500_000_000 } else { 1_250_000_000 }),
            },
            // Exchange Online throttles by answering with a back-off time
            // (handled as Throttled), so no limit is preset.
            Provider::Microsoft365 => Preset {
                host: "outlook.office365.com",
                security: Security::Tls,
                auth: AuthMechanism::Xoauth2,
                oauth: MICROSOFT,
                max_connections: None,
                max_bytes_per_day: None,
            },
        }
    }
}
