//! Server-to-server messages: Zab quorum packets, fast-leader-election notifications, and the
//! CRC-checked frame both travel in.
//!
//! Quorum packets keep the layout of ZooKeeper's `QuorumPacket` (type, zxid, data, authinfo) and
//! its type numbers, with the typed payload decoded here so the Zab core never sees raw bytes.
//! Notifications keep the field order of fast leader election's wire message. A frame is
//! `[u32 body length][u32 CRC32C of body][body]`, body = `[u8 kind][record]`: a flipped bit on a
//! peer link is an error that resets the link, never a wrong decision.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::data::Id;
use crate::jute::{DecodeError, DecodeResult, Reader, Record};
use crate::jute_record;
use crate::types::{Epoch, ServerId, Zxid};

/// The protocol version Zinc announces in LEADERINFO and FOLLOWERINFO (ZooKeeper 3.4+'s value).
pub const PROTOCOL_VERSION: i32 = 0x10000;
/// The notification format version (ZooKeeper 3.5+ sends 2).
pub const NOTIFICATION_VERSION: i32 = 2;
/// Bytes of frame header: length and CRC.
pub const FRAME_HEADER_BYTES: usize = 8;

jute_record! {
    /// The raw wire form of every quorum packet.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct QuorumPacket {
        pub kind: i32,
        pub zxid: i64,
        pub data: Option<Bytes>,
        pub authinfo: Vec<Id>,
    }
}

jute_record! {
    /// What a learner tells the leader about itself in FOLLOWERINFO / OBSERVERINFO.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct LearnerInfo {
        pub server_id: i64,
        pub protocol_version: i32,
        pub config_version: i64,
    }
}

/// Quorum packet type numbers (`Leader.java` constants).
pub mod kind {
    pub const REQUEST: i32 = 1;
    pub const PROPOSAL: i32 = 2;
    pub const ACK: i32 = 3;
    pub const COMMIT: i32 = 4;
    pub const PING: i32 = 5;
    pub const SYNC: i32 = 7;
    pub const INFORM: i32 = 8;
    pub const NEWLEADER: i32 = 10;
    pub const FOLLOWERINFO: i32 = 11;
    pub const UPTODATE: i32 = 12;
    pub const DIFF: i32 = 13;
    pub const TRUNC: i32 = 14;
    pub const SNAP: i32 = 15;
    pub const OBSERVERINFO: i32 = 16;
    pub const LEADERINFO: i32 = 17;
    pub const ACKEPOCH: i32 = 18;
}

/// A decoded quorum packet. Zxid-carrying packets name the zxid they are about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerPacket {
    /// A learner forwards a client request to the leader.
    Request {
        data: Bytes,
    },
    /// Leader -> follower: log this txn.
    Proposal {
        zxid: Zxid,
        txn: Bytes,
    },
    /// Follower -> leader: everything up to `zxid` is durable here (or, with counter 0, the
    /// NEWLEADER of that epoch is).
    Ack {
        zxid: Zxid,
    },
    /// Leader -> follower: everything up to `zxid` is committed.
    Commit {
        zxid: Zxid,
    },
    /// Liveness, both ways; the leader's carries its last proposed zxid.
    Ping {
        zxid: Zxid,
    },
    /// `sync`: learner -> leader asks, leader -> learner answers with its last proposed zxid.
    Sync {
        zxid: Zxid,
        request: i64,
    },
    /// Leader -> observer: a committed txn.
    Inform {
        zxid: Zxid,
        txn: Bytes,
    },
    /// Leader -> learner: the synchronization is complete up to the NEWLEADER of this epoch.
    NewLeader {
        zxid: Zxid,
    },
    FollowerInfo {
        accepted_epoch: Epoch,
        server_id: ServerId,
    },
    ObserverInfo {
        accepted_epoch: Epoch,
        server_id: ServerId,
    },
    /// Leader -> learner: start serving; everything up to `zxid` is committed.
    UpToDate {
        zxid: Zxid,
    },
    /// Leader -> learner: keep your log, the proposals that follow extend it.
    Diff {
        zxid: Zxid,
    },
    /// Leader -> learner: drop your log after `zxid`.
    Trunc {
        zxid: Zxid,
    },
    /// Leader -> learner: replace your state with this snapshot taken at `zxid`.
    Snap {
        zxid: Zxid,
        snapshot: Bytes,
    },
    LeaderInfo {
        epoch: Epoch,
    },
    AckEpoch {
        current_epoch: Epoch,
        last_zxid: Zxid,
    },
}

