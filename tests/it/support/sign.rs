use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC-SHA256 of `body` as lowercase hex: what the seed's senders put in X-Signature.
pub fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}
