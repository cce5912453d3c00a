//! A shard core: owns client connections and their sessions, answers reads from the tree root it
//! holds, forwards writes to the Zab core, and applies each published batch (fire watches, switch
//! root, send replies, release queued reads).
//!
//! Per-session order: a session's requests are executed in the order they arrived. Writes may be
//! in flight several at a time; a read waits until no write of its session is in flight, and
//! everything after a waiting read waits with it.
//!
//! Across shards the server behaves as one: a read sees every write that any shard had answered
//! (or shown in a read) before the read arrived. Each shard raises the shared
//! `CrossShard::acknowledged_zxid` to its root's zxid before it answers from that root; a read
//! records that value on arrival and waits until its own shard's root has reached it (the
//! core publishes every root to every shard, so the wait is one channel hop at most).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use event_listener::Event;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use zinc_protocol::frame::{encode_frame, FrameDecoder};
use zinc_protocol::records::{
    xid, ConnectRequest, ConnectResponse, ReplyHeader, Request, RequestHeader, Response,
    WatcherEvent,
};
use zinc_protocol::{ErrorCode, Id, OpCode, Reader, Record, SessionId};
use zinc_storage::tree::Tree;

use crate::config::Config;
use crate::exec::{self, LocalOutcome, SessionContext};
use crate::session::session_password;
use crate::shell::admin;
use crate::shell::link;
use crate::shell::messages::{
    ConnToken, CoreReply, Published, ShardId, ToCore, ToShard, WriteRequest,
};
use crate::shell::stats::{ConnStats, ServerStats};
use crate::watch::WatchManager;

/// Bytes read from a socket at a time: small, so that thousands of idle connections cost
/// little; a busy connection grows its chunk up to `READ_CHUNK_BYTES_MAX`.
const READ_CHUNK_BYTES: usize = 4 * 1024;
const READ_CHUNK_BYTES_MAX: usize = 64 * 1024;

/// A request waiting its turn in its session's queue.
struct Queued {
    header: RequestHeader,
    request: Request,
    /// The zxid a read must see: the newest any shard had answered from when it arrived.
    zxid_min: i64,
}

/// What the head of a session's queue waits for.
enum Turn {
    Execute(RequestHeader, Request),
    /// Nothing to do now: the queue is empty, or its head waits for the session's writes in
    /// flight. The next frame or reply drains the queue again.
    Wait,
    /// This shard's root to reach the zxid.
    Root(i64),
    /// A request for the core while the log cannot write: answered ThrottledOp at once.
    Refuse(RequestHeader),
}

/// One client connection.
pub(crate) struct Conn {
    token: ConnToken,
    pub(crate) peer: SocketAddr,
    pub(crate) session: Cell<Option<SessionId>>,
    pub(crate) timeout_ms: Cell<u32>,
    auth: RefCell<Arc<[Id]>>,
    queue: RefCell<VecDeque<Queued>>,
    writes_in_flight: Cell<usize>,
    /// A `drain_queue` is running for this connection; others leave the work to it, so the
    /// session's requests reach the core in order.
    draining: Cell<bool>,
    outbound: RefCell<BytesMut>,
    /// Wakes the writer (data queued or closing) and the reader (room freed).
    changed: Event,
    pub(crate) closing: Cell<bool>,
    pub(crate) packets_received: Cell<u64>,
    pub(crate) packets_sent: Cell<u64>,
    pub(crate) last_zxid: Cell<i64>,
    pub(crate) last_op: Cell<Option<OpCode>>,
    /// Whether the client's connect request carried the readOnly byte (3.4+ clients); the
    /// response carries one only then.
    sends_read_only: Cell<bool>,
    pub(crate) stats: ConnStats,
}