fn epoch_zxid(epoch: Epoch) -> i64 {
    Zxid::new(epoch, 0).0
}

fn i32_data(value: i32) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(&value.to_be_bytes()))
}

fn learner_info(server_id: ServerId) -> Option<Bytes> {
    let info = LearnerInfo {
        server_id: server_id.0 as i64,
        protocol_version: PROTOCOL_VERSION,
        config_version: 0,
    };
    Some(info.to_bytes())
}

impl PeerPacket {
    /// The wire form.
    pub fn to_quorum_packet(&self) -> QuorumPacket {
        use PeerPacket as P;
        let (kind, zxid, data) = match self {
            P::Request { data } => (kind::REQUEST, 0, Some(data.clone())),
            P::Proposal { zxid, txn } => (kind::PROPOSAL, zxid.0, Some(txn.clone())),
            P::Ack { zxid } => (kind::ACK, zxid.0, None),
            P::Commit { zxid } => (kind::COMMIT, zxid.0, None),
            P::Ping { zxid } => (kind::PING, zxid.0, None),
            P::Sync { zxid, request } => (
                kind::SYNC,
                zxid.0,
                Some(Bytes::copy_from_slice(&request.to_be_bytes())),
            ),
            P::Inform { zxid, txn } => (kind::INFORM, zxid.0, Some(txn.clone())),
            P::NewLeader { zxid } => (kind::NEWLEADER, zxid.0, None),
            P::FollowerInfo {
                accepted_epoch,
                server_id,
            } => (
                kind::FOLLOWERINFO,
                epoch_zxid(*accepted_epoch),
                learner_info(*server_id),
            ),
            P::ObserverInfo {
                accepted_epoch,
                server_id,
            } => (
                kind::OBSERVERINFO,
                epoch_zxid(*accepted_epoch),
                learner_info(*server_id),
            ),
            P::UpToDate { zxid } => (kind::UPTODATE, zxid.0, None),
            P::Diff { zxid } => (kind::DIFF, zxid.0, None),
            P::Trunc { zxid } => (kind::TRUNC, zxid.0, None),
            P::Snap { zxid, snapshot } => (kind::SNAP, zxid.0, Some(snapshot.clone())),
            P::LeaderInfo { epoch } => (
                kind::LEADERINFO,
                epoch_zxid(*epoch),
                i32_data(PROTOCOL_VERSION),
            ),
            P::AckEpoch {
                current_epoch,
                last_zxid,
            } => (
                kind::ACKEPOCH,
                last_zxid.0,
                i32_data(current_epoch.0 as i32),
            ),
        };
        QuorumPacket {
            kind,
            zxid,
            data,
            authinfo: Vec::new(),
        }
    }

    /// Reads the typed packet out of its wire form.
    pub fn from_quorum_packet(packet: QuorumPacket) -> DecodeResult<PeerPacket> {
        use PeerPacket as P;
        let zxid = Zxid(packet.zxid);
        let data = packet.data.unwrap_or_default();
        Ok(match packet.kind {
            kind::REQUEST => P::Request { data },
            kind::PROPOSAL => P::Proposal { zxid, txn: data },
            kind::ACK => P::Ack { zxid },
            kind::COMMIT => P::Commit { zxid },
            kind::PING => P::Ping { zxid },
            kind::SYNC => P::Sync {
                zxid,
                request: i64::from_bytes(&data)?,
            },
            kind::INFORM => P::Inform { zxid, txn: data },
            kind::NEWLEADER => P::NewLeader { zxid },
            kind::FOLLOWERINFO => P::FollowerInfo {
                accepted_epoch: zxid.epoch(),
                server_id: ServerId(LearnerInfo::from_bytes(&data)?.server_id as u64),
            },
            kind::OBSERVERINFO => P::ObserverInfo {
                accepted_epoch: zxid.epoch(),
                server_id: ServerId(LearnerInfo::from_bytes(&data)?.server_id as u64),
            },
            kind::UPTODATE => P::UpToDate { zxid },
            kind::DIFF => P::Diff { zxid },
            kind::TRUNC => P::Trunc { zxid },
            kind::SNAP => P::Snap {
                zxid,
                snapshot: data,
            },
            kind::LEADERINFO => P::LeaderInfo {
                epoch: zxid.epoch(),
            },
            kind::ACKEPOCH => P::AckEpoch {
                current_epoch: Epoch(i32::from_bytes(&data)? as u32),
                last_zxid: zxid,
            },
            other => {
                return Err(DecodeError::UnknownValue {
                    what: "quorum packet type",
                    value: other as i64,
                })
            }
        })
    }
}

