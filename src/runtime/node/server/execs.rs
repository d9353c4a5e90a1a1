//! The terminals this node started, by exec id, so resize and exit-code calls name only its
//! own: at most `MAX` remembered, the oldest forgotten first (a long-lived terminal is resized
//! long after it started, but thousands of newer ones have ended by then).

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

const MAX: usize = 10_000;

#[derive(Default)]
pub struct Execs(Mutex<(VecDeque<String>, HashSet<String>)>);

impl Execs {
    pub fn insert(&self, id: String) {
        let mut guard = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (order, known) = &mut *guard;
        if !known.insert(id.clone()) {
            return;
        }
        order.push_back(id);
        while order.len() > MAX {
            if let Some(oldest) = order.pop_front() {
                known.remove(&oldest);
            }
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).1.contains(id)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_oldest_are_forgotten_first() {
        let execs = super::Execs::default();
        for i in 0..super::MAX + 5 {
            execs.insert(format!("e{i}"));
        }
        assert!(!execs.contains("e0") && !execs.contains("e4"));
        assert!(execs.contains("e5") && execs.contains(&format!("e{}", super::MAX + 4)));
    }
}
