//! Links between the servers of an ensemble, over TCP on each member's quorum port.
//!
//! A link to a peer is two connections, one per direction: a server sends only on the
//! connection it dialed and receives only on connections the peer dialed. Each connection
//! opens with a hello (`ZINCPEER`, the sender's id, the receiver's id), then carries
//! [`PeerMessage`] frames. The link breaks when either connection ends, when a frame fails its
//! checks, when the Zab core asks for it ([`Peers::disconnect`]), or when the peer dials again
//! (a new inbound connection means the peer considers the old link gone). A break closes both
//! connections and drops what was queued; the Zab core is told once, before anything that
//! arrives on a newer connection, and a later send dials afresh. That is the link contract the
//! simulator checks the Zab core against.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::future::{or, poll_once};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use zinc_protocol::peer::PeerMessage;
use zinc_protocol::ServerId;

/// First bytes of every peer connection.
const HELLO_MAGIC: &[u8; 8] = b"ZINCPEER";
const HELLO_BYTES: usize = 8 + 8 + 8;

/// Largest frame taken from a peer: a SNAP carries a whole tree.
const PEER_FRAME_BYTES_MAX: usize = 1 << 31;

/// How long dialing a peer may take before the link counts as broken.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

const CONNECT_FAILED: &str = "cannot connect to";

/// How long an accepted connection has to send its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes gathered from the send queue into one write.
const WRITE_BATCH_BYTES: usize = 1 << 20;

/// Identifies one connection for as long as the process runs.
pub(crate) type ConnId = u64;

/// What the connection tasks report to the owner of [`Peers`].
pub(crate) enum PeerEvent {
    /// A connection from `peer` passed its hello; dropping `stop` closes it.
    Accepted {
        peer: ServerId,
        conn: ConnId,
        stop: LocalSender<()>,
    },
    Message {
        peer: ServerId,
        conn: ConnId,
        message: PeerMessage,
    },
    /// The connection ended (closed, failed, or sent a bad frame).
    Ended {
        peer: ServerId,
        conn: ConnId,
        reason: String,
    },
}

/// What a [`PeerEvent`] means for the Zab core, in order.
pub(crate) enum Delivery {
    /// The link to the peer broke: call `Zab::disconnected`.
    Disconnected(ServerId),
    Message(ServerId, PeerMessage),
}

struct Outbound {
    conn: ConnId,
    queue: LocalSender<Bytes>,
    _stop: LocalSender<()>,
}

struct Inbound {
    conn: ConnId,
    _stop: LocalSender<()>,
}

#[derive(Default)]
struct Link {
    outbound: Option<Outbound>,
    inbound: Option<Inbound>,
}

impl Link {
    fn is_open(&self) -> bool {
        self.outbound.is_some() || self.inbound.is_some()
    }

    fn holds(&self, conn: ConnId) -> bool {
        self.outbound.as_ref().is_some_and(|o| o.conn == conn)
            || self.inbound.as_ref().is_some_and(|i| i.conn == conn)
    }
}

/// This server's links to the rest of the ensemble. Owned by the Zab core's loop.
pub(crate) struct Peers {
    me: ServerId,
    addresses: HashMap<ServerId, SocketAddr>,
    links: HashMap<ServerId, Link>,
    events: Rc<LocalSender<PeerEvent>>,
    next_conn: Rc<std::cell::Cell<ConnId>>,
}

impl Peers {
    /// Starts accepting peers on `listener`; events arrive on the returned receiver.
    pub(crate) fn start(
        me: ServerId,
        addresses: HashMap<ServerId, SocketAddr>,
        listener: TcpListener,
    ) -> (Peers, LocalReceiver<PeerEvent>) {
        let (sender, receiver) = local_channel::new_unbounded();
        let peers = Peers {
            me,
            addresses,
            links: HashMap::new(),
            events: Rc::new(sender),
            next_conn: Rc::new(std::cell::Cell::new(1)),
        };
        let known: Vec<ServerId> = peers.addresses.keys().copied().collect();
        glommio::spawn_local(accept_loop(
            me,
            known,
            listener,
            peers.events.clone(),
            peers.next_conn.clone(),
        ))
        .detach();
        (peers, receiver)
    }

