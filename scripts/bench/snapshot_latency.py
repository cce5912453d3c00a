#!/usr/bin/env python3
"""Write latency while snapshots of a 1M-znode tree are written, against none being written.

For each setting, alternately --rounds times, in a fresh temporary data directory on a free
loopback port: start Zinc (target/release) with that snapCount and run `zinc-bench --workload
set --keys ZNODES` (its setup creates the ZNODES znodes of --data-bytes before the clock
starts), setting random ones of them at a fixed --rate (open loop: latency is measured
from each request's intended send time, so a stall is not hidden) for --seconds, and read its
HDR percentiles. While the set load runs, the data directory's snapshot files are watched, so
the output says how many snapshots were finished inside the measured window.

- "snapshots": snapCount=--snap-count (default 100000, Zinc's and ZooKeeper's default). With
  the randomized trigger in [snapCount/2, snapCount), a set load of 20,000/s starts a snapshot
  every 2.5-5 s, and a 1M-znode snapshot takes seconds at nice 10: one is being written most
  of the time.
- "none": snapCount=2000000000, so none is taken during the load or the window.

Prints a Markdown table. Kills what it starts.

  cargo build --release -p zinc-server -p zinc-bench
  python3 scripts/bench/snapshot_latency.py --znodes 1000000 --rate 20000 --seconds 30 --rounds 2
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from restart import free_port, wait_serving  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ZINC = os.environ.get("ZINC_BIN", os.path.join(REPO, "target", "release", "zinc"))
BENCH = os.path.join(REPO, "target", "release", "zinc-bench")
NO_SNAPSHOTS = 2_000_000_000


def bench(port, workload, extra):
    command = [BENCH, "--servers", f"127.0.0.1:{port}", "--workload", workload,
               "--sessions", "8", "--inflight", "64", "--value-bytes", str(ARGS.data_bytes),
               "--quiet", "--json"] + extra
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"zinc-bench {workload}: {result.stderr[-2000:]}")
    return json.loads(result.stdout)


class SnapshotWatch(threading.Thread):
    """Collects the names of snapshot files that appear in `directory` while it runs, with the
    time each was first seen (to count those finished inside the measured window)."""

    def __init__(self, directory):
        super().__init__(daemon=True)
        self.directory, self.seen, self.stop = directory, {}, threading.Event()

    def names(self):
        try:
            return {n for n in os.listdir(self.directory) if n.endswith(".rkyv")}
        except FileNotFoundError:
            return set()

    def run(self):
        while not self.stop.wait(0.05):
            for name in self.names():
                self.seen.setdefault(name, time.monotonic())


def measure(setting, snap_count, base):
    directory = tempfile.mkdtemp(prefix=f"snaplat-{setting}-", dir=base)
    config = os.path.join(directory, "zoo.cfg")
    port = free_port()
    data = os.path.join(directory, "data")
    if ARGS.snap_dir:
        data = tempfile.mkdtemp(prefix=f"snaplat-{setting}-", dir=ARGS.snap_dir)
    log_dir = os.path.join(directory, "log")
    with open(config, "w") as f:
        f.write(f"dataDir={data}\ndataLogDir={log_dir}\nclientPort={port}\n"
                "clientPortAddress=127.0.0.1\n"
                f"snapCount={snap_count}\n4lw.commands.whitelist=*\n")
        for line in ARGS.config:
            f.write(line + "\n")
    log = open(os.path.join(directory, "zinc.log"), "w")
    process = subprocess.Popen([ZINC, "--config", config], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_serving(process, port, "zinc")
        watch = SnapshotWatch(os.path.join(data, "snap"))
        watch.start()
        result = bench(port, "set", ["--keys", str(ARGS.znodes), "--rate", str(ARGS.rate),
                                     "--warmup", "2", "--duration", str(ARGS.seconds)])
        ended = time.monotonic()
        watch.stop.set()
        watch.join()
        # The measured window is the last `seconds` of the bench's run.
        window_start = ended - ARGS.seconds
        finished = sum(1 for seen in watch.seen.values() if window_start <= seen <= ended)
        return result, finished
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        if ARGS.snap_dir:
            shutil.rmtree(data, ignore_errors=True)


def percentile(result, name):
    return result.get("latency_us", {}).get(name)


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--znodes", type=int, default=1_000_000)
    parser.add_argument("--data-bytes", type=int, default=100)
    parser.add_argument("--rate", type=int, default=20_000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--snap-count", type=int, default=100_000)
    parser.add_argument("--dir", default=None, help="where the data directories go (a temp dir)")
    parser.add_argument("--snap-dir", default=None,
                        help="put dataDir (snapshots) under this directory, the log stays in "
                             "--dir (to tell disk contention from CPU contention)")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                        help="a line added to both runs' zoo.cfg (repeatable)")
    ARGS = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=ARGS.dir) as base:
        for round_ in range(ARGS.rounds):
            for setting, snap_count in (("snapshots", ARGS.snap_count), ("none", NO_SNAPSHOTS)):
                result, snapshots = measure(setting, snap_count, base)
                rows.append((round_ + 1, setting, snapshots, result))
                print(f"round {round_ + 1} {setting}: {snapshots} snapshots, "
                      f"{json.dumps(result.get('latency_us'))}",
                      file=sys.stderr)
    print("| round | snapshots | finished in window | ops/s | p50 us | p99 us | p99.9 us | max us | errors |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for round_, setting, snapshots, result in rows:
        cells = [percentile(result, p) for p in ("p50", "p99", "p999", "max")]
        errors = sum(result.get("errors", {}).values())
        print(f"| {round_} | {setting} | {snapshots} | {result.get('ops_per_s', 0):,.0f} | "
              + " | ".join(f"{c:,.0f}" if isinstance(c, (int, float)) else str(c) for c in cells)
              + f" | {errors} |")


if __name__ == "__main__":
    main()
