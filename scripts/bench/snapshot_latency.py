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

Every request is logged (`zinc-bench --latency-log`: when it was due and its latency) and the
snapshot directory is polled every 10 ms for the writer's temporary file (`*.rkyv.tmp`, there
from the first byte written until the rename), so the "snapshots" runs also give the requests
due while a snapshot was being written ("during writes") and the others, each round with its
p99.9 of both. After the rounds it prints the percentiles of all rounds' requests pooled, for
each setting and for the requests during and outside writes (a 30 s run at 10,000/s has 300
requests in its top 0.1%, so one stall of the machine decides a single run's p99.9, while the
pooled figure is the tail of the whole sample); where in a snapshot's writing, by tenths, the
requests over 10 ms due during it fell; and the medians of the rounds' p99.9.

Prints Markdown tables. Kills what it starts.

  cargo build --release -p zinc-server -p zinc-bench
  python3 scripts/bench/snapshot_latency.py --znodes 1000000 --rate 20000 --seconds 30 --rounds 2
"""

import argparse
import json
import math
import os
import shutil
import signal
import statistics
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
# Requests slower than this, due while a snapshot was written, are placed within its writing.
SLOW_US = 10_000


def bench(port, workload, extra):
    command = [BENCH, "--servers", f"127.0.0.1:{port}", "--workload", workload,
               "--sessions", "8", "--inflight", "64", "--value-bytes", str(ARGS.data_bytes),
               "--quiet", "--json"] + extra
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"zinc-bench {workload}: {result.stderr[-2000:]}")
    return json.loads(result.stdout)


class SnapshotWatch(threading.Thread):
    """Polls `directory` every 10 ms: the snapshot files that appear, with the time each was
    first seen (to count those finished inside the measured window), and the spans in which a
    snapshot's temporary file existed (CLOCK_MONOTONIC ns, as zinc-bench's latency log)."""

    def __init__(self, directory):
        super().__init__(daemon=True)
        self.directory, self.seen, self.stop = directory, {}, threading.Event()
        self.spans, self.writing_since = [], None

    def names(self):
        try:
            return set(os.listdir(self.directory))
        except FileNotFoundError:
            return set()

    def run(self):
        while True:
            names, now = self.names(), time.monotonic_ns()
            for name in names:
                if name.endswith(".rkyv"):
                    self.seen.setdefault(name, now / 1e9)
            writing = any(name.endswith(".rkyv.tmp") for name in names)
            if writing and self.writing_since is None:
                self.writing_since = now
            elif not writing and self.writing_since is not None:
                self.spans.append((self.writing_since, now))
                self.writing_since = None
            if self.stop.wait(0.01):
                if self.writing_since is not None:
                    self.spans.append((self.writing_since, time.monotonic_ns()))
                return


def read_latency_log(path, window_only=True):
    """The (due ns, latency us) pairs of a zinc-bench latency log, in due order: those of the
    measured window, or all of them."""
    with open(path) as f:
        header = f.readline().split()
        start, end = int(header[-2]), int(header[-1])
        pairs = ((int(due), int(us)) for due, us in (line.split() for line in f))
        return [pair for pair in pairs if not window_only or start <= pair[0] < end]


def split_by_spans(samples, spans):
    """(latencies due inside a span, latencies due outside every span, and for each latency
    over SLOW_US due inside a span, the tenth of its span it was due in, 0-9); samples sorted
    by due."""
    inside, outside, slow_tenths, spans, index = [], [], [], sorted(spans), 0
    for due, latency in samples:
        while index < len(spans) and spans[index][1] <= due:
            index += 1
        if index < len(spans) and spans[index][0] <= due:
            inside.append(latency)
            if latency > SLOW_US:
                start, end = spans[index]
                slow_tenths.append(min(9, (due - start) * 10 // max(1, end - start)))
        else:
            outside.append(latency)
    return inside, outside, slow_tenths


def quantile(ordered, q):
    """The smallest value with at least q of the sorted `ordered` at or below it (as HDR
    histograms report it); None for no values."""
    if not ordered:
        return None
    rank = math.ceil(q * len(ordered) - 1e-9)
    return ordered[max(0, min(len(ordered), rank) - 1)]


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
        latency_log = os.path.join(directory, "latency.log")
        result = bench(port, "set", ["--keys", str(ARGS.znodes), "--rate", str(ARGS.rate),
                                     "--warmup", "2", "--duration", str(ARGS.seconds),
                                     "--latency-log", latency_log])
        ended = time.monotonic()
        watch.stop.set()
        watch.join()
        # The measured window is the last `seconds` of the bench's run.
        window_start = ended - ARGS.seconds
        finished = sum(1 for seen in watch.seen.values() if window_start <= seen <= ended)
        samples = read_latency_log(latency_log)
        during, outside, slow_tenths = split_by_spans(samples, watch.spans)
        return result, finished, sorted(during), sorted(outside), slow_tenths
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
                result, snapshots, during, outside, tenths = measure(setting, snap_count, base)
                rows.append((round_ + 1, setting, snapshots, result, during, outside, tenths))
                print(f"round {round_ + 1} {setting}: {snapshots} snapshots, "
                      f"{json.dumps(result.get('latency_us'))}, p99.9 during writes "
                      f"{quantile(during, 0.999)} us of {len(during)}",
                      file=sys.stderr)
    print("| round | snapshots | finished in window | ops/s | p50 us | p99 us | p99.9 us | max us "
          "| errors | requests due during writes | their p99.9 us | p99.9 us of the others |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for round_, setting, snapshots, result, during, outside, _ in rows:
        cells = [percentile(result, p) for p in ("p50", "p99", "p999", "max")]
        errors = sum(result.get("errors", {}).values())
        share = len(during) / max(1, len(during) + len(outside))
        print(f"| {round_} | {setting} | {snapshots} | {result.get('ops_per_s', 0):,.0f} | "
              + " | ".join(number(c) for c in cells)
              + f" | {errors} | {share:.0%} | {number(quantile(during, 0.999))} | "
              f"{number(quantile(outside, 0.999))} |")
    pooled = {
        "none: every request": [x for r in rows if r[1] == "none" for x in r[4] + r[5]],
        "snapshots: every request": [x for r in rows if r[1] == "snapshots" for x in r[4] + r[5]],
        "snapshots: due during writes": [x for r in rows if r[1] == "snapshots" for x in r[4]],
        "snapshots: due outside writes": [x for r in rows if r[1] == "snapshots" for x in r[5]],
    }
    for values in pooled.values():
        values.sort()
    print()
    print(f"All {ARGS.rounds} rounds pooled (latency log, us):")
    print()
    print("| requests | count | p50 | p99 | p99.9 | max | p99.9 / none's |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    base_p999 = quantile(pooled["none: every request"], 0.999)
    for name, values in pooled.items():
        cells = [quantile(values, q) for q in (0.5, 0.99, 0.999, 1.0)]
        ratio = f"{cells[2] / base_p999:.2f}" if cells[2] and base_p999 else "-"
        print(f"| {name} | {len(values):,} | " + " | ".join(number(c) for c in cells)
              + f" | {ratio} |")
    tenths = [tenth for row in rows for tenth in row[6]]
    print()
    print(f"Requests over {SLOW_US // 1000} ms due while a snapshot was written, by the tenth of "
          "its writing (from the temp file's creation to its rename) they were due in: "
          + " ".join(str(tenths.count(tenth)) for tenth in range(10)))
    medians = {setting: statistics.median(percentile(r[3], "p999") for r in rows
                                          if r[1] == setting)
               for setting in ("snapshots", "none")}
    print()
    print(f"Medians of the rounds' p99.9: snapshots {number(medians['snapshots'])} us, none "
          f"{number(medians['none'])} us, ratio {medians['snapshots'] / medians['none']:.2f}")


def number(value):
    return f"{value:,.0f}" if isinstance(value, (int, float)) else str(value)


if __name__ == "__main__":
    main()
