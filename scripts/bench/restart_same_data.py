#!/usr/bin/env python3
"""Restart time of Zinc binaries on one copy of the same data, alternating: for A/B comparisons
of start-up changes.

Each run copies --data (a Zinc data directory, e.g. one restart.py's load left, or one made with
`zinc-bench --workload create` and `--workload set` against a server, then SIGKILL) to a scratch
directory, reads every file once (so the page cache is warm for every binary alike), syncs (so
no binary's start waits for the copy's write-back), starts the binary on it, and times until a
plain client's getData succeeds (restart.py's measure). Kills what it starts.

  python3 scripts/bench/restart_same_data.py --data /path/to/data \\
      --binary old=/tmp/old/zinc --binary new=target/release/zinc --rounds 2 --runs 2
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import restart  # noqa: E402


def run_once(binary, data, scratch):
    run_dir = os.path.join(scratch, "run")
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(data, run_dir)
    for root, _, names in os.walk(run_dir):
        for name in names:
            with open(os.path.join(root, name), "rb") as f:
                while f.read(1 << 20):
                    pass
    # The copy's dirty pages would otherwise be written back during the start, and the first
    # write's sync would wait for them.
    os.sync()
    port = restart.free_port()
    log_path = os.path.join(scratch, "server.log")
    with open(log_path, "w") as log:
        process = subprocess.Popen([binary, "--port", str(port), "--data-dir", run_dir],
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        seconds = restart.time_to_first_read(process, port)
    finally:
        process.kill()
        process.wait()
    with open(log_path) as f:
        lines = [line.strip() for line in f if "loaded" in line or "replayed" in line]
    return seconds, lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--binary", action="append", required=True, help="NAME=PATH")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runs", type=int, default=2, help="runs per binary per round")
    args = parser.parse_args()
    binaries = [entry.split("=", 1) for entry in args.binary]
    times = {name: [] for name, _ in binaries}
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(args.rounds):
            for name, path in binaries:
                for _ in range(args.runs):
                    seconds, lines = run_once(path, args.data, scratch)
                    times[name].append(seconds)
                    for line in lines:
                        print(f"{name}: {line}", file=sys.stderr)
    print("| binary | restart to first read, s (runs) |")
    print("|---|---|")
    for name, values in times.items():
        print(f"| {name} | {', '.join(f'{t:.2f}' for t in values)} |")


if __name__ == "__main__":
    main()
