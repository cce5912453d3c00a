//! Before the clock starts: a blocking, pipelined client that checks each server answers and
//! creates the tree a workload needs (parents, the key space, the delete pool, the watched
//! node). Existing nodes are fine; any other error stops the run with a clear message.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use zinc_protocol::records::{CreateRequest, SyncRequest};
use zinc_protocol::{Acl, ErrorCode, Request};

use crate::codec::{Codec, CodecError, Event, Purpose};
use crate::stats::error_name;
use crate::workload::{Tree, Workload};
use crate::BenchError;

/// Requests the setup client keeps outstanding.
const SETUP_WINDOW: usize = 512;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Resolves `HOST:PORT,HOST:PORT,...`.
pub fn parse_servers(list: &str) -> Result<Vec<SocketAddr>, BenchError> {
    let mut servers = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let with_port = if entry.contains(':') {
            entry.to_owned()
        } else {
            format!("{entry}:2181")
        };
        let address = with_port
            .to_socket_addrs()
            .map_err(|source| BenchError::Resolve {
                server: entry.to_owned(),
                reason: source.to_string(),
            })?
            .next()
            .ok_or_else(|| BenchError::Resolve {
                server: entry.to_owned(),
                reason: "no address".to_owned(),
            })?;
        servers.push(address);
    }
    if servers.is_empty() {
        return Err(BenchError::Resolve {
            server: list.to_owned(),
            reason: "no servers given".to_owned(),
        });
    }
    Ok(servers)
}

/// A blocking session used only before and after the measured run.
pub struct SetupClient {
    server: SocketAddr,
    stream: TcpStream,
    codec: Codec,
    input: BytesMut,
}

impl SetupClient {
    pub fn connect(server: SocketAddr) -> Result<SetupClient, BenchError> {
        let connect = |source| BenchError::Connect { server, source };
        let stream = TcpStream::connect_timeout(&server, CONNECT_TIMEOUT).map_err(connect)?;
        stream.set_nodelay(true).map_err(connect)?;
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(connect)?;
        let mut client = SetupClient {
            server,
            stream,
            codec: Codec::new(),
            input: BytesMut::new(),
        };
        let mut out = BytesMut::new();
        client.codec.connect(30_000, &mut out);
        client.send(&out)?;
        match client.next_event()? {
            Event::Connected { .. } => Ok(client),
            other => Err(BenchError::Protocol {
                server,
                error: format!("unexpected first frame {other:?}"),
            }),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), BenchError> {
        let server = self.server;
        self.stream
            .write_all(bytes)
            .map_err(|source| BenchError::Connect { server, source })
    }

    fn next_event(&mut self) -> Result<Event, BenchError> {
        let server = self.server;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.codec.receive(&mut self.input) {
                Ok(Some(event)) => return Ok(event),
                Ok(None) => {}
                Err(CodecError::SessionRefused) => {
                    return Err(BenchError::Protocol {
                        server,
                        error: "the server refused the session".to_owned(),
                    })
                }
                Err(error) => {
                    return Err(BenchError::Protocol {
                        server,
                        error: error.to_string(),
                    })
                }
            }
            let count = self
                .stream
                .read(&mut chunk)
                .map_err(|source| BenchError::Connect { server, source })?;
            if count == 0 {
                return Err(BenchError::Closed { server });
            }
            self.input.extend_from_slice(&chunk[..count]);
        }
    }

    /// Sends every request, `SETUP_WINDOW` at a time; returns the error code of each failure
    /// that is not in `tolerated`.
    pub fn run_all(
        &mut self,
        requests: impl IntoIterator<Item = Request>,
        tolerated: &[ErrorCode],
    ) -> Result<Vec<i32>, BenchError> {
        let mut requests = requests.into_iter().peekable();
        let mut failures = Vec::new();
        let mut out = BytesMut::new();
        while requests.peek().is_some() || self.codec.inflight() > 0 {
            while self.codec.inflight() < SETUP_WINDOW {
                let Some(request) = requests.next() else {
                    break;
                };
                self.codec.send(request, Purpose::Measured, 0, &mut out);
            }
            if !out.is_empty() {
                let bytes = out.split();
                self.send(&bytes)?;
            }
            if let Event::Reply { err, .. } = self.next_event()? {
                let tolerated = tolerated.iter().any(|code| code.as_i32() == err);
                if err != 0 && !tolerated {
                    failures.push(err);
                }
            }
        }
        Ok(failures)
    }

