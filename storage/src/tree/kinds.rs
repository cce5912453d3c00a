//! Node kinds as encoded in a znode's `ephemeralOwner` field, with Apache ZooKeeper's values
//! (`EphemeralType`, extended types enabled): 0 persistent, the high bit alone a container,
//! high byte 0xff plus a 40-bit TTL in milliseconds a TTL node, anything else the owning session.

/// `ephemeralOwner` of a container node.
pub const CONTAINER_EPHEMERAL_OWNER: i64 = i64::MIN;
/// High byte set: an extended type.
const EXTENDED_MASK: i64 = 0xff00_0000_0000_0000_u64 as i64;
/// The two bytes that name the extended type (0 = TTL).
const RESERVED_BITS_MASK: i64 = 0x00ff_ff00_0000_0000;
/// The largest TTL in milliseconds (about 34 years).
pub const TTL_MS_MAX: i64 = !(EXTENDED_MASK | RESERVED_BITS_MASK);

/// What kind of node an `ephemeralOwner` value denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Persistent,
    /// Deleted when its owner session ends.
    Ephemeral {
        owner: i64,
    },
    /// Deleted by the server once its last child is gone.
    Container,
    /// Deleted by the server once childless and unmodified for `ttl_ms`.
    Ttl {
        ttl_ms: i64,
    },
}

impl NodeKind {
    pub fn from_ephemeral_owner(owner: i64) -> NodeKind {
        if owner == 0 {
            NodeKind::Persistent
        } else if owner == CONTAINER_EPHEMERAL_OWNER {
            NodeKind::Container
        } else if owner & EXTENDED_MASK == EXTENDED_MASK && owner & RESERVED_BITS_MASK == 0 {
            NodeKind::Ttl {
                ttl_ms: owner & TTL_MS_MAX,
            }
        } else {
            NodeKind::Ephemeral { owner }
        }
    }
}

/// The `ephemeralOwner` of a TTL node, or `None` when `ttl_ms` is outside `1..=TTL_MS_MAX`
/// (the request then fails with BadArguments, as in ZooKeeper).
pub fn ttl_ephemeral_owner(ttl_ms: i64) -> Option<i64> {
    (1..=TTL_MS_MAX)
        .contains(&ttl_ms)
        .then_some(EXTENDED_MASK | ttl_ms)
}

/// The path of a new sequential node: `path` plus the parent's stored cversion (the count of
/// child creates, `StatPersisted::cversion`, not the client-visible one), zero-padded to ten
/// digits (negative after overflow, as ZooKeeper prints it).
pub fn sequential_path(path: &str, parent_cversion: i32) -> String {
    format!("{path}{parent_cversion:010}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_decode_to_kinds() {
        assert_eq!(NodeKind::from_ephemeral_owner(0), NodeKind::Persistent);
        assert_eq!(
            NodeKind::from_ephemeral_owner(CONTAINER_EPHEMERAL_OWNER),
            NodeKind::Container
        );
        assert_eq!(
            NodeKind::from_ephemeral_owner(0x0100_0000_0000_0001),
            NodeKind::Ephemeral {
                owner: 0x0100_0000_0000_0001
            }
        );
        let owner = ttl_ephemeral_owner(1).expect("1 ms is a valid ttl");
        assert_eq!(owner as u64, 0xff00_0000_0000_0001);
        assert_eq!(
            NodeKind::from_ephemeral_owner(owner),
            NodeKind::Ttl { ttl_ms: 1 }
        );
        assert_eq!(TTL_MS_MAX, 0xff_ffff_ffff);
        assert!(ttl_ephemeral_owner(TTL_MS_MAX).is_some());
        assert!(ttl_ephemeral_owner(TTL_MS_MAX + 1).is_none());
        assert!(ttl_ephemeral_owner(0).is_none());
    }

    #[test]
    fn sequential_suffix_is_ten_digits() {
        assert_eq!(sequential_path("/q/n-", 7), "/q/n-0000000007");
        assert_eq!(sequential_path("/q/", i32::MAX), "/q/2147483647");
        assert_eq!(sequential_path("/q/", -1), "/q/-000000001");
    }
}