impl Conn {
    fn new(token: ConnToken, peer: SocketAddr, server_stats: Arc<ServerStats>) -> Rc<Conn> {
        let ip_id: Arc<[Id]> = Arc::from(vec![Id::new("ip", &peer.ip().to_string())]);
        Rc::new(Conn {
            token,
            peer,
            session: Cell::new(None),
            timeout_ms: Cell::new(0),
            auth: RefCell::new(ip_id),
            queue: RefCell::new(VecDeque::new()),
            writes_in_flight: Cell::new(0),
            draining: Cell::new(false),
            outbound: RefCell::new(BytesMut::new()),
            changed: Event::new(),
            closing: Cell::new(false),
            packets_received: Cell::new(0),
            packets_sent: Cell::new(0),
            last_zxid: Cell::new(0),
            last_op: Cell::new(None),
            sends_read_only: Cell::new(false),
            stats: ConnStats::new(server_stats),
        })
    }

    /// Appends one framed record (header + optional body).
    fn send(&self, header: &ReplyHeader, body: Option<&dyn Encode>) {
        let mut out = self.outbound.borrow_mut();
        encode_frame(&mut out, |frame| {
            header.encode(frame);
            if let Some(body) = body {
                body.encode_into(frame);
            }
        });
        self.packets_sent.set(self.packets_sent.get() + 1);
        self.stats.frame_sent(header.xid);
        self.last_zxid.set(header.zxid.max(self.last_zxid.get()));
        drop(out);
        self.changed.notify(usize::MAX);
    }

    fn send_raw(&self, bytes: &[u8]) {
        self.outbound.borrow_mut().extend_from_slice(bytes);
        self.changed.notify(usize::MAX);
    }

    pub(crate) fn close(&self) {
        self.closing.set(true);
        self.changed.notify(usize::MAX);
    }

    pub(crate) fn queued(&self) -> usize {
        self.queue.borrow().len() + self.writes_in_flight.get()
    }
}

/// Object-safe encoding for reply bodies of different record types.
pub(crate) trait Encode {
    fn encode_into(&self, out: &mut BytesMut);
}

impl Encode for Response {
    fn encode_into(&self, out: &mut BytesMut) {
        self.encode(out);
    }
}

impl Encode for WatcherEvent {
    fn encode_into(&self, out: &mut BytesMut) {
        self.encode(out);
    }
}

impl Encode for ConnectResponse {
    fn encode_into(&self, out: &mut BytesMut) {
        self.encode(out);
    }
}

/// What the shards (and the core) share.
pub(crate) struct CrossShard {
    /// The newest zxid any shard has answered a client from.
    pub(crate) acknowledged_zxid: AtomicI64,
    /// Raised by the core while the log cannot write (disk full): shards refuse writes rather
    /// than queue them.
    pub(crate) log_blocked: AtomicBool,
    /// Whether the server serves clients: always when standalone; in an ensemble only while it
    /// leads or follows a leader it is synchronized with. New connections are closed at once
    /// otherwise.
    pub(crate) serving: AtomicBool,
    /// Every shard's queue of view requests (four-letter words), by shard id.
    pub(crate) view_requests: Vec<async_channel::Sender<ViewRequest>>,
}

/// Everything one shard core owns.
pub(crate) struct Shard {
    pub(crate) id: ShardId,
    pub(crate) config: Arc<Config>,
    pub(crate) stats: Arc<ServerStats>,
    pub(crate) root: RefCell<Tree>,
    pub(crate) last_zxid: Cell<i64>,
    shared: Arc<CrossShard>,
    /// Notified whenever this shard switches to a newer root.
    root_advanced: Event,
    pub(crate) sessions: RefCell<HashMap<SessionId, Rc<Conn>>>,
    pub(crate) connections: RefCell<HashMap<ConnToken, Rc<Conn>>>,
    pub(crate) watches: RefCell<WatchManager>,
    to_core: link::Sender<ToCore>,
    touched: RefCell<HashSet<SessionId>>,
    per_ip: RefCell<HashMap<IpAddr, u32>>,
    next_token: Cell<ConnToken>,
}

