//! `zinc-sim`: runs the deterministic Zab simulator. `--seed N` plays (and with `--trace`
//! prints) one run exactly; `--seeds COUNT --first-seed S` runs seeds S, S+1, ... and exits
//! non-zero at the first violation, printing its seed.

use clap::Parser;
use zinc_server::sim::{run, Outcome, SimOptions};

#[derive(Parser, Debug)]
#[command(
    name = "zinc-sim",
    about = "Deterministic simulation of a Zinc ensemble"
)]
struct Args {
    /// Play exactly this seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// How many seeds to run, starting at --first-seed.
    #[arg(long)]
    seeds: Option<u64>,
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Events per run (at least); faults stop after two thirds of them.
    #[arg(long, default_value_t = 3_000)]
    steps: u64,
    /// Print every event of a single-seed run.
    #[arg(long)]
    trace: bool,
}

fn describe(outcome: &Outcome) -> String {
    let s = &outcome.stats;
    format!(
        "seed={} servers={}+{} steps={} time={}ms trace={:016x} | crashes={} torn={} \
         partitions={} links_broken={} corrupted={} notif_lost={} notif_dup={} | elections={} \
         leaders={} snaps={} truncs={} committed={} acked={} syncs={} liveness={}ms",
        outcome.seed,
        outcome.voters,
        outcome.observers,
        outcome.steps,
        outcome.time_ms,
        outcome.trace_hash,
        s.crashes,
        s.torn_writes,
        s.partitions,
        s.links_broken,
        s.frames_corrupted,
        s.notifications_lost,
        s.notifications_duplicated,
        s.elections,
        s.leaders_established,
        s.snapshots_sent,
        s.truncations,
        s.committed_txns,
        s.acked_writes,
        s.syncs_completed,
        s.liveness_ms,
    )
}

fn main() {
    let args = Args::parse();
    let (first, count) = match (args.seed, args.seeds) {
        (Some(seed), _) => (seed, 1),
        (None, Some(count)) => (args.first_seed, count),
        (None, None) => (args.first_seed, 1),
    };
    let mut totals = zinc_server::sim::Stats::default();
    for seed in first..first.saturating_add(count) {
        let options = SimOptions {
            seed,
            steps: args.steps,
            trace: args.trace && count == 1,
        };
        match run(&options) {
            Ok(outcome) => {
                if count == 1 {
                    println!("{}", describe(&outcome));
                }
                totals.add(&outcome.stats);
            }
            Err(violation) => {
                eprintln!("{violation}");
                std::process::exit(1);
            }
        }
    }
    if count > 1 {
        println!(
            "{count} seeds from {first}, {} steps each: no violations | {totals:?}",
            args.steps
        );
    }
}
