//! SASL for XMPP log-ins: PLAIN (RFC 4616) and SCRAM-SHA-1 / SCRAM-SHA-256 without
//! channel binding (RFC 5802, RFC 7677), on ring's PBKDF2, HMAC and digests. Owns the
//! mechanisms' messages and the check of the server's signature; not the stanzas that carry
//! them (`login`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chatload_scenario::target::Mechanism;
use ring::{digest, hmac, pbkdf2};
use std::num::NonZeroU32;

/// More PBKDF2 rounds than this is a server making every log-in cost seconds of CPU.
const MAX_ITERATIONS: u32 = 1_000_000;

/// Why a SASL exchange failed on chatload's side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    #[error("the server's SCRAM challenge is malformed ({0})")]
    Malformed(&'static str),
    #[error("the server's SCRAM nonce does not extend chatload's")]
    Nonce,
    #[error("the server asked for {0} PBKDF2 iterations (chatload allows 1 to {MAX_ITERATIONS})")]
    Iterations(u64),
    #[error("the server's SCRAM signature is wrong: it does not know this password")]
    ServerSignature,
}

/// PLAIN's one message: authzid empty, then user name and password.
pub fn plain(username: &str, password: &str) -> String {
    B64.encode(format!("\0{username}\0{password}"))
}

/// One SCRAM exchange in progress.
pub struct Scram {
    mechanism: Mechanism,
    password: String,
    client_nonce: String,
    client_first_bare: String,
    server_signature: Option<Vec<u8>>,
}

fn saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

impl Scram {
    /// Starts an exchange; `nonce` is printable ASCII without commas.
    pub fn new(mechanism: Mechanism, username: &str, password: &str, nonce: String) -> Self {
        Scram {
            mechanism,
            password: password.to_string(),
            client_first_bare: format!("n={},r={nonce}", saslname(username)),
            client_nonce: nonce,
            server_signature: None,
        }
    }

    /// A random nonce of 24 characters.
    pub fn nonce() -> String {
        use rand::Rng as _;
        let mut bytes = [0u8; 18];
        rand::rng().fill(&mut bytes[..]);
        B64.encode(bytes)
    }

    /// The client-first message (GS2 header "n,," : no channel binding).
    pub fn first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    fn algorithms(
        &self,
    ) -> (
        pbkdf2::Algorithm,
        hmac::Algorithm,
        &'static digest::Algorithm,
    ) {
        match self.mechanism {
            Mechanism::ScramSha1 => (
                pbkdf2::PBKDF2_HMAC_SHA1,
                hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
                &digest::SHA1_FOR_LEGACY_USE_ONLY,
            ),
            _ => (
                pbkdf2::PBKDF2_HMAC_SHA256,
                hmac::HMAC_SHA256,
                &digest::SHA256,
            ),
        }
    }

    /// The client-final message for the server-first message.
    pub fn answer(&mut self, server_first: &str) -> Result<String, SaslError> {
        let field = |key: &str| {
            server_first
                .split(',')
                .find_map(|f| f.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        };
        let nonce = field("r").ok_or(SaslError::Malformed("no nonce"))?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(SaslError::Nonce);
        }
        let salt = B64
            .decode(field("s").ok_or(SaslError::Malformed("no salt"))?)
            .map_err(|_| SaslError::Malformed("the salt is not base64"))?;
        let iterations: u64 = field("i")
            .and_then(|i| i.parse().ok())
            .ok_or(SaslError::Malformed("no iteration count"))?;
        let rounds = u32::try_from(iterations)
            .ok()
            .filter(|i| *i <= MAX_ITERATIONS)
            .and_then(NonZeroU32::new)
            .ok_or(SaslError::Iterations(iterations))?;
        let (kdf, mac, hash) = self.algorithms();
        let mut salted = vec![0u8; hash.output_len()];
        pbkdf2::derive(kdf, rounds, &salt, self.password.as_bytes(), &mut salted);
        let salted_key = hmac::Key::new(mac, &salted);
        let client_key = hmac::sign(&salted_key, b"Client Key");
        let stored_key = digest::digest(hash, client_key.as_ref());
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = hmac::sign(
            &hmac::Key::new(mac, stored_key.as_ref()),
            auth_message.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(signature.as_ref())
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac::sign(&salted_key, b"Server Key");
        self.server_signature = Some(
            hmac::sign(
                &hmac::Key::new(mac, server_key.as_ref()),
                auth_message.as_bytes(),
            )
            .as_ref()
            .to_vec(),
        );
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks the server-final message (`v=` its signature).
    pub fn verify(&self, server_final: &str) -> Result<(), SaslError> {
        let v = server_final
            .split(',')
            .find_map(|f| f.strip_prefix("v="))
            .ok_or(SaslError::Malformed("no server signature"))?;
        let got = B64
            .decode(v)
            .map_err(|_| SaslError::Malformed("the signature is not base64"))?;
        match &self.server_signature {
            Some(expected) if *expected == got => Ok(()),
            _ => Err(SaslError::ServerSignature),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scram_sha_1_matches_rfc_5802() {
        let mut s = Scram::new(
            Mechanism::ScramSha1,
            "user",
            "pencil",
            "fyko+d2lbbFgONRv9qkxdawL".into(),
        );
        assert_eq!(s.first(), "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        let fin = s
            .answer("r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096")
            .unwrap();
        assert_eq!(
            fin,
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        assert_eq!(s.verify("v=rmF9pqV8S7suAoZWja4dJRkFsKQ="), Ok(()));
        assert_eq!(
            s.verify("v=AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            Err(SaslError::ServerSignature)
        );
    }

    #[test]
    fn scram_sha_256_matches_rfc_7677() {
        let mut s = Scram::new(
            Mechanism::ScramSha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO".into(),
        );
        let fin = s
            .answer("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
            .unwrap();
        assert_eq!(
            fin,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(
            s.verify("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Ok(())
        );
    }

    #[test]
    fn hostile_challenges_are_refused() {
        let mut s = Scram::new(Mechanism::ScramSha1, "u,1=", "p", "abc".into());
        assert_eq!(s.first(), "n,,n=u=2C1=3D,r=abc");
        assert_eq!(s.answer("r=xyz1,s=QQ==,i=1"), Err(SaslError::Nonce));
        assert_eq!(s.answer("r=abc,s=QQ==,i=1"), Err(SaslError::Nonce));
        assert_eq!(
            s.answer("r=abcd,s=QQ==,i=4000000000"),
            Err(SaslError::Iterations(4_000_000_000))
        );
        assert_eq!(s.answer("r=abcd,s=QQ==,i=0"), Err(SaslError::Iterations(0)));
        assert!(s.answer("r=abcd,i=1").is_err());
        assert_eq!(plain("u1", "pw"), B64.encode("\0u1\0pw"));
    }
}