impl Shard {
    pub(crate) fn new(
        id: ShardId,
        config: Arc<Config>,
        stats: Arc<ServerStats>,
        root: Tree,
        shared: Arc<CrossShard>,
        to_core: link::Sender<ToCore>,
    ) -> Rc<Shard> {
        Rc::new(Shard {
            id,
            config,
            stats,
            last_zxid: Cell::new(root.last_zxid().0),
            root: RefCell::new(root),
            shared,
            root_advanced: Event::new(),
            sessions: RefCell::new(HashMap::new()),
            connections: RefCell::new(HashMap::new()),
            watches: RefCell::new(WatchManager::new()),
            to_core,
            touched: RefCell::new(HashSet::new()),
            per_ip: RefCell::new(HashMap::new()),
            next_token: Cell::new(1),
        })
    }

    async fn send_to_core(&self, message: ToCore) {
        if !self.to_core.send(message).await {
            // The core is gone: the process is shutting down.
            glommio::executor().yield_now().await;
        }
    }

    /// Waits until this shard's root holds `zxid`.
    async fn wait_for_root(&self, zxid: i64) {
        while self.last_zxid.get() < zxid {
            let listener = self.root_advanced.listen();
            if self.last_zxid.get() < zxid {
                listener.await;
            }
        }
    }
}

/// Runs a shard until the process ends: accepts connections, applies published batches, and
/// reports session liveness every tick.
pub(crate) async fn run(
    shard: Rc<Shard>,
    listener: TcpListener,
    from_core: link::Receiver<ToShard>,
    view_requests: async_channel::Receiver<ViewRequest>,
) {
    glommio::spawn_local(apply_batches(shard.clone(), from_core)).detach();
    glommio::spawn_local(serve_views(shard.clone(), view_requests)).detach();
    glommio::spawn_local(report_touches(shard.clone())).detach();
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let shard = shard.clone();
                glommio::spawn_local(async move { serve(shard, stream).await }).detach();
            }
            Err(error) => {
                crate::log_line!("zinc: shard {}: accept failed: {error}", shard.id);
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Another shard asks for this shard's view for a four-letter word.
pub(crate) struct ViewRequest {
    reset: bool,
    reply: async_channel::Sender<admin::ShardView>,
}

/// Requests for views are rare and small: a few may wait.
pub(crate) const VIEW_REQUESTS_QUEUED_MAX: usize = 16;

async fn serve_views(shard: Rc<Shard>, requests: async_channel::Receiver<ViewRequest>) {
    while let Ok(request) = requests.recv().await {
        let _ = request
            .reply
            .send(admin::shard_view(&shard, request.reset))
            .await;
    }
}

/// Every shard's view, this shard's first. A shard that has stopped is left out.
async fn gather_views(shard: &Shard, reset: bool) -> Vec<admin::ShardView> {
    let mut views = vec![admin::shard_view(shard, reset)];
    let (reply, replies) = async_channel::bounded(shard.shared.view_requests.len().max(1));
    let mut asked = 0;
    for (index, requests) in shard.shared.view_requests.iter().enumerate() {
        if index == usize::from(shard.id) {
            continue;
        }
        let request = ViewRequest {
            reset,
            reply: reply.clone(),
        };
        if requests.send(request).await.is_ok() {
            asked += 1;
        }
    }
    drop(reply);
    for _ in 0..asked {
        match replies.recv().await {
            Ok(view) => views.push(view),
            Err(_) => break,
        }
    }
    views
}

async fn report_touches(shard: Rc<Shard>) {
    let period = Duration::from_millis((shard.config.tick_time_ms as u64 / 2).max(1));
    loop {
        glommio::timer::sleep(period).await;
        let touched: Vec<SessionId> = shard.touched.borrow_mut().drain().collect();
        if !touched.is_empty() {
            shard.send_to_core(ToCore::Touch(touched)).await;
        }
    }
}

/// Admits or refuses a new connection by the per-address limit.
fn admit(shard: &Shard, peer: SocketAddr) -> bool {
    let limit = shard.config.max_client_connections_per_ip;
    let mut per_ip = shard.per_ip.borrow_mut();
    let count = per_ip.entry(peer.ip()).or_insert(0);
    if limit != 0 && *count >= limit {
        return false;
    }
    *count += 1;
    true
}

fn release(shard: &Shard, peer: SocketAddr) {
    let mut per_ip = shard.per_ip.borrow_mut();
    if let Some(count) = per_ip.get_mut(&peer.ip()) {
        *count -= 1;
        if *count == 0 {
            per_ip.remove(&peer.ip());
        }
    }
}

async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let peer = match stream.peer_addr() {
        Ok(peer) => peer,
        Err(error) => {
            crate::log_line!("zinc: connection without a peer address: {error}");
            return;
        }
    };
    if !admit(&shard, peer) {
        crate::log_line!("zinc: too many connections from {}: refused", peer.ip());
        return;
    }
    let _ = stream.set_nodelay(true);
    let token = shard.next_token.get();
    shard.next_token.set(token + 1);
    let conn = Conn::new(token, peer, shard.stats.clone());
    shard.connections.borrow_mut().insert(token, conn.clone());
    shard.stats.connection_opened();

    let (reader, writer) = futures_lite::io::split(stream);
    let writer_task = glommio::spawn_local(write_loop(conn.clone(), writer));
    if let Err(reason) = read_loop(&shard, &conn, reader).await {
        if shard.config.frame_bytes_max > 0 && !reason.is_empty() {
            crate::log_line!("zinc: closing connection from {peer}: {reason}");
        }
    }
    conn.close();
    writer_task.await;
    forget_connection(&shard, &conn);
    release(&shard, peer);
    shard.stats.connection_closed();
}

