#!/usr/bin/env python3
"""Alternates Zinc builds (or settings) under one zinc-bench workload: ops/s, p99 and server
CPU per op (user + system from /proc) of each round, and the medians.

Each round starts every variant in turn on a fresh data directory and a free loopback port,
waits until it answers `srvr` with a mode, runs `zinc-bench --workload W --duration S --sessions 4
--inflight 16` against it, and kills it. A variant is NAME=BINARY, optionally followed by
`:KEY=VALUE;KEY=VALUE` zoo.cfg lines (e.g. `two=target/release/zinc:zinc.shards=2`).
Alternating spreads the machine's changing load over every variant.

  cargo build --release -p zinc-server -p zinc-bench
  python3 scripts/bench/server_ab.py --rounds 8 old=/tmp/old/zinc new=target/release/zinc
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

BENCH = os.path.join(restart.REPO, "target", "release", "zinc-bench")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(binary, config, args, scratch):
    data = os.path.join(scratch, "data")
    shutil.rmtree(data, ignore_errors=True)
    os.makedirs(data)
    config_path = os.path.join(scratch, "zoo.cfg")
    with open(config_path, "w") as f:
        f.write(config + "\n")
    port = restart.free_port()
    process = subprocess.Popen(
        [binary, "--config", config_path, "--port", str(port), "--data-dir", data,
         "--four-letter-words", "*"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        restart.wait_serving(process, port, "the server")
        before = cpu_seconds(process.pid)
        out = subprocess.run(
            [BENCH, "--servers", f"127.0.0.1:{port}", "--workload", args.workload,
             "--duration", str(args.seconds), "--sessions", "4", "--inflight", "16"],
            capture_output=True, text=True, check=True).stdout
        after = cpu_seconds(process.pid)
    finally:
        process.kill()
        process.wait()
    ops = int(re.search(r"^ops\s+([\d,]+)", out, re.M).group(1).replace(",", ""))
    rate = float(re.search(r"^ops/s\s+([\d,]+)", out, re.M).group(1).replace(",", ""))
    p99 = re.search(r"p99 ([\d.]+ \w+)", out).group(1)
    return rate, (after - before) / ops * 1e6, p99


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="+", help="NAME=BINARY[:KEY=VALUE;...]")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workload", default="set")
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    variants = []
    for spec in args.variants:
        name, rest = spec.split("=", 1)
        binary, _, config = rest.partition(":")
        variants.append((name, binary, config.replace(";", "\n")))
    results = {name: [] for name, _, _ in variants}
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(args.rounds):
            for name, binary, config in variants:
                results[name].append(run(binary, config, args, scratch))
    print("| variant | ops/s median | CPU us/op median | rounds: ops/s, CPU us/op, p99 |")
    print("|---|---:|---:|---|")
    for name, rounds in results.items():
        rates = statistics.median(r for r, _, _ in rounds)
        cpu = statistics.median(c for _, c, _ in rounds)
        each = "; ".join(f"{r:,.0f}, {c:.1f}, {p}" for r, c, p in rounds)
        print(f"| {name} | {rates:,.0f} | {cpu:.1f} | {each} |")


if __name__ == "__main__":
    main()
