//! `zinc-bench`: runs one workload against ZooKeeper-compatible servers (the default command),
//! or `zinc-bench compare` to measure Apache ZooKeeper and Zinc side by side.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use zinc_bench::{chart, compare, run, LiveLines, RunOptions, Silent};

#[derive(Debug, Parser)]
#[command(
    name = "zinc-bench",
    version,
    about = "Load generator for ZooKeeper-compatible servers (Zinc, Apache ZooKeeper)",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunOptions,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start Apache ZooKeeper and Zinc, run the same workloads on both, print a Markdown table.
    Compare(compare::CompareOptions),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Compare(options)) => match compare::compare(&options) {
            Ok(markdown) => {
                println!("{markdown}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("zinc-bench compare: {error}");
                ExitCode::FAILURE
            }
        },
        None => run_once(&cli.run),
    }
}

fn run_once(options: &RunOptions) -> ExitCode {
    let outcome = if options.quiet {
        run(options, &mut Silent)
    } else {
        run(options, &mut LiveLines)
    };
    let report = match outcome {
        Ok(report) => report,
        Err(error) => {
            eprintln!("zinc-bench: {error}");
            return ExitCode::from(2);
        }
    };
    if options.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(error) => eprintln!("zinc-bench: cannot encode the report: {error}"),
        }
    } else {
        print!("{}", report.text());
    }
    if let Some(path) = &options.chart {
        if let Err(error) = std::fs::write(path, chart::svg(&report)) {
            eprintln!("zinc-bench: cannot write {}: {error}", path.display());
        }
    }
    if report.ops == 0 {
        eprintln!("zinc-bench: no operation succeeded");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