fn forget_connection(shard: &Shard, conn: &Rc<Conn>) {
    shard.connections.borrow_mut().remove(&conn.token);
    if let Some(session) = conn.session.get() {
        let mut sessions = shard.sessions.borrow_mut();
        if sessions
            .get(&session)
            .is_some_and(|owner| Rc::ptr_eq(owner, conn))
        {
            sessions.remove(&session);
            shard.watches.borrow_mut().remove_session(session);
        }
    }
}

async fn write_loop(conn: Rc<Conn>, mut writer: futures_lite::io::WriteHalf<TcpStream>) {
    loop {
        let pending = std::mem::take(&mut *conn.outbound.borrow_mut());
        if !pending.is_empty() {
            conn.changed.notify(usize::MAX);
            if writer.write_all(&pending).await.is_err() {
                conn.close();
                return;
            }
            continue;
        }
        if conn.closing.get() {
            let _ = writer.flush().await;
            let _ = writer.close().await;
            return;
        }
        let listener = conn.changed.listen();
        if conn.outbound.borrow().is_empty() && !conn.closing.get() {
            listener.await;
        }
    }
}

/// Reads frames until the client leaves or misbehaves; the error says why it was closed.
async fn read_loop(
    shard: &Rc<Shard>,
    conn: &Rc<Conn>,
    mut reader: futures_lite::io::ReadHalf<TcpStream>,
) -> Result<(), String> {
    let decoder = FrameDecoder::new(shard.config.frame_bytes_max);
    let mut buffer = BytesMut::new();
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let mut first = true;
    loop {
        wait_for_room(shard, conn).await;
        if conn.closing.get() {
            return Ok(());
        }
        let count = reader.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if count == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..count]);
        if count == chunk.len() && chunk.len() < READ_CHUNK_BYTES_MAX {
            chunk.resize(chunk.len() * 2, 0);
        }
        if first && buffer.len() >= 4 {
            first = false;
            if let Some(word) = zinc_protocol::fourlw::FourLetterWord::from_bytes(&buffer[..4]) {
                // Counted, and listed as no longer reading, as ZooKeeper lists it.
                shard.stats.packet_received();
                conn.packets_received.set(1);
                conn.closing.set(true);
                let views = match admin::needs_views(word) {
                    Some(reset) => gather_views(shard, reset).await,
                    None => Vec::new(),
                };
                let output = admin::four_letter_word(shard, word, &views);
                conn.send_raw(output.as_bytes());
                return Ok(());
            }
        }
        while let Some(frame) = decoder.decode(&mut buffer).map_err(|e| e.to_string())? {
            handle_frame(shard, conn, frame).await?;
            if conn.closing.get() {
                return Ok(());
            }
            // Within one read, small requests can ask for large replies: check room per frame.
            wait_for_room(shard, conn).await;
        }
    }
}

