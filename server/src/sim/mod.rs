//! The deterministic simulator: a whole ensemble (3 or 5 servers, each the Zab core, a
//! `storage::tree::Tree` and a simulated log device) in one process, on simulated time, under
//! a simulated network and a fault schedule. One seed decides everything (ensemble shape,
//! delays, losses, partitions, crashes, torn writes, the client workload), so a failing seed
//! replays exactly: same trace hash, same outcome.
//!
//! After every step the invariants of `check` are verified; after the fault phase ends (all
//! partitions healed, every server restarted) a leader must be established and a new client
//! write must commit within a bounded number of ticks.

mod check;
mod disk;
mod net;
mod server;
mod workload;
mod world;

pub use world::{run, Outcome, SimOptions, Stats, Violation, LIVENESS_TICKS_MAX};

/// Runs `count` seeds from `first_seed`; stops at the first violation.
pub fn run_seeds(first_seed: u64, count: u64, steps: u64) -> Result<Vec<Outcome>, Box<Violation>> {
    let mut outcomes = Vec::new();
    for seed in first_seed..first_seed.saturating_add(count) {
        let options = SimOptions {
            seed,
            steps,
            trace: false,
        };
        outcomes.push(run(&options)?);
    }
    Ok(outcomes)
}
