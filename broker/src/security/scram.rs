//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), server side. The
//! primitives (SHA-2, HMAC, PBKDF2 = RFC 5802's `Hi`, base64, randomness)
//! come from their crates; this file holds only the message flow:
//!
//! ```text
//! client-first  n,,n=<user>,r=<client nonce>
//! server-first  r=<client nonce><server nonce>,s=<salt>,i=<iterations>
//! client-final  c=<base64 gs2 header>,r=<nonce>,p=<proof>
//! server-final  v=<server signature>
//! ```
//!
//! The server keeps `StoredKey = H(HMAC(SaltedPassword, "Client Key"))` and
//! `ServerKey = HMAC(SaltedPassword, "Server Key")`: enough to check a proof
//! and to prove itself, not enough to log in. An unknown user gets a made-up
//! salt and fails at the proof, as a wrong password does, so the exchange
//! does not tell which users exist. The made-up salt is an HMAC of the user
//! name under a key drawn at start (`FakeSalts`), so asking twice for the
//! same unknown user gives the same salt, as for a real one (it differs
//! between brokers and restarts, which a patient prober could notice).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use laminar_coord::cluster::ScramCredentialRecord;
use rand::RngCore;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Kafka's bounds on a SCRAM credential's iteration count.
pub const ITERATIONS_MIN: u32 = 4096;
pub const ITERATIONS_MAX: u32 = 16384;
/// Bytes of server nonce (before base64) and of a made-up salt.
const NONCE_BYTES: usize = 24;
const SALT_BYTES: usize = 32;
/// Longest user name accepted (Kafka bounds nothing; this keeps store keys small).
pub const USER_BYTES_MAX: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Sha256,
    Sha512,
}