/// Throttle: stop reading while the client has too much queued or unread.
async fn wait_for_room(shard: &Shard, conn: &Conn) {
    loop {
        let full = conn.outbound.borrow().len() > shard.config.connection_outbound_bytes_max
            || conn.queued() >= shard.config.session_requests_in_flight_max;
        if !full || conn.closing.get() {
            return;
        }
        let listener = conn.changed.listen();
        let still_full = conn.outbound.borrow().len() > shard.config.connection_outbound_bytes_max
            || conn.queued() >= shard.config.session_requests_in_flight_max;
        if still_full && !conn.closing.get() {
            listener.await;
        }
    }
}

async fn handle_frame(shard: &Rc<Shard>, conn: &Rc<Conn>, frame: Bytes) -> Result<(), String> {
    shard.stats.packet_received();
    conn.packets_received.set(conn.packets_received.get() + 1);
    if conn.session.get().is_none() {
        return handle_connect(shard, conn, frame).await;
    }
    let mut reader = Reader::new(frame);
    let header = RequestHeader::decode(&mut reader).map_err(|e| e.to_string())?;
    conn.stats.request_received();
    let session = conn.session.get().unwrap_or_default();
    shard.touched.borrow_mut().insert(session);
    let Some(op) = OpCode::from_i32(header.op_type) else {
        // An unknown operation is answered, not fatal.
        send_error(shard, conn, header.xid, ErrorCode::Unimplemented);
        return Ok(());
    };
    conn.last_op.set(Some(op));
    let request = Request::decode(op, &mut reader).map_err(|e| format!("{op:?}: {e}"))?;
    if op == OpCode::Ping {
        let reply = ReplyHeader {
            xid: xid::PING,
            zxid: shard.last_zxid.get(),
            err: 0,
        };
        conn.send(&reply, None);
        return Ok(());
    }
    if op == OpCode::Auth {
        return handle_auth(shard, conn, &request);
    }
    let zxid_min = shard.shared.acknowledged_zxid.load(Ordering::Acquire);
    conn.queue.borrow_mut().push_back(Queued {
        header,
        request,
        zxid_min,
    });
    drain_queue(shard, conn).await;
    Ok(())
}

/// Executes the session's queued requests in order, as far as the ordering rule allows.
async fn drain_queue(shard: &Rc<Shard>, conn: &Rc<Conn>) {
    if conn.draining.replace(true) {
        return;
    }
    loop {
        let (header, request) = match next_turn(shard, conn) {
            Turn::Execute(header, request) => (header, request),
            Turn::Wait => {
                conn.draining.set(false);
                return;
            }
            Turn::Root(zxid) => {
                shard.wait_for_root(zxid).await;
                continue;
            }
            Turn::Refuse(header) => {
                send_error(shard, conn, header.xid, ErrorCode::ThrottledOp);
                continue;
            }
        };
        let session = conn.session.get().unwrap_or_default();
        if exec::goes_through_core(&request) {
            conn.writes_in_flight.set(conn.writes_in_flight.get() + 1);
            let auth = conn.auth.borrow().clone();
            let message = ToCore::Write(WriteRequest {
                shard: shard.id,
                session,
                xid: header.xid,
                request,
                auth,
            });
            shard.send_to_core(message).await;
            continue;
        }
        execute_local(shard, conn, session, header, request);
    }
}