    /// Closes the session politely.
    pub fn close(mut self) {
        let mut out = BytesMut::new();
        self.codec
            .send(Request::CloseSession, Purpose::Step, 0, &mut out);
        let _ = self.send(&out);
        let _ = self.next_event();
    }
}

fn create(path: String, value: &Bytes) -> Request {
    Request::Create(CreateRequest {
        path,
        data: Some(value.clone()),
        acl: Acl::open_unsafe(),
        flags: 0,
    })
}

/// Every create the workload needs before it starts, parents first.
pub fn tree_creates(tree: &Tree, workload: Workload, value: &Bytes) -> Vec<Vec<Request>> {
    let empty = Bytes::new();
    let mut stages = vec![tree
        .parents()
        .into_iter()
        .map(|path| create(path, &empty))
        .collect::<Vec<_>>()];
    if workload.uses_keys() {
        stages.push(
            (0..tree.directories())
                .map(|d| create(tree.directory_path(d), &empty))
                .collect(),
        );
        stages.push(
            (0..tree.keys)
                .map(|k| create(tree.key_path(k), value))
                .collect(),
        );
    }
    if workload == Workload::Delete {
        stages.push(
            (0..tree.keys)
                .map(|k| create(tree.delete_path(k), value))
                .collect(),
        );
    }
    stages
}

/// Checks that every server answers, creates the tree through the first one, then has every
/// other server `sync` with the leader, so that an ensemble's followers have the tree before
/// the first read (ZooKeeper requires a sync for a read on one server of a write made through
/// another).
pub fn prepare(
    servers: &[SocketAddr],
    tree: &Tree,
    workload: Workload,
    value: &Bytes,
) -> Result<(), BenchError> {
    for &server in &servers[1..] {
        SetupClient::connect(server)?.close();
    }
    let mut client = SetupClient::connect(servers[0])?;
    // Stages run one after another so that parents exist before their children.
    for stage in tree_creates(tree, workload, value) {
        let failures = client.run_all(stage, &[ErrorCode::NodeExists])?;
        if let Some(&err) = failures.first() {
            return Err(BenchError::Setup {
                server: servers[0],
                what: format!("creating the tree under {}", tree.root),
                error: error_name(err),
                count: failures.len(),
            });
        }
    }
    client.close();
    for &server in &servers[1..] {
        sync(server, &tree.root)?;
    }
    Ok(())
}

/// A `sync` of `path` on `server`, waited for.
fn sync(server: SocketAddr, path: &str) -> Result<(), BenchError> {
    let mut client = SetupClient::connect(server)?;
    let request = Request::Sync(SyncRequest {
        path: path.to_owned(),
    });
    if let Some(&err) = client.run_all([request], &[])?.first() {
        return Err(BenchError::Setup {
            server,
            what: format!("sync of {path}"),
            error: error_name(err),
            count: 1,
        });
    }
    client.close();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_parse_with_default_port() {
        let servers = parse_servers("127.0.0.1:2181, 127.0.0.1").expect("valid");
        assert_eq!(servers.len(), 2);
        assert!(servers.iter().all(|s| s.port() == 2181));
        assert!(matches!(
            parse_servers(" , "),
            Err(BenchError::Resolve { .. })
        ));
        assert!(parse_servers("127.0.0.1:notaport").is_err());
    }

    #[test]
    fn tree_stages_put_parents_first() {
        let tree = Tree::new("/zb", 5, 2);
        let stages = tree_creates(&tree, Workload::Get, &Bytes::from_static(b"v"));
        let paths: Vec<Vec<&str>> = stages
            .iter()
            .map(|stage| stage.iter().filter_map(Request::path).collect())
            .collect();
        assert_eq!(paths[0][0], "/zb");
        assert_eq!(
            paths[1],
            vec!["/zb/keys/d0000", "/zb/keys/d0001", "/zb/keys/d0002"]
        );
        assert_eq!(paths[2].len(), 5);
        let delete = tree_creates(&tree, Workload::Delete, &Bytes::new());
        assert_eq!(delete.len(), 2);
        assert_eq!(delete[1].len(), 5);
    }

    #[test]
    fn a_closed_port_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let server = listener.local_addr().expect("address");
        drop(listener);
        let error = SetupClient::connect(server).err().expect("nothing listens");
        assert!(matches!(error, BenchError::Connect { .. }), "{error}");
        assert!(error.to_string().contains(&server.to_string()), "{error}");
    }
}
