//! Client tokens (JWT): verified with the one key the server is configured with.
//!
//! The key pins the algorithm: an HS256 secret accepts only HS256, a PEM public key only its
//! own family (RS256 for RSA, ES256 for P-256), so `none` and HS/RS confusion are refused by
//! construction. `exp` is required and enforced with a small leeway for clock skew.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::Value;
use switchboard_apps::TokenError;

use crate::config::{Config, Secret};
use crate::secret::{self, SecretSource};

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

/// The HS256 secret of client tokens: `jwt_secret` when configured, else the one generated
/// once into the data folder (so `switchboard token` and the server agree on a fresh machine).
pub fn hs256_secret(config: &Config) -> anyhow::Result<Secret> {
    use anyhow::Context as _;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data folder {}", config.data_dir.display()))?;
    let (secret, source) =
        secret::load_or_create(config.jwt_secret.as_ref(), &config.data_dir, secret::JWT_SECRET_FILE)
            .with_context(|| format!("cannot read or create the JWT secret in {}", config.data_dir.display()))?;
    if let SecretSource::File { path, generated: true } = source {
        tracing::info!(path = %path.display(), "generated a JWT secret for client tokens (HS256)");
    }
    Ok(secret)
}

/// `switchboard token`: mints a client token for testing.
#[derive(clap::Args, Debug)]
pub struct TokenArgs {
    #[command(flatten)]
    pub config: crate::cli::ConfigArgs,
    /// The user id (`sub`).
    #[arg(long)]
    pub sub: String,
    /// The branch (`branchId`).
    #[arg(long)]
    pub branch: Option<String>,
    /// The role (`role`).
    #[arg(long)]
    pub role: Option<String>,
    /// How long the token is valid: seconds, or a number with s, m, h or d.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: std::time::Duration,
    /// PEM private key to sign with (RS256 or ES256), when the server verifies with
    /// `jwt_public_key`. Default: the HS256 secret the server uses.
    #[arg(long, value_name = "FILE")]
    pub key: Option<std::path::PathBuf>,
}

/// Parses `90`, `90s`, `15m`, `1h`, `7d`.
pub fn parse_ttl(text: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 15m, 1h or 7d"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{text:?}: the unit is s, m, h or d")),
    };
    if seconds == 0 {
        return Err("the token must live at least one second".into());
    }
    Ok(std::time::Duration::from_secs(seconds))
}

/// The signed token `switchboard token` prints.
pub fn mint(args: &TokenArgs) -> anyhow::Result<String> {
    use anyhow::Context as _;
    use jsonwebtoken::{EncodingKey, Header};
    let config = args.config.load()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let mut claims = serde_json::json!({"sub": args.sub, "iat": now, "exp": now + args.ttl.as_secs()});
    if let Some(branch) = &args.branch {
        claims["branchId"] = branch.as_str().into();
    }
    if let Some(role) = &args.role {
        claims["role"] = role.as_str().into();
    }
    let (header, key) = match &args.key {
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            if let Ok(key) = EncodingKey::from_rsa_pem(&pem) {
                (Header::new(Algorithm::RS256), key)
            } else if let Ok(key) = EncodingKey::from_ec_pem(&pem) {
                (Header::new(Algorithm::ES256), key)
            } else {
                anyhow::bail!(
                    "{} is neither an RSA nor an EC (P-256) private key in PEM",
                    path.display()
                );
            }
        }
        None if config.jwt_secret.is_none() && config.jwt_public_key.is_some() => {
            anyhow::bail!("the server verifies tokens with jwt_public_key: pass --key with the matching private key")
        }
        None => (
            Header::new(Algorithm::HS256),
            EncodingKey::from_secret(hs256_secret(&config)?.expose().as_bytes()),
        ),
    };
    Ok(jsonwebtoken::encode(&header, &claims, &key)?)
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

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("90").unwrap().as_secs(), 90);
        assert_eq!(parse_ttl("15m").unwrap().as_secs(), 900);
        assert_eq!(parse_ttl("1h").unwrap().as_secs(), 3600);
        assert_eq!(parse_ttl("7d").unwrap().as_secs(), 7 * 86_400);
        for bad in ["", "h", "1w", "0s", "-1h", "1.5h"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
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
