//! Rooms are hashed into a fixed number of partitions; each partition has one
//! writer at a time.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Fixed forever: changing it would move rooms between writers.
pub const PARTITION_COUNT: u16 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Partition(pub u16);

impl Partition {
    /// The partition of a room. FNV-1a: stable across builds and platforms,
    /// unlike `std`'s randomly seeded hasher.
    pub fn of_room(room_id: &str) -> Partition {
        Partition::of_key(room_id)
    }

    /// The partition of a user, for roles that split work by user.
    pub fn of_user(user_id: &str) -> Partition {
        Partition::of_key(user_id)
    }

    /// The partition of another server, for roles that split work by
    /// destination.
    pub fn of_server(server_name: &str) -> Partition {
        Partition::of_key(server_name)
    }

    fn of_key(key: &str) -> Partition {
        let mut hash: u32 = 0x811c_9dc5;
        for byte in key.bytes() {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        Partition((hash % u32::from(PARTITION_COUNT)) as u16)
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_is_stable_and_in_range() {
        let first = Partition::of_room("!abc:example.org");
        assert_eq!(first, Partition::of_room("!abc:example.org"));
        assert!(first.0 < PARTITION_COUNT);
    }

    #[test]
    fn rooms_spread_over_partitions() {
        let used: std::collections::BTreeSet<_> = (0..1000)
            .map(|n| Partition::of_room(&format!("!room{n}:hs")))
            .collect();
        assert!(used.len() > (PARTITION_COUNT as usize) * 3 / 4);
    }
}
