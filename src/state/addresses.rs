//! Sandbox addresses on the sandbox network, remembered for a few seconds so a chat turn does
//! not ask the engine on every message. Lifecycle changes made through ocaas forget the entry;
//! the short lifetime bounds how long a change behind ocaas's back (the engine restarted a
//! container, which may get another address) can go unnoticed, and a turn that cannot reach
//! the remembered address forgets it and asks the engine.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an address is trusted without asking the engine.
const FRESH_FOR: Duration = Duration::from_secs(5);
/// Entries kept at most (the map is cleared past it; one per running instance is the norm).
const MAX_ENTRIES: usize = 100_000;

#[derive(Default)]
pub struct Addresses(Mutex<HashMap<String, (IpAddr, Instant)>>);

impl Addresses {
    pub fn get(&self, sandbox: &str) -> Option<IpAddr> {
        let map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(sandbox).filter(|(_, at)| at.elapsed() < FRESH_FOR).map(|(ip, _)| *ip)
    }

    pub fn put(&self, sandbox: &str, ip: IpAddr) {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(sandbox.to_owned(), (ip, Instant::now()));
    }

    pub fn forget(&self, sandbox: &str) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(sandbox);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_remembered_until_forgotten() {
        let book = Addresses::default();
        assert_eq!(book.get("sandy-a"), None);
        book.put("sandy-a", IpAddr::from([172, 18, 0, 5]));
        assert_eq!(book.get("sandy-a"), Some(IpAddr::from([172, 18, 0, 5])));
        book.forget("sandy-a");
        assert_eq!(book.get("sandy-a"), None);
    }
}
