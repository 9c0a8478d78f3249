//! Client tokens (JWT): verified with the one key the server is configured with.
//!
//! The key pins the algorithm: an HS256 secret accepts only HS256, a PEM public key only its
//! own family (RS256 for RSA, ES256 for P-256), so `none` and HS/RS confusion are refused by
//! construction. `exp` is required and enforced with a small leeway for clock skew.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::Value;
use switchboard_apps::TokenError;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// Verifies client tokens.
pub struct TokenVerifier {
    key: Option<(DecodingKey, Validation)>,
}

/// Why the configured key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the public key {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is neither an RSA nor an EC (P-256) public key in PEM")]
    Pem { path: String },
}

impl TokenVerifier {
    /// A verifier that refuses every token: no key is configured.
    pub fn none() -> Self {
        TokenVerifier { key: None }
    }

    /// HS256 with a shared secret.
    pub fn hs256(secret: &str) -> Self {
        Self::with(DecodingKey::from_secret(secret.as_bytes()), Algorithm::HS256)
    }

    /// RS256 or ES256, by the kind of the PEM public key at `path`.
    pub fn public_key(path: &std::path::Path) -> Result<Self, KeyError> {
        let pem = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
            return Ok(Self::with(key, Algorithm::RS256));
        }
        if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
            return Ok(Self::with(key, Algorithm::ES256));
        }
        Err(KeyError::Pem {
            path: path.display().to_string(),
        })
    }

    fn with(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp"]);
        TokenVerifier {
            key: Some((key, validation)),
        }
    }

    /// The token's claims, if it is signed with the configured key and has not expired.
    pub fn verify(&self, token: &str) -> Result<Value, TokenError> {
        let (key, validation) = self.key.as_ref().ok_or(TokenError::NotConfigured)?;
        match jsonwebtoken::decode::<Value>(token, key, validation) {
            Ok(data) => Ok(data.claims),
            Err(e) => Err(match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidAlgorithm => TokenError::Invalid("it is signed with another algorithm".into()),
                ErrorKind::InvalidSignature => TokenError::Invalid("its signature does not match".into()),
                ErrorKind::MissingRequiredClaim(c) => TokenError::Invalid(format!("it has no `{c}` claim")),
                _ => TokenError::Invalid(e.to_string()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const SECRET: &str = "a-test-secret-of-enough-length";

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn hs(claims: &Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    /// A good token gives its claims; expiry, a wrong secret, no `exp`, `alg: none` and an
    /// unconfigured key are refused with a reason.
    #[test]
    fn hs256_checks() {
        let v = TokenVerifier::hs256(SECRET);
        let claims = json!({"sub": "u1", "branchId": "b1", "exp": now() + 60});
        assert_eq!(v.verify(&hs(&claims, SECRET)).unwrap()["sub"], "u1");
        let expired = json!({"sub": "u1", "exp": now() - LEEWAY_SECS - 10});
        assert_eq!(v.verify(&hs(&expired, SECRET)), Err(TokenError::Expired));
        let within_leeway = json!({"sub": "u1", "exp": now() - 5});
        assert!(v.verify(&hs(&within_leeway, SECRET)).is_ok());
        assert!(matches!(
            v.verify(&hs(&claims, "another-secret-entirely")),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            v.verify(&hs(&json!({"sub": "u1"}), SECRET)),
            Err(TokenError::Invalid(_))
        ));
        // {"alg":"none"} with the same claims and no signature.
        let none = format!(
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
            base64_url(&serde_json::to_vec(&claims).unwrap())
        );
        assert!(matches!(v.verify(&none), Err(TokenError::Invalid(_))));
        assert_eq!(TokenVerifier::none().verify("x"), Err(TokenError::NotConfigured));
    }

    proptest::proptest! {
        /// Any string is refused with a reason (never a panic, never accepted).
        #[test]
        fn arbitrary_tokens_are_refused(token in ".{0,300}", parts in proptest::collection::vec("[A-Za-z0-9_-]{0,40}", 0..5)) {
            let v = TokenVerifier::hs256(SECRET);
            proptest::prop_assert!(v.verify(&token).is_err());
            proptest::prop_assert!(v.verify(&parts.join(".")).is_err());
        }
    }

    fn base64_url(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | *b as u32) << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}
