//! Session bookkeeping on the Zab core: ids, passwords, negotiated timeouts and expiry in tick
//! buckets. Pure: the shell passes `now_ms` in and turns expired sessions into closeSession txns.
//!
//! Expiry times are rounded up to the next tick boundary, so one timer per tick expires a whole
//! bucket, the way ZooKeeper's expiry queue works.

use std::collections::{BTreeMap, HashMap, HashSet};

use sha1::{Digest, Sha1};
use zinc_protocol::SessionId;

/// Length of a session password on the wire.
pub const PASSWORD_BYTES: usize = zinc_protocol::records::SESSION_PASSWORD_BYTES;

/// Bounds on the number of sessions tracked at once; beyond it new sessions are refused.
pub const SESSIONS_MAX: usize = 1 << 20;

/// A shared secret mixed into passwords, so any server of the ensemble can check a password
/// without having seen the session's creation.
const PASSWORD_SECRET: &[u8] = b"zinc-session-password-v1";

/// The password a client must present to resume `session`.
pub fn session_password(session: SessionId) -> [u8; PASSWORD_BYTES] {
    let mut hasher = Sha1::new();
    hasher.update(PASSWORD_SECRET);
    hasher.update(session.0.to_be_bytes());
    let digest = hasher.finalize();
    let mut password = [0u8; PASSWORD_BYTES];
    password.copy_from_slice(&digest[..PASSWORD_BYTES]);
    password
}

/// Negotiates a client's requested timeout into `[min, max]`.
pub fn negotiate_timeout_ms(requested_ms: i32, min_ms: u32, max_ms: u32) -> u32 {
    (requested_ms.max(0) as u32).clamp(min_ms, max_ms)
}

/// Hands out session ids: the server id in the high byte, then a start time and a counter, so
/// ids stay unique across restarts of the same server.
#[derive(Debug, Clone)]
pub struct SessionIdAllocator {
    next: i64,
}

impl SessionIdAllocator {
    pub fn new(server_id: u8, start_ms: u64) -> Self {
        // Bits 16..56 hold the low 40 bits of the start time; the counter counts up from there.
        let time_part = ((start_ms << 24) >> 8) as i64;
        SessionIdAllocator {
            next: time_part | ((server_id as i64) << 56),
        }
    }

    pub fn allocate(&mut self) -> SessionId {
        self.next = self.next.wrapping_add(1);
        SessionId(self.next)
    }
}

#[derive(Debug, Clone, Copy)]
struct Tracked {
    timeout_ms: u32,
    expires_at_ms: u64,
    closing: bool,
}

/// Live sessions and when each expires.
#[derive(Debug, Clone)]
pub struct SessionTracker {
    tick_ms: u64,
    sessions: HashMap<SessionId, Tracked>,
    buckets: BTreeMap<u64, HashSet<SessionId>>,
}

