#!/usr/bin/env python3
"""Restart time of Zinc binaries on one copy of the same data, alternating: for A/B comparisons
of start-up changes.

Each run copies --data (a Zinc data directory, e.g. one restart.py's load left, or one made with
`zinc-bench --workload create` and `--workload set` against a server, then SIGKILL) to a scratch
directory, reads every file once (so the page cache is warm for every binary alike), syncs (so
no binary's start waits for the copy's write-back), starts the binary on it, and times until a
plain client's getData succeeds (restart.py's measure). Prints, per binary, the time to the
first read, the snapshot load and the log replay as the server logs them, and the process's CPU
time (user + system) at the first read, with the median of each. Kills what it starts.

  python3 scripts/bench/restart_same_data.py --data /path/to/data \\
      --binary old=/tmp/old/zinc --binary new=target/release/zinc --rounds 2 --runs 2
"""

import argparse
import os
import re
import shutil
import statistics
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
        with open(f"/proc/{process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    finally:
        process.kill()
        process.wait()
    with open(log_path) as f:
        lines = [line.strip() for line in f if "loaded" in line or "replayed" in line]
    text = "\n".join(lines)
    load = re.search(r"znodes\) in (\d+) ms", text)
    replay = re.search(r"applied (\d+) ms", text)
    measured = {
        "first read s": seconds,
        "snapshot load ms": int(load.group(1)) if load else 0,
        "replay ms": int(replay.group(1)) if replay else 0,
        "CPU s": cpu_s,
    }
    return measured, lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--binary", action="append", required=True, help="NAME=PATH")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runs", type=int, default=2, help="runs per binary per round")
    args = parser.parse_args()
    binaries = [entry.split("=", 1) for entry in args.binary]
    runs = {name: [] for name, _ in binaries}
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(args.rounds):
            for name, path in binaries:
                for _ in range(args.runs):
                    measured, lines = run_once(path, args.data, scratch)
                    runs[name].append(measured)
                    for line in lines:
                        print(f"{name}: {line}", file=sys.stderr)
    columns = ["first read s", "snapshot load ms", "replay ms", "CPU s"]
    print("| binary | " + " | ".join(f"{c}: median (runs)" for c in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, measured in runs.items():
        cells = []
        for column in columns:
            values = [m[column] for m in measured]
            text = ", ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in values)
            median = statistics.median(values)
            cells.append(f"{median:.2f} ({text})" if isinstance(values[0], float)
                         else f"{median:.0f} ({text})")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