/// A server's election state, as announced in its notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerState {
    Looking = 0,
    Following = 1,
    Leading = 2,
    Observing = 3,
}

impl PeerState {
    fn from_i32(value: i32) -> DecodeResult<PeerState> {
        Ok(match value {
            0 => PeerState::Looking,
            1 => PeerState::Following,
            2 => PeerState::Leading,
            3 => PeerState::Observing,
            other => {
                return Err(DecodeError::UnknownValue {
                    what: "peer state",
                    value: other as i64,
                })
            }
        })
    }
}

/// A vote: who should lead, and why (the candidate's epoch and last zxid). Votes order by
/// (peer epoch, zxid, leader id): the derived `Ord` follows the field order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vote {
    pub peer_epoch: Epoch,
    pub zxid: Zxid,
    pub leader: ServerId,
}

/// A fast-leader-election message: the sender's vote, its state and its logical clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notification {
    pub state: PeerState,
    pub vote: Vote,
    pub election_epoch: u64,
}

impl Record for Notification {
    const MIN_ENCODED_BYTES: usize = 4 + 8 * 4 + 4 + 4;

    fn encode(&self, out: &mut BytesMut) {
        out.put_i32(self.state as i32);
        out.put_i64(self.vote.leader.0 as i64);
        out.put_i64(self.vote.zxid.0);
        out.put_i64(self.election_epoch as i64);
        out.put_i64(self.vote.peer_epoch.0 as i64);
        out.put_i32(NOTIFICATION_VERSION);
        // No dynamic reconfiguration: the config string is empty.
        out.put_i32(0);
    }

    fn decode(reader: &mut Reader) -> DecodeResult<Self> {
        let state = PeerState::from_i32(reader.read_i32()?)?;
        let leader = ServerId(reader.read_i64()? as u64);
        let zxid = Zxid(reader.read_i64()?);
        let election_epoch = reader.read_i64()? as u64;
        let peer_epoch = Epoch(reader.read_i64()? as u32);
        let _version = reader.read_i32()?;
        let _config = reader.read_buffer()?;
        Ok(Notification {
            state,
            vote: Vote {
                peer_epoch,
                zxid,
                leader,
            },
            election_epoch,
        })
    }
}

/// Anything one server sends another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMessage {
    Notification(Notification),
    Packet(PeerPacket),
}

const TAG_NOTIFICATION: u8 = 1;
const TAG_PACKET: u8 = 2;

/// Why bytes from a peer link were rejected; every variant means "reset the link".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {length} bytes exceeds the limit of {limit}")]
    TooLarge { length: usize, limit: usize },
    #[error("frame checksum mismatch: header says {expected:#x}, body has {actual:#x}")]
    Checksum { expected: u32, actual: u32 },
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("empty frame")]
    Empty,
    #[error("frame body: {0}")]
    Decode(#[from] DecodeError),
}

impl PeerMessage {
    /// Appends one frame holding this message to `out`.
    pub fn encode_frame(&self, out: &mut BytesMut) {
        let mut body = BytesMut::new();
        match self {
            PeerMessage::Notification(notification) => {
                body.put_u8(TAG_NOTIFICATION);
                notification.encode(&mut body);
            }
            PeerMessage::Packet(packet) => {
                body.put_u8(TAG_PACKET);
                packet.to_quorum_packet().encode(&mut body);
            }
        }
        let length = u32::try_from(body.len()).expect("peer frame exceeds u32::MAX bytes");
        out.put_u32(length);
        out.put_u32(crc32c::crc32c(&body));
        out.put_slice(&body);
    }

    pub fn to_frame(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode_frame(&mut out);
        out.freeze()
    }

