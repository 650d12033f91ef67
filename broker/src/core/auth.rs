//! Authentication: who a stream's `auth` frame says it is, and what it may
//! do.
//!
//! Three modes: `dev` (any token; the tenant is taken from the frame),
//! `tokens` (a table of static tokens, each bound to a tenant and its
//! permissions) and `jwt` (EdDSA JWTs as Felix's auth service issues them:
//! issuer `felix-auth`, audience `felix-broker`, tenant claim `tid`,
//! permissions claim `perms`), checked against keys from a local JWKS file.
//! A JWT's `exp` (required) and `nbf` (optional) must be whole non-negative
//! seconds; its expiry stays on the [`AuthContext`] so that requests after
//! it can be refused, not only the `auth` frame.
//! Failures return [`AuthError`]; the wire reply is always the plain `auth
//! failed` or `tenant mismatch`, the detail goes to the log.

use std::collections::HashMap;

use base64::Engine as _;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::Deserialize;

use super::perms::{Permission, Permissions};

/// An authenticated stream's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthContext {
    /// The tenant every later frame must name.
    pub tenant: String,
    /// What it may do.
    pub permissions: Permissions,
    /// When the credential stops being valid (unix seconds): a JWT's `exp`.
    /// `None` for credentials that do not expire (dev and static tokens).
    /// Checked at authentication only, a stream would outlive its token;
    /// the session checks [`AuthContext::is_expired`] on every request.
    pub expires_at_unix: Option<u64>,
}

impl AuthContext {
    /// Whether the credential has expired at unix time `now_unix`: the same
    /// rule as at authentication, where a JWT is valid while `exp > now`.
    pub fn is_expired(&self, now_unix: u64) -> bool {
        self.expires_at_unix.is_some_and(|exp| now_unix >= exp)
    }
}

/// Why authentication failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Unknown static token.
    #[error("unknown token")]
    UnknownToken,
    /// The token belongs to another tenant than the frame names.
    #[error("token is for tenant {token_tenant:?}, the frame names {frame_tenant:?}")]
    TenantMismatch {
        /// Tenant bound to the token.
        token_tenant: String,
        /// Tenant in the auth frame.
        frame_tenant: String,
    },
    /// The JWT is malformed, badly signed, expired or for someone else.
    #[error("invalid token: {0}")]
    InvalidJwt(String),
}

impl AuthError {
    /// The text sent to the client in an `error` frame.
    pub fn wire_message(&self) -> &'static str {
        match self {
            AuthError::TenantMismatch { .. } => "tenant mismatch",
            _ => "auth failed",
        }
    }
}

/// One entry of a tokens file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// The static token.
    pub token: String,
    /// Its tenant.
    pub tenant: String,
    /// Its permissions (`action:kind:tenant/namespace/name`).
    #[serde(default)]
    pub permissions: Vec<String>,
}

/// A tokens file: `tokens: [{token, tenant, permissions}]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensFile {
    /// The entries.
    pub tokens: Vec<TokenEntry>,
}

/// Why a tokens or JWKS file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// A permission string is invalid.
    #[error(transparent)]
    Permission(#[from] super::perms::PermissionParseError),
    /// A JWKS key is not a usable Ed25519 key.
    #[error("JWKS key {kid:?}: {reason}")]
    Key {
        /// The key id.
        kid: Option<String>,
        /// What is wrong.
        reason: String,
    },
}

/// What a verified JWT grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtClaims {
    /// The `tid` claim.
    pub tenant: String,
    /// The `perms` claim's strings (unparsed).
    pub permissions: Vec<String>,
    /// The `exp` claim (unix seconds).
    pub expires_at_unix: u64,
}

/// Reads the NumericDate claim `name` as whole unix seconds: `None` when
/// absent. A claim that is present but not a non-negative integer (a
/// string, a float such as `1.5` or `2000.0`, a negative number, `null`)
/// is refused rather than ignored: a validity bound the broker cannot read
/// must never widen the token's validity.
fn seconds_claim(claims: &serde_json::Value, name: &'static str) -> Result<Option<u64>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| AuthError::InvalidJwt(format!("invalid {name} claim"))),
    }
}

/// JWT settings.
#[derive(Debug, Clone)]
pub struct JwtVerifier {
    keys: Vec<(Option<String>, VerifyingKey)>,
    issuer: String,
    audience: String,
}