impl Mechanism {
    pub fn parse(name: &str) -> Option<Mechanism> {
        match name {
            "SCRAM-SHA-256" => Some(Mechanism::Sha256),
            "SCRAM-SHA-512" => Some(Mechanism::Sha512),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The number AlterUserScramCredentials and DescribeUserScramCredentials use.
    pub fn kafka_type(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    pub fn from_kafka_type(t: i8) -> Option<Mechanism> {
        match t {
            1 => Some(Mechanism::Sha256),
            2 => Some(Mechanism::Sha512),
            _ => None,
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Mechanism::Sha512 => {
                let mut m = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// RFC 5802's `Hi`: PBKDF2 with this HMAC, one block.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec(),
            Mechanism::Sha512 => pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec(),
        }
    }
}

/// What the server stores for one user and mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl Credential {
    /// From `SaltedPassword` (what AlterUserScramCredentials carries).
    pub fn from_salted_password(mech: Mechanism, salted: &[u8], salt: &[u8], iterations: u32) -> Credential {
        let client_key = mech.hmac(salted, b"Client Key");
        Credential {
            salt: salt.to_vec(),
            iterations,
            stored_key: mech.hash(&client_key),
            server_key: mech.hmac(salted, b"Server Key"),
        }
    }

    pub fn from_password(mech: Mechanism, password: &str, salt: &[u8], iterations: u32) -> Credential {
        let salted = mech.salted_password(password.as_bytes(), salt, iterations);
        Credential::from_salted_password(mech, &salted, salt, iterations)
    }

    /// Whether `password` is this credential's (SASL/PLAIN checked against
    /// the SCRAM store); compares in constant time.
    pub fn matches_password(&self, mech: Mechanism, password: &str) -> bool {
        let other = Credential::from_password(mech, password, &self.salt, self.iterations);
        bool::from(other.stored_key.ct_eq(&self.stored_key))
    }

    pub fn to_record(&self) -> ScramCredentialRecord {
        ScramCredentialRecord {
            salt: B64.encode(&self.salt),
            iterations: self.iterations,
            stored_key: B64.encode(&self.stored_key),
            server_key: B64.encode(&self.server_key),
        }
    }

    pub fn from_record(r: &ScramCredentialRecord) -> Option<Credential> {
        Some(Credential {
            salt: B64.decode(&r.salt).ok()?,
            iterations: r.iterations,
            stored_key: B64.decode(&r.stored_key).ok()?,
            server_key: B64.decode(&r.server_key).ok()?,
        })
    }
}

/// Why an exchange failed. The message goes to the client and the log; it
/// never holds a proof or password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("authentication failed: invalid credentials")]
    InvalidProof,
    #[error("SCRAM extensions are not supported")]
    Extension,
}

/// The client's first message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    pub user: String,
    gs2_header: String,
    client_nonce: String,
    bare: String,
}

/// Decodes `=2C` and `=3D` (RFC 5802 `saslname`).
fn decode_saslname(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 3) {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad '=' escape in user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

impl ClientFirst {
    pub fn parse(msg: &[u8]) -> Result<ClientFirst, ScramError> {
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        // gs2-header: cbind flag, authzid, then the bare message.
        let mut parts = msg.splitn(3, ',');
        let flag = parts.next().ok_or(ScramError::Malformed("empty"))?;
        let authzid = parts.next().ok_or(ScramError::Malformed("no gs2 header"))?;
        let bare = parts.next().ok_or(ScramError::Malformed("no client-first-message-bare"))?;
        if flag != "n" && flag != "y" {
            // "p=..." asks for channel binding, which Kafka does not do.
            return Err(ScramError::Malformed("channel binding is not supported"));
        }
        if !authzid.is_empty() && !authzid.starts_with("a=") {
            return Err(ScramError::Malformed("bad authzid"));
        }
        let gs2_header = format!("{flag},{authzid},");
        let mut attrs = bare.split(',');
        let user = attrs.next().and_then(|a| a.strip_prefix("n=")).ok_or(ScramError::Malformed("no user name"))?;
        let user = decode_saslname(user)?;
        if let Some(a) = authzid.strip_prefix("a=") {
            if decode_saslname(a)? != user {
                return Err(ScramError::Malformed("authzid differs from the user name"));
            }
        }
        if user.is_empty() || user.len() > USER_BYTES_MAX {
            return Err(ScramError::Malformed("user name empty or too long"));
        }
        let client_nonce = attrs.next().and_then(|a| a.strip_prefix("r=")).ok_or(ScramError::Malformed("no nonce"))?;
        if client_nonce.is_empty() || !client_nonce.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',') {
            return Err(ScramError::Malformed("bad nonce"));
        }
        if attrs.next().is_some() {
            // Kafka's only extension is delegation tokens (tokenauth=true).
            return Err(ScramError::Extension);
        }
        Ok(ClientFirst { user, gs2_header, client_nonce: client_nonce.to_string(), bare: bare.to_string() })
    }
}

/// An exchange after the server's first message.
pub struct Exchange {
    mech: Mechanism,
    first: ClientFirst,
    server_first: String,
    nonce: String,
    /// `None`: the user has no credential for this mechanism.
    credential: Option<Credential>,
}

impl Exchange {
    /// Answers the client's first message. `credential` is the user's
    /// (or `None`); `server_nonce` is fresh randomness (fixed in tests).
    pub fn start(
        mech: Mechanism,
        first: ClientFirst,
        credential: Option<Credential>,
        server_nonce: &str,
        fake_salt: &[u8],
    ) -> (Exchange, Vec<u8>) {
        let nonce = format!("{}{server_nonce}", first.client_nonce);
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            None => (fake_salt.to_vec(), ITERATIONS_MIN),
        };
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(salt));
        let out = server_first.clone().into_bytes();
        (Exchange { mech, first, server_first, nonce, credential }, out)
    }

    pub fn user(&self) -> &str {
        &self.first.user
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mech
    }

    /// Checks the client's proof; on success returns the server's final message.
    pub fn finish(&self, client_final: &[u8]) -> Result<Vec<u8>, ScramError> {
        let msg = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = msg.rsplit_once(",p=").ok_or(ScramError::Malformed("no proof"))?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(ScramError::Malformed("no channel binding attribute"))?;
        if B64.decode(binding).ok().as_deref() != Some(self.first.gs2_header.as_bytes()) {
            return Err(ScramError::Malformed("channel binding differs from the first message"));
        }
        let nonce = attrs.next().and_then(|a| a.strip_prefix("r=")).ok_or(ScramError::Malformed("no nonce"))?;
        if nonce != self.nonce {
            return Err(ScramError::Malformed("nonce differs from the server's"));
        }
        if attrs.next().is_some() {
            return Err(ScramError::Extension);
        }
        let proof = B64.decode(proof).map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let Some(cred) = &self.credential else {
            return Err(ScramError::InvalidProof);
        };
        let auth_message = format!("{},{},{without_proof}", self.first.bare, self.server_first);
        let client_signature = self.mech.hmac(&cred.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(ScramError::InvalidProof);
        }
        let client_key: Vec<u8> = proof.iter().zip(&client_signature).map(|(a, b)| a ^ b).collect();
        if !bool::from(self.mech.hash(&client_key).ct_eq(&cred.stored_key)) {
            return Err(ScramError::InvalidProof);
        }
        let server_signature = self.mech.hmac(&cred.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

/// The client side of an exchange: a follower authenticating to its leader.
pub struct ClientExchange {
    mech: Mechanism,
    bare: String,
    nonce: String,
}

impl ClientExchange {
    pub fn new(mech: Mechanism, user: &str) -> ClientExchange {
        let nonce = server_nonce();
        let user = user.replace('=', "=3D").replace(',', "=2C");
        ClientExchange { mech, bare: format!("n={user},r={nonce}"), nonce }
    }

    pub fn first_message(&self) -> Vec<u8> {
        format!("n,,{}", self.bare).into_bytes()
    }

    /// The client's final message, and the server's final message to expect.
    pub fn final_message(&self, password: &str, server_first: &[u8]) -> Result<(Vec<u8>, Vec<u8>), ScramError> {
        let sf = std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let mut attrs = sf.split(',');
        let nonce = attrs.next().and_then(|a| a.strip_prefix("r=")).ok_or(ScramError::Malformed("no nonce"))?;
        let salt = attrs.next().and_then(|a| a.strip_prefix("s=")).ok_or(ScramError::Malformed("no salt"))?;
        let iterations: u32 = attrs
            .next()
            .and_then(|a| a.strip_prefix("i="))
            .and_then(|i| i.parse().ok())
            .ok_or(ScramError::Malformed("no iteration count"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::Malformed("the server's nonce does not extend ours"));
        }
        // A server asking for more work than any credential may hold is refused.
        if !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&iterations) {
            return Err(ScramError::Malformed("iteration count out of bounds"));
        }
        let salt = B64.decode(salt).map_err(|_| ScramError::Malformed("salt is not base64"))?;
        let salted = self.mech.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = self.mech.hmac(&salted, b"Client Key");
        let stored_key = self.mech.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{},{sf},{without_proof}", self.bare);
        let signature = self.mech.hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        let server_key = self.mech.hmac(&salted, b"Server Key");
        let server_signature = self.mech.hmac(&server_key, auth.as_bytes());
        Ok((
            format!("{without_proof},p={}", B64.encode(proof)).into_bytes(),
            format!("v={}", B64.encode(server_signature)).into_bytes(),
        ))
    }
}

/// Salts for users without a credential: stable per name, unrelated across names.
pub struct FakeSalts {
    key: Vec<u8>,
}

impl Default for FakeSalts {
    fn default() -> FakeSalts {
        FakeSalts { key: random_bytes(SALT_BYTES) }
    }
}

impl FakeSalts {
    pub fn salt(&self, mech: Mechanism, user: &str) -> Vec<u8> {
        let mut salt = Mechanism::Sha256.hmac(&self.key, format!("{}/{user}", mech.name()).as_bytes());
        salt.truncate(SALT_BYTES);
        salt
    }
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut b);
    b
}