/// The next request to execute, or what the head of the queue waits for.
fn next_turn(shard: &Shard, conn: &Conn) -> Turn {
    let mut queue = conn.queue.borrow_mut();
    let Some(head) = queue.front() else {
        return Turn::Wait;
    };
    if !exec::goes_through_core(&head.request) {
        if conn.writes_in_flight.get() > 0 {
            return Turn::Wait;
        }
        if head.zxid_min > shard.last_zxid.get() {
            return Turn::Root(head.zxid_min);
        }
    } else if shard.shared.log_blocked.load(Ordering::Acquire) {
        // Refused in order: after the session's writes already with the core are answered.
        if conn.writes_in_flight.get() > 0 {
            return Turn::Wait;
        }
        let header = head.header;
        queue.pop_front();
        return Turn::Refuse(header);
    }
    match queue.pop_front() {
        Some(Queued {
            header, request, ..
        }) => Turn::Execute(header, request),
        None => Turn::Wait,
    }
}

fn execute_local(
    shard: &Rc<Shard>,
    conn: &Rc<Conn>,
    session: SessionId,
    header: RequestHeader,
    request: Request,
) {
    let context = SessionContext {
        session,
        auth: &conn.auth.borrow(),
        extended_types: shard.config.extended_types_enabled,
    };
    let root = shard.root.borrow().clone();
    let outcome = {
        let mut watches = shard.watches.borrow_mut();
        exec::execute_local(
            &root,
            &context,
            &request,
            &mut watches,
            shard.last_zxid.get(),
        )
    };
    match outcome {
        LocalOutcome::Reply { err, response } => {
            let reply = ReplyHeader {
                xid: header.xid,
                zxid: shard.last_zxid.get(),
                err: err.as_i32(),
            };
            conn.send(&reply, response.as_ref().map(|r| r as &dyn Encode));
        }
        LocalOutcome::SetWatches { events } => {
            for event in events {
                send_event(conn, &event);
            }
            // The C client uses xid -8; the Java client an ordinary xid: echo what came.
            let reply = ReplyHeader {
                xid: header.xid,
                zxid: shard.last_zxid.get(),
                err: 0,
            };
            conn.send(&reply, None);
        }
    }
}

/// Answers request `xid` with an error and no body.
fn send_error(shard: &Shard, conn: &Conn, xid: i32, err: ErrorCode) {
    let reply = ReplyHeader {
        xid,
        zxid: shard.last_zxid.get(),
        err: err.as_i32(),
    };
    conn.send(&reply, None);
}

/// Sends a watch event; notifications carry zxid -1, as ZooKeeper sends them.
fn send_event(conn: &Conn, event: &WatcherEvent) {
    let header = ReplyHeader {
        xid: xid::NOTIFICATION,
        zxid: -1,
        err: 0,
    };
    conn.send(&header, Some(event));
}

fn handle_auth(shard: &Shard, conn: &Rc<Conn>, request: &Request) -> Result<(), String> {
    let Request::Auth(packet) = request else {
        return Err("auth request of the wrong shape".into());
    };
    let added = exec::authenticate(packet, shard.config.super_digest.as_deref());
    let err = match added {
        Some(ids) => {
            let mut auth: Vec<Id> = conn.auth.borrow().to_vec();
            for id in ids {
                if !auth.contains(&id) {
                    auth.push(id);
                }
            }
            *conn.auth.borrow_mut() = Arc::from(auth);
            ErrorCode::Ok
        }
        None => ErrorCode::AuthFailed,
    };
    let reply = ReplyHeader {
        xid: xid::AUTH,
        zxid: shard.last_zxid.get(),
        err: err.as_i32(),
    };
    conn.send(&reply, None);
    if err != ErrorCode::Ok {
        // As ZooKeeper does: a failed authentication ends the connection.
        conn.close();
    }
    Ok(())
}

