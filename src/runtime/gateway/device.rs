//! ocaas's device identity towards one instance's gateway: an Ed25519 key (ed25519-dalek)
//! signing the gateway's challenge. Without it a client off the sandbox's loopback gets its
//! scopes cleared; with it, once paired, the gateway keeps what it approved.
//!
//! The signed text is the protocol's v3 payload:
//! `v3|{deviceId}|{client.id}|{client.mode}|{role}|{scopes,…}|{signedAt}|{token}|{nonce}|{platform}|{deviceFamily}`
//! where `deviceId` is the hex SHA-256 of the raw public key (openclaw `device-auth.ts`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::frames::{ClientInfo, DeviceProof};

pub struct Device {
    key: SigningKey,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Device({})", self.id())
    }
}

impl Device {
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        Device { key: SigningKey::from_bytes(&seed) }
    }

    /// From the 32-byte secret seed (`None` for anything else).
    pub fn from_seed(seed: &[u8]) -> Option<Self> {
        Some(Device { key: SigningKey::from_bytes(seed.try_into().ok()?) })
    }

    /// The secret seed, to be sealed before it is stored.
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    pub fn id(&self) -> String {
        crate::secrets::hex(&Sha256::digest(self.key.verifying_key().as_bytes()))
    }

    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.verifying_key().as_bytes())
    }

    /// The `device` of a `connect` for this challenge.
    pub fn proof(&self, client: &ClientInfo, role: &str, scopes: &[&str], token: &str, nonce: &str, signed_at: i64) -> DeviceProof {
        let id = self.id();
        let payload = v3_payload(&id, client, role, scopes, token, nonce, signed_at);
        DeviceProof {
            id,
            public_key: self.public_key(),
            signature: URL_SAFE_NO_PAD.encode(self.key.sign(payload.as_bytes()).to_bytes()),
            signed_at,
            nonce: nonce.to_owned(),
        }
    }
}

fn v3_payload(id: &str, client: &ClientInfo, role: &str, scopes: &[&str], token: &str, nonce: &str, signed_at: i64) -> String {
    // Platform and device family are trimmed and ASCII-lowercased by the gateway; ours already are.
    let platform = client.platform.trim().to_ascii_lowercase();
    format!("v3|{id}|{}|{}|{role}|{}|{signed_at}|{token}|{nonce}|{platform}|", client.id, client.mode, scopes.join(","))
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};

    use super::*;
    use crate::runtime::gateway::frames::CLIENT;

    #[test]
    fn the_proof_verifies_the_way_the_gateway_checks_it() {
        let device = Device::generate();
        let proof = device.proof(&CLIENT, "operator", &["operator.read", "operator.write"], "tok", "n-1", 1_795_549_550_300);
        let public = URL_SAFE_NO_PAD.decode(&proof.public_key).unwrap();
        assert_eq!(proof.id, Sha256::digest(&public).iter().map(|b| format!("{b:02x}")).collect::<String>());
        assert_eq!(proof.id.len(), 64);
        let key = VerifyingKey::from_bytes(public.as_slice().try_into().unwrap()).unwrap();
        let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(&proof.signature).unwrap()).unwrap();
        let text = format!("v3|{}|gateway-client|backend|operator|operator.read,operator.write|1795549550300|tok|n-1|linux|", proof.id);
        key.verify(text.as_bytes(), &signature).unwrap();
        assert!(key.verify(b"v3|other", &signature).is_err());
        // The stored seed gives the same identity back.
        assert_eq!(Device::from_seed(&device.seed()).unwrap().id(), device.id());
        assert!(Device::from_seed(&[1, 2, 3]).is_none());
    }
}