    /// Queues one message for `to`, dialing first if no connection to it is open.
    pub(crate) fn send(&mut self, to: ServerId, message: &PeerMessage) {
        let Some(&address) = self.addresses.get(&to) else {
            return;
        };
        let next_conn = &self.next_conn;
        let link = self.links.entry(to).or_default();
        let outbound = link.outbound.get_or_insert_with(|| {
            let conn = take_conn_id(next_conn);
            let (queue, queued) = local_channel::new_unbounded();
            let (stop, stopped) = local_channel::new_bounded(1);
            let task = dial(
                self.me,
                to,
                address,
                conn,
                queued,
                stopped,
                self.events.clone(),
            );
            glommio::spawn_local(task).detach();
            Outbound {
                conn,
                queue,
                _stop: stop,
            }
        });
        let _ = outbound.queue.try_send(message.to_frame());
    }

    /// Closes the link to `peer` at the Zab core's request (it is not told again).
    pub(crate) fn disconnect(&mut self, peer: ServerId) {
        self.links.remove(&peer);
    }

    /// Turns a connection's event into what the Zab core must hear, if anything.
    pub(crate) fn on_event(&mut self, event: PeerEvent, out: &mut Vec<Delivery>) {
        match event {
            PeerEvent::Accepted { peer, conn, stop } => {
                let link = self.links.entry(peer).or_default();
                if link.inbound.is_some() {
                    // The peer dialed again: it has given up the old link.
                    self.links.remove(&peer);
                    out.push(Delivery::Disconnected(peer));
                }
                self.links.entry(peer).or_default().inbound = Some(Inbound { conn, _stop: stop });
            }
            PeerEvent::Message {
                peer,
                conn,
                message,
            } => {
                let current = self
                    .links
                    .get(&peer)
                    .and_then(|link| link.inbound.as_ref())
                    .is_some_and(|inbound| inbound.conn == conn);
                if current {
                    out.push(Delivery::Message(peer, message));
                }
            }
            PeerEvent::Ended { peer, conn, reason } => {
                if self.links.get(&peer).is_some_and(|link| link.holds(conn)) {
                    let was_open = self.links.remove(&peer).is_some_and(|l| l.is_open());
                    if was_open {
                        // A peer that is down is dialed at every election round: quietly.
                        if !reason.starts_with(CONNECT_FAILED) {
                            crate::log_line!("zinc: link to server {} broke: {reason}", peer.0);
                        }
                        out.push(Delivery::Disconnected(peer));
                    }
                }
            }
        }
    }
}

/// The next connection id (dialed and accepted connections share the counter).
fn take_conn_id(next: &std::cell::Cell<ConnId>) -> ConnId {
    let conn = next.get();
    next.set(conn + 1);
    conn
}

fn hello(from: ServerId, to: ServerId) -> [u8; HELLO_BYTES] {
    let mut bytes = [0; HELLO_BYTES];
    bytes[..8].copy_from_slice(HELLO_MAGIC);
    bytes[8..16].copy_from_slice(&from.0.to_be_bytes());
    bytes[16..].copy_from_slice(&to.0.to_be_bytes());
    bytes
}

/// Resolves when `stop`'s sender is dropped.
async fn stopped(stop: &LocalReceiver<()>) -> Result<(), String> {
    while stop.recv().await.is_some() {}
    Err("closed by this server".into())
}

