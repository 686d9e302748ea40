//! One connection's channels, in subscription order, each marked with whether the client
//! itself subscribed to it through the protocol (what `maxSubscriptionsPerConnection`
//! limits) or the server did.
//!
//! Memory per connection is what this type is about: nearly every connection holds a
//! handful of channels, so up to 16 of them live in one vector allocated to exactly their
//! number (32 bytes for one channel, where two index sets took about 300), searched
//! linearly; a set that grows past that (only the server's own `subscribe()` is
//! unlimited) moves to an index map, so a large set costs O(1) per operation.

use std::sync::Arc;

use indexmap::IndexMap;

/// Largest number of channels kept in the vector, searched linearly.
const FEW: usize = 16;

#[derive(Debug, Default)]
pub struct ChannelSet {
    repr: Repr,
    /// How many entries have `client` set.
    client: usize,
}

#[derive(Debug)]
enum Repr {
    Few(Vec<Entry>),
    Many(Box<IndexMap<Arc<str>, bool>>),
}

impl Default for Repr {
    fn default() -> Self {
        Repr::Few(Vec::new())
    }
}

#[derive(Debug)]
struct Entry {
    name: Arc<str>,
    client: bool,
}

impl ChannelSet {
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Few(entries) => entries.len(),
            Repr::Many(map) => map.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many of the channels the client subscribed to itself.
    pub fn client_len(&self) -> usize {
        self.client
    }

    pub fn contains(&self, name: &str) -> bool {
        match &self.repr {
            Repr::Few(entries) => entries.iter().any(|e| &*e.name == name),
            Repr::Many(map) => map.contains_key(name),
        }
    }

    /// The channels in subscription order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<str>> {
        let (few, many) = match &self.repr {
            Repr::Few(entries) => (Some(entries.iter().map(|e| &e.name)), None),
            Repr::Many(map) => (None, Some(map.keys())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }

    /// Adds a channel the set does not hold yet (the registry checks first).
    pub(super) fn insert(&mut self, name: Arc<str>, client: bool) {
        debug_assert!(!self.contains(&name), "a channel is added once");
        self.client += usize::from(client);
        match &mut self.repr {
            Repr::Few(entries) if entries.len() < FEW => {
                // Grown one entry at a time: a handful of moves, and no spare capacity
                // kept for the many connections that never add a second channel.
                entries.reserve_exact(1);
                entries.push(Entry { name, client });
            }
            Repr::Few(entries) => {
                let mut map: IndexMap<Arc<str>, bool> = entries
                    .drain(..)
                    .map(|entry| (entry.name, entry.client))
                    .collect();
                map.insert(name, client);
                self.repr = Repr::Many(Box::new(map));
            }
            Repr::Many(map) => {
                map.insert(name, client);
            }
        }
    }

    /// Removes a channel, keeping the order of the others; `false` when it was not there.
    pub(super) fn remove(&mut self, name: &str) -> bool {
        let client = match &mut self.repr {
            Repr::Few(entries) => match entries.iter().position(|e| &*e.name == name) {
                Some(at) => entries.remove(at).client,
                None => return false,
            },
            Repr::Many(map) => match map.shift_remove(name) {
                Some(client) => client,
                None => return false,
            },
        };
        self.client -= usize::from(client);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(set: &ChannelSet) -> Vec<String> {
        set.iter().map(|c| c.to_string()).collect()
    }

    fn fill(set: &mut ChannelSet, range: std::ops::Range<usize>, client: impl Fn(usize) -> bool) {
        for i in range {
            set.insert(Arc::from(format!("c{i}")), client(i));
        }
    }

    #[test]
    fn keeps_subscription_order_and_counts_client_channels_in_both_forms() {
        for n in [1, FEW, FEW + 1, 3 * FEW] {
            let mut set = ChannelSet::default();
            fill(&mut set, 0..n, |i| i % 2 == 0);
            assert_eq!(set.len(), n);
            assert_eq!(set.client_len(), n.div_ceil(2));
            let expected: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
            assert_eq!(names(&set), expected);
            assert!(set.contains("c0"));
            assert!(!set.contains("nope"));

            // Removing keeps the others in order and the client count right.
            assert!(set.remove("c0"));
            assert!(!set.remove("c0"));
            assert!(!set.contains("c0"));
            assert_eq!(names(&set), expected[1..]);
            assert_eq!(set.client_len(), n.div_ceil(2) - 1);
            if n > 1 {
                assert!(set.remove("c1"));
                assert_eq!(set.client_len(), n.div_ceil(2) - 1);
            }
        }
    }

    #[test]
    fn emptied_set_takes_channels_again() {
        let mut set = ChannelSet::default();
        assert!(set.is_empty());
        fill(&mut set, 0..FEW + 2, |_| true);
        for i in 0..FEW + 2 {
            assert!(set.remove(&format!("c{i}")));
        }
        assert!(set.is_empty());
        assert_eq!(set.client_len(), 0);
        set.insert(Arc::from("again"), false);
        assert_eq!(names(&set), ["again"]);
        assert_eq!(set.client_len(), 0);
    }

    #[test]
    fn one_channel_takes_one_exact_allocation() {
        let mut set = ChannelSet::default();
        set.insert(Arc::from("files"), true);
        match &set.repr {
            Repr::Few(entries) => assert_eq!(entries.capacity(), 1),
            Repr::Many(_) => panic!("one channel is kept in the vector"),
        }
    }
}