async fn handle_connect(shard: &Rc<Shard>, conn: &Rc<Conn>, frame: Bytes) -> Result<(), String> {
    if !shard.shared.serving.load(Ordering::Acquire) {
        // As ZooKeeper does while its ensemble has no leader: the client tries another server.
        return Err("this server is not serving: its ensemble has no leader".into());
    }
    let request = ConnectRequest::from_bytes(&frame).map_err(|e| format!("connect: {e}"))?;
    if request.last_zxid_seen <= shard.shared.acknowledged_zxid.load(Ordering::Acquire) {
        // Another shard has shown the client that zxid: this one is a hop behind at most.
        shard.wait_for_root(request.last_zxid_seen).await;
    }
    if request.last_zxid_seen > shard.last_zxid.get() {
        return Err(format!(
            "client has seen zxid 0x{:x}, this server only 0x{:x}",
            request.last_zxid_seen,
            shard.last_zxid.get()
        ));
    }
    let read_only = request.read_only;
    conn.sends_read_only.set(read_only.is_some());
    if request.session_id == 0 {
        shard
            .connections
            .borrow_mut()
            .insert(conn.token, conn.clone());
        conn.timeout_ms.set(0);
        // Mark the connection as waiting: `session` stays None until the core answers.
        conn.last_op.set(Some(OpCode::CreateSession));
        let message = ToCore::CreateSession {
            shard: shard.id,
            token: conn.token,
            timeout_ms_requested: request.timeout_ms,
        };
        shard.send_to_core(message).await;
        wait_for_session(conn).await;
        return Ok(());
    }
    let session = SessionId(request.session_id);
    let valid = request.passwd.as_ref() == session_password(session)
        && shard.root.borrow().session_timeout_ms(session.0).is_some();
    if !valid {
        // Expired or unknown: ZooKeeper answers with a zero timeout and closes.
        let response = ConnectResponse::session_expired(&request);
        conn.send_raw(&connect_frame(&response));
        conn.close();
        return Ok(());
    }
    let timeout_ms = shard
        .root
        .borrow()
        .session_timeout_ms(session.0)
        .map_or(shard.config.session_timeout_ms_min, |timeout| {
            timeout.max(0) as u32
        });
    attach_session(shard, conn, session, timeout_ms);
    shard
        .send_to_core(ToCore::Reattach {
            shard: shard.id,
            session,
        })
        .await;
    let response = ConnectResponse {
        protocol_version: 0,
        timeout_ms: timeout_ms as i32,
        session_id: session.0,
        passwd: Bytes::copy_from_slice(&session_password(session)),
        read_only: read_only.map(|_| false),
    };
    conn.send_raw(&connect_frame(&response));
    Ok(())
}

async fn wait_for_session(conn: &Conn) {
    loop {
        if conn.session.get().is_some() || conn.closing.get() {
            return;
        }
        let listener = conn.changed.listen();
        if conn.session.get().is_none() && !conn.closing.get() {
            listener.await;
        }
    }
}

fn attach_session(shard: &Shard, conn: &Rc<Conn>, session: SessionId, timeout_ms: u32) {
    conn.session.set(Some(session));
    conn.timeout_ms.set(timeout_ms);
    let previous = shard.sessions.borrow_mut().insert(session, conn.clone());
    if let Some(previous) = previous {
        if !Rc::ptr_eq(&previous, conn) {
            previous.close();
        }
    }
    shard.touched.borrow_mut().insert(session);
}

fn connect_frame(response: &ConnectResponse) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_frame(&mut out, |frame| response.encode(frame));
    out.to_vec()
}