/// A fresh nonce: 24 random bytes in hex (letters and digits only, as
/// Kafka's, so no client's parser meets a character it does not expect).
pub fn server_nonce() -> String {
    random_bytes(NONCE_BYTES).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677, section 3: user "user", password "pencil".
    #[test]
    fn rfc7677_test_vector() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let cred = Credential::from_password(Mechanism::Sha256, "pencil", &salt, 4096);
        let first = ClientFirst::parse(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(first.user, "user");
        let (ex, server_first) =
            Exchange::start(Mechanism::Sha256, first, Some(cred), "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", b"");
        assert_eq!(
            String::from_utf8(server_first).unwrap(),
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let server_final = ex
            .finish(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(String::from_utf8(server_final).unwrap(), "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    /// A client side of the exchange, for round trips (RFC 5802 section 3).
    fn client_final(mech: Mechanism, password: &str, client_first_bare: &str, server_first: &str) -> String {
        let attrs: Vec<&str> = server_first.split(',').collect();
        let nonce = attrs[0].strip_prefix("r=").unwrap();
        let salt = B64.decode(attrs[1].strip_prefix("s=").unwrap()).unwrap();
        let iterations: u32 = attrs[2].strip_prefix("i=").unwrap().parse().unwrap();
        let salted = mech.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = mech.hmac(&salted, b"Client Key");
        let stored_key = mech.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let sig = mech.hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        format!("{without_proof},p={}", B64.encode(proof))
    }

    #[test]
    fn sha512_round_trip_and_wrong_password() {
        let mech = Mechanism::Sha512;
        let cred = Credential::from_password(mech, "s3cret", b"salty", 4096);
        assert!(cred.matches_password(mech, "s3cret"));
        assert!(!cred.matches_password(mech, "s3cret!"));
        let record = cred.to_record();
        assert_eq!(Credential::from_record(&record), Some(cred.clone()));
        for (password, ok) in [("s3cret", true), ("wrong", false)] {
            let first = ClientFirst::parse(b"n,,n=alice,r=abc").unwrap();
            let (ex, sf) = Exchange::start(mech, first, Some(cred.clone()), &server_nonce(), b"");
            let cf = client_final(mech, password, "n=alice,r=abc", std::str::from_utf8(&sf).unwrap());
            assert_eq!(ex.finish(cf.as_bytes()).is_ok(), ok, "{password}");
            if !ok {
                assert_eq!(ex.finish(cf.as_bytes()), Err(ScramError::InvalidProof));
            }
        }
    }

    #[test]
    fn the_client_side_talks_to_the_server_side() {
        let mech = Mechanism::Sha512;
        let cred = Credential::from_password(mech, "pw", b"salt", 4096);
        for (password, ok) in [("pw", true), ("nope", false)] {
            let client = ClientExchange::new(mech, "broker,1");
            let first = ClientFirst::parse(&client.first_message()).unwrap();
            assert_eq!(first.user, "broker,1");
            let (server, server_first) = Exchange::start(mech, first, Some(cred.clone()), &server_nonce(), b"");
            let (client_final, expected) = client.final_message(password, &server_first).unwrap();
            match server.finish(&client_final) {
                Ok(server_final) => assert!(ok && server_final == expected),
                Err(e) => assert!(!ok && e == ScramError::InvalidProof),
            }
        }
        // A server that does not extend the client's nonce, or asks for absurd work, is refused.
        let client = ClientExchange::new(mech, "b");
        assert!(client.final_message("pw", b"r=other,s=c2FsdA==,i=4096").is_err());
        let r = format!("r={}x,s=c2FsdA==,i=100000000", client.nonce);
        assert!(client.final_message("pw", r.as_bytes()).is_err());
    }

    #[test]
    fn an_unknown_user_fails_like_a_wrong_password() {
        let mech = Mechanism::Sha256;
        let first = ClientFirst::parse(b"n,,n=nobody,r=xyz").unwrap();
        let fakes = FakeSalts::default();
        let salt = fakes.salt(mech, "nobody");
        assert_eq!(salt, fakes.salt(mech, "nobody"), "stable per user");
        assert_ne!(salt, fakes.salt(mech, "nobody2"));
        let (ex, sf) = Exchange::start(mech, first, None, "srv", &salt);
        let sf = String::from_utf8(sf).unwrap();
        assert!(sf.contains(&format!(",s={},", B64.encode(&salt))), "{sf}");
        assert!(sf.starts_with("r=xyzsrv,s=") && sf.ends_with(",i=4096"), "{sf}");
        let cf = client_final(mech, "any", "n=nobody,r=xyz", &sf);
        assert_eq!(ex.finish(cf.as_bytes()), Err(ScramError::InvalidProof));
    }

    #[test]
    fn malformed_messages_are_refused() {
        for bad in [
            &b""[..],
            b"n,,r=abc",
            b"p=tls-unique,,n=u,r=abc",
            b"n,,n=u",
            b"n,,n=u,r=a,b",
            b"n,,n=a=2Xb,r=abc",
            b"n,,n=u,r=abc,tokenauth=true",
            b"n,a=other,n=u,r=abc",
            b"\xff\xfe",
        ] {
            assert!(ClientFirst::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let first = ClientFirst::parse(b"n,,n=a=2Cb=3Dc,r=abc").unwrap();
        assert_eq!(first.user, "a,b=c");
        let cred = Credential::from_password(Mechanism::Sha256, "p", b"s", 4096);
        let (ex, _) = Exchange::start(Mechanism::Sha256, first, Some(cred), "srv", b"");
        // Another nonce, another binding, no proof.
        assert!(matches!(ex.finish(b"c=biws,r=abcother,p=AAAA"), Err(ScramError::Malformed(_))));
        assert!(matches!(ex.finish(b"c=eSws,r=abcsrv,p=AAAA"), Err(ScramError::Malformed(_))));
        assert!(matches!(ex.finish(b"c=biws,r=abcsrv"), Err(ScramError::Malformed(_))));
        assert_eq!(ex.finish(b"c=biws,r=abcsrv,p=AAAA"), Err(ScramError::InvalidProof));
    }
}