    /// Takes one whole frame off the front of `buf`: `Ok(None)` until all its bytes are there.
    /// The length is checked against `frame_bytes_max` before anything waits for or allocates
    /// the body.
    pub fn decode_frame(
        buf: &mut BytesMut,
        frame_bytes_max: usize,
    ) -> Result<Option<PeerMessage>, FrameError> {
        if buf.len() < FRAME_HEADER_BYTES {
            return Ok(None);
        }
        let length = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if length > frame_bytes_max {
            return Err(FrameError::TooLarge {
                length,
                limit: frame_bytes_max,
            });
        }
        if buf.len() < FRAME_HEADER_BYTES + length {
            return Ok(None);
        }
        let expected = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        buf.advance(FRAME_HEADER_BYTES);
        let mut body = buf.split_to(length).freeze();
        let actual = crc32c::crc32c(&body);
        if actual != expected {
            return Err(FrameError::Checksum { expected, actual });
        }
        if body.is_empty() {
            return Err(FrameError::Empty);
        }
        let tag = body.get_u8();
        let mut reader = Reader::new(body);
        let message = match tag {
            TAG_NOTIFICATION => PeerMessage::Notification(Notification::decode(&mut reader)?),
            TAG_PACKET => {
                let raw = QuorumPacket::decode(&mut reader)?;
                PeerMessage::Packet(PeerPacket::from_quorum_packet(raw)?)
            }
            other => return Err(FrameError::UnknownKind(other)),
        };
        reader.finish()?;
        Ok(Some(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_packet() -> Vec<PeerPacket> {
        let zxid = Zxid::new(Epoch(3), 9);
        let bytes = Bytes::from_static(b"txn");
        vec![
            PeerPacket::Request {
                data: bytes.clone(),
            },
            PeerPacket::Proposal {
                zxid,
                txn: bytes.clone(),
            },
            PeerPacket::Ack { zxid },
            PeerPacket::Commit { zxid },
            PeerPacket::Ping { zxid },
            PeerPacket::Sync { zxid, request: 77 },
            PeerPacket::Inform {
                zxid,
                txn: bytes.clone(),
            },
            PeerPacket::NewLeader { zxid },
            PeerPacket::FollowerInfo {
                accepted_epoch: Epoch(2),
                server_id: ServerId(5),
            },
            PeerPacket::ObserverInfo {
                accepted_epoch: Epoch(2),
                server_id: ServerId(6),
            },
            PeerPacket::UpToDate { zxid },
            PeerPacket::Diff { zxid },
            PeerPacket::Trunc { zxid },
            PeerPacket::Snap {
                zxid,
                snapshot: bytes,
            },
            PeerPacket::LeaderInfo { epoch: Epoch(4) },
            PeerPacket::AckEpoch {
                current_epoch: Epoch(3),
                last_zxid: zxid,
            },
        ]
    }

    #[test]
    fn every_packet_round_trips_through_a_frame() {
        for packet in every_packet() {
            let message = PeerMessage::Packet(packet);
            let mut buf = BytesMut::from(&message.to_frame()[..]);
            assert_eq!(
                PeerMessage::decode_frame(&mut buf, 1 << 20),
                Ok(Some(message))
            );
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn leaderinfo_has_zookeepers_layout() {
        let raw = PeerPacket::LeaderInfo { epoch: Epoch(4) }.to_quorum_packet();
        assert_eq!(raw.kind, 17);
        assert_eq!(raw.zxid, 0x4_0000_0000);
        assert_eq!(raw.data.as_deref(), Some(&[0, 1, 0, 0][..]));
    }

    #[test]
    fn notification_round_trips_and_has_fixed_size() {
        let notification = Notification {
            state: PeerState::Following,
            vote: Vote {
                peer_epoch: Epoch(2),
                zxid: Zxid::new(Epoch(2), 5),
                leader: ServerId(3),
            },
            election_epoch: 11,
        };
        let bytes = notification.to_bytes();
        assert_eq!(bytes.len(), Notification::MIN_ENCODED_BYTES);
        assert_eq!(Notification::from_bytes(&bytes), Ok(notification));
    }

    #[test]
    fn votes_order_by_epoch_then_zxid_then_id() {
        let vote = |epoch, counter, id| Vote {
            peer_epoch: Epoch(epoch),
            zxid: Zxid::new(Epoch(epoch), counter),
            leader: ServerId(id),
        };
        assert!(vote(2, 0, 1) > vote(1, 50, 9));
        assert!(vote(1, 6, 1) > vote(1, 5, 9));
        assert!(vote(1, 5, 2) > vote(1, 5, 1));
    }

    #[test]
    fn partial_frames_wait_and_corrupt_frames_fail() {
        let frame = PeerMessage::Packet(PeerPacket::Ack {
            zxid: Zxid::new(Epoch(1), 1),
        })
        .to_frame();
        let mut buf = BytesMut::from(&frame[..frame.len() - 1]);
        assert_eq!(PeerMessage::decode_frame(&mut buf, 1 << 20), Ok(None));
        let mut corrupt = BytesMut::from(&frame[..]);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0x40;
        assert!(matches!(
            PeerMessage::decode_frame(&mut corrupt, 1 << 20),
            Err(FrameError::Checksum { .. })
        ));
        let mut big = BytesMut::from(&frame[..]);
        assert!(matches!(
            PeerMessage::decode_frame(&mut big, 4),
            Err(FrameError::TooLarge { .. })
        ));
    }
}
