//! SCRAM-SHA-256 verifiers (RFC 7677), as PostgreSQL stores them in `pg_authid`: a new one
//! for a password is computed client-side, so the password never reaches the server or its
//! logs; an existing one is checked against the Secret's password without logging in.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::{Digest as _, Sha256};

/// A verifier for `password` with a random salt.
pub fn verifier(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

/// Whether `stored` (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`) verifies
/// `password`. Anything else, an MD5 hash or no password, does not.
pub fn verifies(stored: &str, password: &str) -> bool {
    let Some(rest) = stored.strip_prefix("SCRAM-SHA-256$") else {
        return false;
    };
    let Some((parameters, keys)) = rest.split_once('$') else {
        return false;
    };
    let (Some((iterations, salt)), Some((stored_key, _server_key))) =
        (parameters.split_once(':'), keys.split_once(':'))
    else {
        return false;
    };
    let (Ok(iterations), Ok(salt), Ok(stored_key)) = (
        iterations.parse::<u32>(),
        STANDARD.decode(salt),
        STANDARD.decode(stored_key),
    ) else {
        return false;
    };
    if iterations == 0 || iterations > 1_000_000 {
        return false;
    }
    let salted = salted_password(password.as_bytes(), &salt, iterations);
    let client_key = hmac(&salted, b"Client Key");
    Sha256::digest(client_key).as_slice() == stored_key.as_slice()
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256>>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Hi() of RFC 5802: PBKDF2 with HMAC-SHA-256 and one block. Passwords here are ASCII, for
/// which SASLprep changes nothing.
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut message = salt.to_vec();
    message.extend_from_slice(&1u32.to_be_bytes());
    let mut block = hmac(password, &message);
    let mut result = block;
    for _ in 1..iterations {
        block = hmac(password, &block);
        for (result, byte) in result.iter_mut().zip(block) {
            *result ^= byte;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verifier_verifies_its_password_only() {
        let stored = verifier("correct horse");
        assert!(stored.starts_with("SCRAM-SHA-256$4096:"), "{stored}");
        assert!(verifies(&stored, "correct horse"));
        assert!(!verifies(&stored, "correct horsf"));
        assert!(!verifies("md5abcdef", "correct horse"));
        assert!(!verifies("", "correct horse"));
        assert!(!verifies("SCRAM-SHA-256$0:c2FsdA==$a:b", "x"));
    }
}