/// Applies what the core publishes: for each batch, fire watches, switch root, send replies.
async fn apply_batches(shard: Rc<Shard>, from_core: link::Receiver<ToShard>) {
    while let Some(message) = from_core.recv().await {
        if let Some(published) = &message.published {
            publish(&shard, published);
        }
        // Connections whose queue holds requests that waited for these replies (once each:
        // a batch holds many replies to one connection).
        let mut touched_conns: Vec<Rc<Conn>> = Vec::new();
        for reply in message.replies {
            if let Some(conn) = deliver(&shard, reply) {
                if !conn.queue.borrow().is_empty() {
                    touched_conns.push(conn);
                }
            }
        }
        touched_conns.sort_unstable_by_key(Rc::as_ptr);
        touched_conns.dedup_by(|a, b| Rc::ptr_eq(a, b));
        if let Some(published) = &message.published {
            end_sessions(&shard, &published.ended_sessions);
        }
        // Draining may wait on the channel to the core; the core may be waiting for this task
        // to take its next batch. Drain in separate tasks so the two never wait on each other.
        for conn in touched_conns {
            let shard = shard.clone();
            glommio::spawn_local(async move { drain_queue(&shard, &conn).await }).detach();
        }
    }
}

/// Closes the connections of sessions that ended, after their last replies were queued.
fn end_sessions(shard: &Shard, ended: &[SessionId]) {
    for session in ended {
        let conn = shard.sessions.borrow_mut().remove(session);
        shard.watches.borrow_mut().remove_session(*session);
        if let Some(conn) = conn {
            conn.close();
        }
    }
}

fn publish(shard: &Shard, published: &Published) {
    {
        let mut watches = shard.watches.borrow_mut();
        let sessions = shard.sessions.borrow();
        for trigger in &published.triggers {
            let event = trigger.event();
            for session in watches.trigger(trigger.event_type, &trigger.path) {
                if let Some(conn) = sessions.get(&session) {
                    send_event(conn, &event);
                }
            }
        }
    }
    *shard.root.borrow_mut() = published.root.clone();
    shard.last_zxid.set(published.last_zxid);
    // Before anything is answered from this root, so that other shards' reads see it too.
    shard
        .shared
        .acknowledged_zxid
        .fetch_max(published.last_zxid, Ordering::AcqRel);
    shard.root_advanced.notify(usize::MAX);
}

/// Sends one reply; returns the connection whose queue may now move.
fn deliver(shard: &Shard, reply: CoreReply) -> Option<Rc<Conn>> {
    match reply {
        CoreReply::Reply {
            session,
            xid,
            zxid,
            err,
            response,
        } => {
            let conn = shard.sessions.borrow().get(&session).cloned()?;
            conn.writes_in_flight
                .set(conn.writes_in_flight.get().saturating_sub(1));
            let header = ReplyHeader {
                xid,
                zxid,
                err: err.as_i32(),
            };
            conn.send(&header, response.as_ref().map(|r| r as &dyn Encode));
            Some(conn)
        }
        CoreReply::SessionCreated {
            token,
            session,
            timeout_ms,
            password,
        } => {
            let conn = shard.connections.borrow().get(&token).cloned()?;
            attach_session(shard, &conn, session, timeout_ms);
            let response = ConnectResponse {
                protocol_version: 0,
                timeout_ms: timeout_ms as i32,
                session_id: session.0,
                passwd: Bytes::copy_from_slice(&password),
                read_only: conn.sends_read_only.get().then_some(false),
            };
            conn.send_raw(&connect_frame(&response));
            None
        }
        CoreReply::SessionMoved { session } => {
            let conn = shard.sessions.borrow_mut().remove(&session);
            shard.watches.borrow_mut().remove_session(session);
            if let Some(conn) = conn {
                conn.close();
            }
            None
        }
        CoreReply::Refused { token } => {
            if let Some(conn) = shard.connections.borrow().get(&token) {
                conn.close();
            }
            None
        }
        CoreReply::CloseAll => {
            let conns: Vec<Rc<Conn>> = shard.connections.borrow().values().cloned().collect();
            for conn in conns {
                conn.close();
            }
            None
        }
    }
}