/// Dials `to` and sends what is queued for it until the connection ends or is stopped.
async fn dial(
    me: ServerId,
    to: ServerId,
    address: SocketAddr,
    conn: ConnId,
    queued: LocalReceiver<Bytes>,
    stop: LocalReceiver<()>,
    events: Rc<LocalSender<PeerEvent>>,
) {
    let run = async {
        let stream = TcpStream::connect_timeout(address, CONNECT_TIMEOUT)
            .await
            .map_err(|error| format!("{CONNECT_FAILED} {address}: {error}"))?;
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = futures_lite::io::split(stream);
        writer
            .write_all(&hello(me, to))
            .await
            .map_err(|error| format!("hello to {address}: {error}"))?;
        let sending = async {
            let mut buf = Vec::new();
            while let Some(frame) = queued.recv().await {
                buf.extend_from_slice(&frame);
                while buf.len() < WRITE_BATCH_BYTES {
                    match poll_once(queued.recv()).await {
                        Some(Some(frame)) => buf.extend_from_slice(&frame),
                        _ => break,
                    }
                }
                writer
                    .write_all(&buf)
                    .await
                    .map_err(|error| format!("write: {error}"))?;
                buf.clear();
            }
            Err::<(), String>("send queue closed".into())
        };
        // The peer never writes on this connection: a read returning means it closed.
        let watching = async {
            let mut byte = [0u8; 1];
            let _ = reader.read(&mut byte).await;
            Err::<(), String>("closed by the peer".into())
        };
        or(sending, watching).await
    };
    let reason = match or(run, stopped(&stop)).await {
        Ok(()) => String::new(),
        Err(reason) => reason,
    };
    let _ = events.try_send(PeerEvent::Ended {
        peer: to,
        conn,
        reason,
    });
}

async fn accept_loop(
    me: ServerId,
    known: Vec<ServerId>,
    listener: TcpListener,
    events: Rc<LocalSender<PeerEvent>>,
    next_conn: Rc<std::cell::Cell<ConnId>>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                crate::log_line!("zinc: accepting a peer connection failed: {error}");
                glommio::timer::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let conn = take_conn_id(&next_conn);
        let task = receive(me, known.clone(), stream, conn, events.clone());
        glommio::spawn_local(task).detach();
    }
}

/// Reads a peer's hello, then its frames, until the connection ends or is stopped.
async fn receive(
    me: ServerId,
    known: Vec<ServerId>,
    stream: TcpStream,
    conn: ConnId,
    events: Rc<LocalSender<PeerEvent>>,
) {
    let _ = stream.set_nodelay(true);
    let remote = stream.peer_addr().ok();
    let mut stream = stream;
    let mut greeting = [0u8; HELLO_BYTES];
    let read_hello = async { stream.read_exact(&mut greeting).await.is_ok() };
    let timeout = async {
        glommio::timer::sleep(HELLO_TIMEOUT).await;
        false
    };
    if !or(read_hello, timeout).await {
        return;
    }
    let from = ServerId(u64::from_be_bytes(
        greeting[8..16].try_into().unwrap_or_default(),
    ));
    let to = ServerId(u64::from_be_bytes(
        greeting[16..].try_into().unwrap_or_default(),
    ));
    if &greeting[..8] != HELLO_MAGIC || to != me || !known.contains(&from) || from == me {
        crate::log_line!(
            "zinc: refused a peer connection from {remote:?}: not a server of this ensemble \
             (it says it is {} and wants {})",
            from.0,
            to.0
        );
        return;
    }
    let (stop, stop_receiver) = local_channel::new_bounded(1);
    let _ = events.try_send(PeerEvent::Accepted {
        peer: from,
        conn,
        stop,
    });
    let run = async {
        let mut buf = BytesMut::with_capacity(64 << 10);
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            loop {
                match PeerMessage::decode_frame(&mut buf, PEER_FRAME_BYTES_MAX) {
                    Ok(Some(message)) => {
                        let _ = events.try_send(PeerEvent::Message {
                            peer: from,
                            conn,
                            message,
                        });
                    }
                    Ok(None) => break,
                    Err(error) => return Err(format!("bad frame: {error}")),
                }
            }
            let read = stream
                .read(&mut chunk)
                .await
                .map_err(|error| format!("read: {error}"))?;
            if read == 0 {
                return Err::<(), String>("closed by the peer".into());
            }
            buf.extend_from_slice(&chunk[..read]);
        }
    };
    let reason = match or(run, stopped(&stop_receiver)).await {
        Ok(()) => String::new(),
        Err(reason) => reason,
    };
    let _ = events.try_send(PeerEvent::Ended {
        peer: from,
        conn,
        reason,
    });
}
