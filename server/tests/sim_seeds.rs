//! The deterministic simulator over a fixed set of seeds (part of `cargo test`), plus a soak
//! mode. A failure names the seed; `zinc-sim --seed N` replays it exactly.
//!
//! `ZINC_SIM_SEEDS`, `ZINC_SIM_FIRST_SEED` and `ZINC_SIM_STEPS` override the CI set;
//! `cargo test -p zinc-server --test sim_seeds -- --ignored` runs the long soak.

use zinc_server::sim::{run, SimOptions};

/// Sized to finish in about two minutes in a debug build, split over two threads.
const CI_SEEDS: u64 = 3_000;
const CI_STEPS: u64 = 3_000;
const SOAK_SEEDS: u64 = 20_000;
const SOAK_STEPS: u64 = 6_000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Runs `count` seeds on two threads; panics with the first violating seed.
fn run_seeds(first_seed: u64, count: u64, steps: u64) {
    let threads = 2;
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                scope.spawn(move || {
                    (first_seed + thread..first_seed + count)
                        .step_by(threads as usize)
                        .find_map(|seed| {
                            let options = SimOptions {
                                seed,
                                steps,
                                trace: false,
                            };
                            run(&options).err().map(|violation| violation.to_string())
                        })
                })
            })
            .collect();
        workers
            .into_iter()
            .filter_map(|worker| worker.join().expect("simulator thread panicked"))
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn simulator_finds_no_violation_over_the_ci_seeds() {
    let first_seed = env_or("ZINC_SIM_FIRST_SEED", 0);
    let count = env_or("ZINC_SIM_SEEDS", CI_SEEDS);
    let steps = env_or("ZINC_SIM_STEPS", CI_STEPS);
    run_seeds(first_seed, count, steps);
}

/// Seeds that once exposed a bug or caught a deliberate breakage (docs/ZAB.md), replayed with
/// the step counts that exposed them: seed 106580 lost a committed txn when a learner took the
/// new epoch before its diff was durable; seed 1039961 hung at initLimit through a simulator
/// bug (reconnects); seed 6502 catches the NEWLEADER-ACK-before-durable breakage, which the CI
/// seed set does not reach.
const KNOWN_SEEDS: &[(u64, u64)] = &[(106_580, 6_000), (1_039_961, 6_000), (6_502, 3_000)];

#[test]
fn known_seeds_pass() {
    for &(seed, steps) in KNOWN_SEEDS {
        let options = SimOptions {
            seed,
            steps,
            trace: false,
        };
        if let Err(violation) = run(&options) {
            panic!("{violation}");
        }
    }
}

#[test]
fn a_seed_replays_exactly() {
    let options = SimOptions {
        seed: 4242,
        steps: 2_000,
        trace: false,
    };
    let first = run(&options).expect("seed 4242 passes");
    let second = run(&options).expect("seed 4242 passes");
    assert_eq!(first, second);
    let other = run(&SimOptions {
        seed: 4243,
        ..options
    })
    .expect("seed 4243 passes");
    assert_ne!(first.trace_hash, other.trace_hash);
    // The run did something worth checking.
    assert!(first.stats.committed_txns > 0 && first.stats.leaders_established > 0);
}

#[test]
#[ignore = "soak: run explicitly with --ignored"]
fn simulator_soak() {
    let first_seed = env_or("ZINC_SIM_FIRST_SEED", 1_000_000);
    let count = env_or("ZINC_SIM_SEEDS", SOAK_SEEDS);
    let steps = env_or("ZINC_SIM_STEPS", SOAK_STEPS);
    run_seeds(first_seed, count, steps);
}