/// A JWKS document.
#[derive(Debug, Deserialize)]
pub struct Jwks {
    /// Its keys.
    pub keys: Vec<Jwk>,
}

/// One JWK (only OKP / Ed25519 keys are used).
#[derive(Debug, Deserialize)]
pub struct Jwk {
    /// Key type, `OKP`.
    pub kty: String,
    /// Curve, `Ed25519`.
    #[serde(default)]
    pub crv: Option<String>,
    /// Public key, base64url.
    #[serde(default)]
    pub x: Option<String>,
    /// Key id.
    #[serde(default)]
    pub kid: Option<String>,
}

fn b64url(s: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| e.to_string())
}

impl JwtVerifier {
    /// A verifier for `jwks` with Felix's issuer and audience.
    pub fn new(jwks: &Jwks) -> Result<Self, AuthConfigError> {
        let mut keys = Vec::new();
        for k in &jwks.keys {
            if k.kty != "OKP" || k.crv.as_deref() != Some("Ed25519") {
                continue;
            }
            let err = |reason: String| AuthConfigError::Key {
                kid: k.kid.clone(),
                reason,
            };
            let x = b64url(k.x.as_deref().unwrap_or_default()).map_err(err)?;
            let bytes: [u8; 32] = x.try_into().map_err(|_| err("x is not 32 bytes".into()))?;
            let key = VerifyingKey::from_bytes(&bytes).map_err(|e| err(e.to_string()))?;
            keys.push((k.kid.clone(), key));
        }
        if keys.is_empty() {
            return Err(AuthConfigError::Key {
                kid: None,
                reason: "no OKP/Ed25519 key in the JWKS".into(),
            });
        }
        Ok(JwtVerifier {
            keys,
            issuer: "felix-auth".into(),
            audience: "felix-broker".into(),
        })
    }

    /// Verifies `token` at unix time `now` and returns its tenant,
    /// permissions and expiry.
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<JwtClaims, AuthError> {
        let bad = |why: &str| AuthError::InvalidJwt(why.to_string());
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("not a three-part JWT"));
        };
        let header: serde_json::Value = serde_json::from_slice(&b64url(h).map_err(|e| bad(&e))?)
            .map_err(|_| bad("header is not JSON"))?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("EdDSA") {
            return Err(bad("alg is not EdDSA"));
        }
        let kid = header.get("kid").and_then(|k| k.as_str());
        let sig_bytes: [u8; 64] = b64url(s)
            .map_err(|e| bad(&e))?
            .try_into()
            .map_err(|_| bad("signature is not 64 bytes"))?;
        let sig = Signature::from_bytes(&sig_bytes);
        let signed = &token[..h.len() + 1 + p.len()];
        let verified = self
            .keys
            .iter()
            .filter(|(k, _)| kid.is_none() || k.as_deref() == kid)
            .any(|(_, key)| key.verify(signed.as_bytes(), &sig).is_ok());
        if !verified {
            return Err(bad("signature does not verify with any JWKS key"));
        }
        let claims: serde_json::Value = serde_json::from_slice(&b64url(p).map_err(|e| bad(&e))?)
            .map_err(|_| bad("claims are not JSON"))?;
        if claims.get("iss").and_then(|v| v.as_str()) != Some(self.issuer.as_str()) {
            return Err(bad("wrong issuer"));
        }
        let aud_ok = match claims.get("aud") {
            Some(serde_json::Value::String(a)) => *a == self.audience,
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .any(|a| a.as_str() == Some(self.audience.as_str())),
            _ => false,
        };
        if !aud_ok {
            return Err(bad("wrong audience"));
        }
        let expires_at_unix = match seconds_claim(&claims, "exp")? {
            Some(exp) if exp > now_unix => exp,
            Some(_) => return Err(bad("expired")),
            None => return Err(bad("no exp claim")),
        };
        if seconds_claim(&claims, "nbf")?.is_some_and(|nbf| nbf > now_unix) {
            return Err(bad("not valid yet"));
        }
        let tenant = claims
            .get("tid")
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad("no tid claim"))?
            .to_string();
        let perms = claims
            .get("perms")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(JwtClaims {
            tenant,
            permissions: perms,
            expires_at_unix,
        })
    }
}

