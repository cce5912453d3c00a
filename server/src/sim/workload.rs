//! The simulated clients' writes: sessions, persistent and ephemeral nodes, data changes,
//! deletes, session closes and multis, shaped as the txns prep would produce.

use bytes::Bytes;
use zinc_protocol::txn::{
    CloseSessionTxn, CreateSessionTxn, CreateTxn, DeleteTxn, SetDataTxn, Txn, TxnEntry, TxnHeader,
};
use zinc_protocol::Acl;
use zinc_storage::tree::Tree;

use crate::zab::rng::Rng;

/// Sessions opened so far are tracked to own ephemerals and to be closed.
const SESSIONS_MAX: usize = 8;

#[derive(Debug, Default)]
pub struct Workload {
    nodes_created: u64,
    sessions_created: i64,
    sessions: Vec<i64>,
    writes: i32,
}

fn create(path: String, data: Bytes, ephemeral: bool) -> Txn {
    Txn::Create(CreateTxn {
        path,
        data: Some(data),
        acl: Acl::open_unsafe(),
        ephemeral,
        parent_cversion: 0,
    })
}

impl Workload {
    fn random_node(&self, rng: &mut Rng) -> String {
        format!("/n{}", rng.below(self.nodes_created.max(1)))
    }

    fn random_session(&self, rng: &mut Rng) -> Option<i64> {
        match self.sessions.len() {
            0 => None,
            count => Some(self.sessions[rng.below(count as u64) as usize]),
        }
    }

    fn new_node(&mut self) -> String {
        self.nodes_created += 1;
        format!("/n{}", self.nodes_created - 1)
    }

    /// The next write; `tree` is the leader's applied state (for a close's ephemeral list).
    pub fn next(&mut self, rng: &mut Rng, tree: &Tree, time_ms: u64) -> TxnEntry {
        self.writes += 1;
        let data = Bytes::from(format!("w{}", self.writes));
        let mut client_id = 0;
        let roll = rng.below(100);
        let session = self.random_session(rng);
        let txn = match (roll, session) {
            (0..=29, _) => create(self.new_node(), data, false),
            (30..=49, _) => Txn::SetData(SetDataTxn {
                path: self.random_node(rng),
                data: Some(data),
                version: rng.below(5) as i32,
            }),
            (50..=59, _) => Txn::Delete(DeleteTxn {
                path: self.random_node(rng),
            }),
            (60..=74, Some(owner)) => {
                client_id = owner;
                create(format!("/e{}", self.writes), data, true)
            }
            (75..=84, Some(owner)) if self.sessions.len() > 1 => {
                client_id = owner;
                self.sessions.retain(|id| *id != owner);
                let paths_to_delete = tree.ephemerals(owner, "/");
                Txn::CloseSession(CloseSessionTxn { paths_to_delete })
            }
            (85..=94, _) => {
                let first = self.new_node();
                let second = self.new_node();
                Txn::Multi(vec![
                    create(first, data.clone(), false),
                    create(second, data, false),
                ])
            }
            _ => {
                self.sessions_created += 1;
                client_id = 0x100 + self.sessions_created;
                if self.sessions.len() < SESSIONS_MAX {
                    self.sessions.push(client_id);
                }
                Txn::CreateSession(CreateSessionTxn { time_out: 30_000 })
            }
        };
        TxnEntry {
            header: TxnHeader {
                client_id,
                cxid: self.writes,
                zxid: 0,
                time: time_ms as i64,
                op_type: txn.op().as_i32(),
            },
            txn,
            digest: None,
        }
    }
}