impl SessionTracker {
    pub fn new(tick_ms: u32) -> Self {
        assert!(tick_ms > 0, "tick time must be positive");
        SessionTracker {
            tick_ms: tick_ms as u64,
            sessions: HashMap::new(),
            buckets: BTreeMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn contains(&self, session: SessionId) -> bool {
        self.sessions.contains_key(&session)
    }

    pub fn timeout_ms(&self, session: SessionId) -> Option<u32> {
        self.sessions
            .get(&session)
            .map(|tracked| tracked.timeout_ms)
    }

    /// Whether the session is live and not being closed.
    pub fn is_open(&self, session: SessionId) -> bool {
        self.sessions.get(&session).is_some_and(|t| !t.closing)
    }

    fn bucket_for(&self, deadline_ms: u64) -> u64 {
        (deadline_ms / self.tick_ms + 1) * self.tick_ms
    }

    /// Starts tracking (or re-tracks after a restart) with a fresh deadline.
    pub fn add(&mut self, session: SessionId, timeout_ms: u32, now_ms: u64) {
        self.remove(session);
        let expires_at_ms = self.bucket_for(now_ms + timeout_ms as u64);
        self.sessions.insert(
            session,
            Tracked {
                timeout_ms,
                expires_at_ms,
                closing: false,
            },
        );
        self.buckets
            .entry(expires_at_ms)
            .or_default()
            .insert(session);
    }

    /// Pushes the deadline out; false when the session is unknown or closing.
    pub fn touch(&mut self, session: SessionId, now_ms: u64) -> bool {
        let Some(tracked) = self.sessions.get(&session).copied() else {
            return false;
        };
        if tracked.closing {
            return false;
        }
        let expires_at_ms = self.bucket_for(now_ms + tracked.timeout_ms as u64);
        if expires_at_ms == tracked.expires_at_ms {
            return true;
        }
        self.unbucket(session, tracked.expires_at_ms);
        self.buckets
            .entry(expires_at_ms)
            .or_default()
            .insert(session);
        if let Some(entry) = self.sessions.get_mut(&session) {
            entry.expires_at_ms = expires_at_ms;
        }
        true
    }

    /// Marks a session as closing: no more requests are accepted for it.
    pub fn set_closing(&mut self, session: SessionId) {
        if let Some(tracked) = self.sessions.get_mut(&session) {
            tracked.closing = true;
        }
    }

    pub fn remove(&mut self, session: SessionId) {
        if let Some(tracked) = self.sessions.remove(&session) {
            self.unbucket(session, tracked.expires_at_ms);
        }
    }

    fn unbucket(&mut self, session: SessionId, bucket: u64) {
        if let Some(members) = self.buckets.get_mut(&bucket) {
            members.remove(&session);
            if members.is_empty() {
                self.buckets.remove(&bucket);
            }
        }
    }

    /// Sessions whose deadline has passed; they are marked closing and must be closed with a
    /// closeSession txn. Each is returned once.
    pub fn expire(&mut self, now_ms: u64) -> Vec<SessionId> {
        let mut expired = Vec::new();
        while let Some((&bucket, _)) = self.buckets.first_key_value() {
            if bucket > now_ms {
                break;
            }
            let members = self.buckets.remove(&bucket).unwrap_or_default();
            for session in members {
                if let Some(tracked) = self.sessions.get_mut(&session) {
                    tracked.closing = true;
                    expired.push(session);
                }
            }
        }
        expired.sort();
        expired
    }

    /// The next time `expire` can return something.
    pub fn next_expiry_ms(&self) -> Option<u64> {
        self.buckets.keys().next().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_in_tick_buckets_and_touch_extends() {
        let mut tracker = SessionTracker::new(100);
        tracker.add(SessionId(1), 1000, 0);
        tracker.add(SessionId(2), 1000, 50);
        // Both deadlines round up to 1100.
        assert_eq!(tracker.next_expiry_ms(), Some(1100));
        assert!(tracker.touch(SessionId(2), 500));
        assert_eq!(tracker.expire(1099), vec![]);
        assert_eq!(tracker.expire(1100), vec![SessionId(1)]);
        assert!(!tracker.is_open(SessionId(1)));
        assert!(!tracker.touch(SessionId(1), 1100));
        assert_eq!(tracker.expire(1600), vec![SessionId(2)]);
        tracker.remove(SessionId(1));
        tracker.remove(SessionId(2));
        assert!(tracker.is_empty());
        assert_eq!(tracker.next_expiry_ms(), None);
    }

    #[test]
    fn ids_carry_the_server_id_and_passwords_are_stable() {
        let mut ids = SessionIdAllocator::new(7, 1_700_000_000_000);
        let first = ids.allocate();
        let second = ids.allocate();
        assert_eq!((first.0 as u64) >> 56, 7);
        assert_eq!(second.0, first.0 + 1);
        assert_eq!(session_password(first), session_password(first));
        assert_ne!(session_password(first), session_password(second));
    }

    #[test]
    fn timeouts_are_clamped() {
        assert_eq!(negotiate_timeout_ms(1, 4000, 40000), 4000);
        assert_eq!(negotiate_timeout_ms(30000, 4000, 40000), 30000);
        assert_eq!(negotiate_timeout_ms(i32::MAX, 4000, 40000), 40000);
        assert_eq!(negotiate_timeout_ms(-5, 4000, 40000), 4000);
    }
}