/// How `auth` frames are checked.
#[derive(Debug, Clone)]
pub enum Authenticator {
    /// Any token; the tenant comes from the frame; everything within it is allowed.
    Dev,
    /// Static tokens.
    Tokens(HashMap<String, (String, Vec<Permission>)>),
    /// EdDSA JWTs.
    Jwt(JwtVerifier),
}

impl Authenticator {
    /// A token table from a tokens file.
    pub fn tokens(file: &TokensFile) -> Result<Self, AuthConfigError> {
        let mut table = HashMap::new();
        for e in &file.tokens {
            let perms = e
                .permissions
                .iter()
                .map(|p| p.parse())
                .collect::<Result<Vec<Permission>, _>>()?;
            table.insert(e.token.clone(), (e.tenant.clone(), perms));
        }
        Ok(Authenticator::Tokens(table))
    }

    /// Checks an `auth` frame's tenant and token at unix time `now_unix`.
    pub fn authenticate(
        &self,
        tenant_id: &str,
        token: &str,
        now_unix: u64,
    ) -> Result<AuthContext, AuthError> {
        let (tenant, permissions, expires_at_unix) = match self {
            Authenticator::Dev => (tenant_id.to_string(), Permissions::AllInTenant, None),
            Authenticator::Tokens(table) => {
                let (tenant, perms) = table.get(token).ok_or(AuthError::UnknownToken)?;
                (tenant.clone(), Permissions::Granted(perms.clone()), None)
            }
            Authenticator::Jwt(v) => {
                let claims = v.verify(token, now_unix)?;
                // Unparseable permissions grant nothing rather than failing auth.
                let perms = claims
                    .permissions
                    .iter()
                    .filter_map(|p| p.parse().ok())
                    .collect();
                (
                    claims.tenant,
                    Permissions::Granted(perms),
                    Some(claims.expires_at_unix),
                )
            }
        };
        if tenant != tenant_id {
            return Err(AuthError::TenantMismatch {
                token_tenant: tenant,
                frame_tenant: tenant_id.to_string(),
            });
        }
        Ok(AuthContext {
            tenant,
            permissions,
            expires_at_unix,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;
    use crate::core::perms::Action;

    pub(crate) fn signing_key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    pub(crate) fn jwks_json(key: &SigningKey) -> String {
        let x =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
        format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"k1"}}]}}"#)
    }

    pub(crate) fn jwt(key: &SigningKey, claims: serde_json::Value) -> String {
        let e = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let head = e(br#"{"alg":"EdDSA","typ":"JWT","kid":"k1"}"#);
        let body = e(claims.to_string().as_bytes());
        let sig = key.sign(format!("{head}.{body}").as_bytes());
        format!("{head}.{body}.{}", e(&sig.to_bytes()))
    }

    fn verifier() -> Authenticator {
        let jwks: Jwks = serde_json::from_str(&jwks_json(&signing_key())).expect("jwks");
        Authenticator::Jwt(JwtVerifier::new(&jwks).expect("key"))
    }

    fn claims(aud: &str, exp: u64) -> serde_json::Value {
        serde_json::json!({"iss":"felix-auth","aud":aud,"exp":exp,"tid":"t1","perms":["stream.publish:stream:t1/default/*"]})
    }

    #[test]
    fn valid_jwt_gives_tenant_and_permissions() {
        let ctx = verifier()
            .authenticate(
                "t1",
                &jwt(&signing_key(), claims("felix-broker", 2000)),
                1000,
            )
            .expect("valid");
        assert_eq!(ctx.tenant, "t1");
        assert!(ctx
            .permissions
            .allows(Action::StreamPublish, "t1", "default", "orders"));
        assert!(!ctx
            .permissions
            .allows(Action::CacheRead, "t1", "default", "c"));
    }

    #[test]
    fn expired_foreign_audience_or_badly_signed_jwts_are_refused() {
        let v = verifier();
        assert!(matches!(
            v.authenticate(
                "t1",
                &jwt(&signing_key(), claims("felix-broker", 999)),
                1000
            ),
            Err(AuthError::InvalidJwt(_))
        ));
        assert!(matches!(
            v.authenticate(
                "t1",
                &jwt(&signing_key(), claims("someone-else", 2000)),
                1000
            ),
            Err(AuthError::InvalidJwt(_))
        ));
        let other = SigningKey::from_bytes(&[9u8; 32]);
        assert!(matches!(
            v.authenticate("t1", &jwt(&other, claims("felix-broker", 2000)), 1000),
            Err(AuthError::InvalidJwt(_))
        ));
        let mut tampered = jwt(&signing_key(), claims("felix-broker", 2000));
        tampered.insert(tampered.len() - 2, 'A');
        assert!(v.authenticate("t1", &tampered, 1000).is_err());
    }

    /// Claims with `exp` 2000 and `nbf` set to `nbf`.
    fn with_nbf(nbf: serde_json::Value) -> String {
        let mut c = claims("felix-broker", 2000);
        c["nbf"] = nbf;
        jwt(&signing_key(), c)
    }

    #[test]
    fn an_nbf_that_is_not_a_whole_non_negative_number_is_refused() {
        let v = verifier();
        for nbf in [
            serde_json::json!("500"),
            serde_json::json!(500.5),
            serde_json::json!(500.0),
            serde_json::json!(-1),
            serde_json::json!(null),
            serde_json::json!([500]),
        ] {
            assert_eq!(
                v.authenticate("t1", &with_nbf(nbf.clone()), 1000),
                Err(AuthError::InvalidJwt("invalid nbf claim".into())),
                "nbf {nbf}"
            );
        }
        assert!(v
            .authenticate("t1", &with_nbf(serde_json::json!(500)), 1000)
            .is_ok());
        assert_eq!(
            v.authenticate("t1", &with_nbf(serde_json::json!(1500)), 1000),
            Err(AuthError::InvalidJwt("not valid yet".into()))
        );
    }

    #[test]
    fn an_exp_that_is_not_a_whole_non_negative_number_is_refused() {
        let v = verifier();
        for exp in [
            serde_json::json!("2000"),
            serde_json::json!(2000.5),
            serde_json::json!(2000.0),
            serde_json::json!(-2000),
            serde_json::json!(null),
        ] {
            let mut c = claims("felix-broker", 0);
            c["exp"] = exp.clone();
            assert_eq!(
                v.authenticate("t1", &jwt(&signing_key(), c), 1000),
                Err(AuthError::InvalidJwt("invalid exp claim".into())),
                "exp {exp}"
            );
        }
        let mut c = claims("felix-broker", 0);
        c.as_object_mut().expect("object").remove("exp");
        assert_eq!(
            v.authenticate("t1", &jwt(&signing_key(), c), 1000),
            Err(AuthError::InvalidJwt("no exp claim".into()))
        );
    }

    #[test]
    fn the_context_carries_the_token_expiry() {
        let ctx = verifier()
            .authenticate(
                "t1",
                &jwt(&signing_key(), claims("felix-broker", 2000)),
                1000,
            )
            .expect("valid");
        assert_eq!(ctx.expires_at_unix, Some(2000));
        assert!(!ctx.is_expired(1999));
        // Valid while exp > now, as at authentication.
        assert!(ctx.is_expired(2000));
        assert!(ctx.is_expired(u64::MAX));
        let dev = Authenticator::Dev
            .authenticate("t1", "anything", 1000)
            .expect("dev");
        assert_eq!(dev.expires_at_unix, None);
        assert!(!dev.is_expired(u64::MAX));
    }

    #[test]
    fn token_for_another_tenant_is_a_tenant_mismatch() {
        let err = verifier()
            .authenticate(
                "t2",
                &jwt(&signing_key(), claims("felix-broker", 2000)),
                1000,
            )
            .expect_err("mismatch");
        assert_eq!(err.wire_message(), "tenant mismatch");
        let tokens = Authenticator::tokens(&TokensFile {
            tokens: vec![TokenEntry {
                token: "s3".into(),
                tenant: "t1".into(),
                permissions: vec!["cache.read:cache:t1/*/*".into()],
            }],
        })
        .expect("tokens");
        assert!(tokens.authenticate("t1", "s3", 0).is_ok());
        assert_eq!(
            tokens.authenticate("t1", "nope", 0),
            Err(AuthError::UnknownToken)
        );
        assert!(matches!(
            tokens.authenticate("t2", "s3", 0),
            Err(AuthError::TenantMismatch { .. })
        ));
    }
}
