//! Newtypes for the protocol's identifiers, so a zxid is never confused with a session id.

/// A ZooKeeper transaction id: epoch in the high 32 bits, counter in the low 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Zxid(pub i64);

/// A Zab epoch (the high half of a zxid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Epoch(pub u32);

/// A client session id; the server that created it is in its high byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SessionId(pub i64);

/// A server's id in the ensemble (`server.N` in zoo.cfg, `myid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ServerId(pub u64);

/// A client's request id, echoed in the reply header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Xid(pub i32);

impl Zxid {
    pub const ZERO: Zxid = Zxid(0);

    pub fn new(epoch: Epoch, counter: u32) -> Self {
        Zxid(((epoch.0 as i64) << 32) | counter as i64)
    }

    pub fn epoch(self) -> Epoch {
        Epoch((self.0 as u64 >> 32) as u32)
    }

    pub fn counter(self) -> u32 {
        self.0 as u32
    }
}

impl std::fmt::Display for Zxid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{:x}", self.0)
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{:x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zxid_halves() {
        let zxid = Zxid::new(Epoch(3), 7);
        assert_eq!(zxid.0, 0x3_0000_0007);
        assert_eq!(zxid.epoch(), Epoch(3));
        assert_eq!(zxid.counter(), 7);
    }
}
