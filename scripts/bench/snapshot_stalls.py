#!/usr/bin/env python3
"""When write latency jumps while snapshots are written: a timeline of the load generator's
per-second p99 beside the data directory's file events (snapshot started, finished, deleted;
log segments created, retired).

Starts Zinc (target/release, or ZINC_BIN) with its defaults in a fresh temporary directory on a
free loopback port, runs `zinc-bench --workload set --keys ZNODES --rate RATE` (its setup
creates the znodes first, which already takes snapshots) and polls the data directory every
10 ms meanwhile. Prints one line per event, seconds since the start, and one per stall: a run
of requests slower than --slow-ms whose due times lie within 10 ms of each other (from
zinc-bench's latency log), at the due time of its first request. Kills what it starts.
`--config KEY=VALUE` adds a zoo.cfg line (`snapCount=2000000000` for a run without snapshots).
The first line printed is CLOCK_MONOTONIC at time 0, to line the timeline up with a trace taken
meanwhile by `perf record -k CLOCK_MONOTONIC` (see flush_latency.py).

  cargo build --release -p zinc-server -p zinc-bench
  python3 scripts/bench/snapshot_stalls.py --znodes 1000000 --rate 10000 --seconds 30
"""

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from restart import free_port, wait_serving  # noqa: E402
from snapshot_latency import read_latency_log  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ZINC = os.environ.get("ZINC_BIN", os.path.join(REPO, "target", "release", "zinc"))
BENCH = os.path.join(REPO, "target", "release", "zinc-bench")


def watch(data_dir, start, events, stop):
    """Appends (seconds, "+name" or "-name") for every file that appears or goes."""
    seen = set()
    while not stop.is_set():
        names = set()
        for sub in ("snap", "wal"):
            try:
                names.update(os.listdir(os.path.join(data_dir, sub)))
            except OSError:
                pass
        now = time.monotonic() - start
        events.extend((now, "+" + name) for name in sorted(names - seen))
        events.extend((now, "-" + name) for name in sorted(seen - names))
        seen = names
        time.sleep(0.01)


def stalls(latency_log, start, slow_us):
    """(seconds, description) for each run of slow requests in a zinc-bench latency log."""
    found, current = [], None
    for due_ns, latency_us in read_latency_log(latency_log, window_only=False):
        if latency_us <= slow_us:
            continue
        due = due_ns / 1e9 - start
        if current and due - current[1] <= 0.010:
            current[1], current[2] = due, current[2] + 1
            current[3] = max(current[3], latency_us)
        else:
            current = [due, due, 1, latency_us]
            found.append(current)
    return [(first, f"stall: {count} requests due over {(last - first) * 1000:.0f} ms, "
                    f"worst {worst / 1000:.1f} ms")
            for first, last, count, worst in found]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--znodes", type=int, default=1_000_000)
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--slow-ms", type=float, default=5.0,
                        help="requests slower than this make up the stalls listed")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra zoo.cfg line (repeatable), e.g. snapCount=2000000000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="snapshot-stalls-") as directory:
        port = free_port()
        config = os.path.join(directory, "zoo.cfg")
        data_dir = os.path.join(directory, "data")
        with open(config, "w") as f:
            f.write(f"tickTime=2000\ndataDir={data_dir}\nclientPort={port}\n"
                    "clientPortAddress=127.0.0.1\n4lw.commands.whitelist=*\n")
            f.writelines(line + "\n" for line in args.config)
        with open(os.path.join(directory, "server.log"), "w") as log:
            server = subprocess.Popen([ZINC, "--config", config], stdout=log,
                                      stderr=subprocess.STDOUT)
        latency_log = os.path.join(directory, "latency.log")
        try:
            wait_serving(server, port, "zinc")
            start = time.monotonic()
            print(f"# time.monotonic() at 0: {start:.3f}", flush=True)
            events, stop = [], threading.Event()
            watcher = threading.Thread(target=watch, args=(data_dir, start, events, stop))
            watcher.start()
            bench = subprocess.Popen(
                [BENCH, "--servers", f"127.0.0.1:{port}", "--workload", "set",
                 "--sessions", "8", "--inflight", "64", "--value-bytes", "100",
                 "--keys", str(args.znodes), "--rate", str(args.rate), "--warmup", "2",
                 "--duration", str(args.seconds), "--latency-log", latency_log],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            other = []
            for line in bench.stdout:
                if "ops/s" in line and "p99" in line:
                    events.append((time.monotonic() - start, line.strip()))
                else:
                    other.append(line)
            bench.wait()
            stop.set()
            watcher.join()
            if bench.returncode != 0:
                sys.exit(f"zinc-bench exited with status {bench.returncode}:\n"
                         + "".join(other[-20:]))
            events.extend(stalls(latency_log, start, args.slow_ms * 1000))
        finally:
            server.kill()
            server.wait()
    for seconds, what in sorted(events, key=lambda event: event[0]):
        print(f"{seconds:7.2f} {what}")


if __name__ == "__main__":
    main()
