#!/usr/bin/env python3
"""How long the log's durable writes take inside the kernel, and whether the slow ones follow
the snapshot writer's writes. Reads the text of a `perf script` of a trace taken while Zinc
serves a write load.

Zinc's log is written with O_DSYNC, so each commit ends in `ext4_sync_file` (the disk's cache
flush), run by the kernel worker that completes the write. This prints the distribution of
those calls' durations, overall and split by whether the snapshot writer was writing at the
time (from its first to its last write of each snapshot), the slow ones (over --slow-ms) with
their time, and, for the slow ones and for all others, the share that started within
--window-ms after a write of the snapshot writer thread (`zinc-snapshot`) was issued. If
snapshot writes made flushes slow, the slow ones would follow them far more often than the
others do.

  python3 scripts/bench/snapshot_stalls.py --znodes 1000000 --rate 10000 --seconds 40 &
  # once the load runs:
  perf record -k CLOCK_MONOTONIC -o /dev/shm/trace.data -a \\
      -e ext4:ext4_sync_file_enter -e ext4:ext4_sync_file_exit -e block:block_rq_issue \\
      -- sleep 30
  perf script -i /dev/shm/trace.data -F comm,tid,cpu,time,event,trace > /dev/shm/trace.txt
  python3 scripts/bench/flush_latency.py /dev/shm/trace.txt

Write the trace to memory (/dev/shm), not to the disk under test: its own writes would take
part in the flushes it measures.
"""

import argparse
import bisect
import re

# The writer paces itself to a chunk every 2 ms; a longer pause ends a snapshot's span.
SPAN_GAP_S = 0.2

LINE = re.compile(r"^\s*(?P<comm>.+?)\s+(?P<tid>\d+)\s+\[\d+\]\s+(?P<ts>[\d.]+):\s+"
                  r"(?P<event>[\w:]+):\s+(?P<rest>.*)$")


def read(path, snapshot_comm):
    """(sync calls as (start s, duration s, inode), snapshot write issue times)."""
    open_calls, calls, snapshot_writes = {}, [], []
    with open(path) as lines:
        for line in lines:
            m = LINE.match(line)
            if not m:
                continue
            event, ts = m["event"], float(m["ts"])
            if event == "ext4:ext4_sync_file_enter":
                inode = re.search(r"ino (\d+)", m["rest"])
                open_calls[m["tid"]] = (ts, inode[1] if inode else "?")
            elif event == "ext4:ext4_sync_file_exit" and m["tid"] in open_calls:
                start, inode = open_calls.pop(m["tid"])
                calls.append((start, ts - start, inode))
            elif (event == "block:block_rq_issue" and m["comm"] == snapshot_comm
                  and " W" in m["rest"]):
                snapshot_writes.append(ts)
    snapshot_writes.sort()
    return calls, snapshot_writes


def after_snapshot_write(snapshot_writes, at, window):
    i = bisect.bisect_right(snapshot_writes, at)
    return i > 0 and at - snapshot_writes[i - 1] <= window


def summary(calls):
    """The durations' percentiles, as text."""
    durations = sorted(d for _, d, _ in calls)
    n = len(durations)
    if not n:
        return "none"

    def ms(q):
        return durations[min(n - 1, int(n * q))] * 1e3

    return (f"{n} calls, p50 {ms(0.5):.3f} ms, p99 {ms(0.99):.3f} ms, "
            f"p99.9 {ms(0.999):.3f} ms, max {durations[-1] * 1e3:.1f} ms")


def snapshot_spans(writes):
    """(first, last) write time of each snapshot: runs of writes less than SPAN_GAP_S apart."""
    spans = []
    for at in writes:
        if spans and at - spans[-1][1] < SPAN_GAP_S:
            spans[-1][1] = at
        else:
            spans.append([at, at])
    return [(a, b) for a, b in spans]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trace", help="output of perf script -F comm,tid,cpu,time,event,trace")
    parser.add_argument("--slow-ms", type=float, default=5.0)
    parser.add_argument("--window-ms", type=float, default=5.0)
    parser.add_argument("--snapshot-comm", default="zinc-snapshot")
    args = parser.parse_args()
    calls, snapshot_writes = read(args.trace, args.snapshot_comm)
    if not calls:
        raise SystemExit(f"{args.trace}: no ext4_sync_file enter/exit pairs")
    print(f"all: {summary(calls)}; {len(snapshot_writes)} snapshot writes")
    spans = snapshot_spans(snapshot_writes)
    inside = [c for c in calls if any(a <= c[0] <= b for a, b in spans)]
    outside = [c for c in calls if not any(a <= c[0] <= b for a, b in spans)]
    print(f"while a snapshot was written ({len(spans)} spans of its writes): {summary(inside)}")
    print(f"otherwise: {summary(outside)}")
    slow = [c for c in calls if c[1] * 1e3 > args.slow_ms]
    rest = [c for c in calls if c[1] * 1e3 <= args.slow_ms]
    for start, duration, inode in sorted(slow):
        print(f"  {start:.3f} s  {duration * 1e3:7.1f} ms  inode {inode}")
    window = args.window_ms / 1e3

    def share(group):
        if not group:
            return "-"
        hits = sum(after_snapshot_write(snapshot_writes, start, window) for start, _, _ in group)
        return f"{hits / len(group):.2f}"

    print(f"started within {args.window_ms:g} ms after a snapshot write: "
          f"slow (> {args.slow_ms:g} ms, {len(slow)}) {share(slow)}, "
          f"others ({len(rest)}) {share(rest)}")


if __name__ == "__main__":
    main()
