#!/usr/bin/env python3
"""How long threads waited to run after being woken, split by the thread that held the CPU
meanwhile. Reads the text of a `perf script` of sched_wakeup and sched_switch events.

For every wakeup of a thread whose name starts with PREFIX, the time until it was switched
in, attributed to the thread it was switched in after. Used to find what delays the kernel
worker that completes Zinc's O_DSYNC log writes (`kworker/1:` on this machine, where the
disk's interrupts go): a thread that holds that CPU makes the log's commit wait.

  python3 scripts/bench/snapshot_stalls.py --znodes 1000000 --rate 10000 --seconds 30 &
  # once the load runs:
  perf record -k CLOCK_MONOTONIC -o /dev/shm/sched.data -a \\
      -e sched:sched_switch -e sched:sched_wakeup -- sleep 15
  perf script -i /dev/shm/sched.data -F comm,tid,cpu,time,event,trace > /dev/shm/sched.txt
  python3 scripts/bench/wake_delay.py /dev/shm/sched.txt kworker/1:

Prints, for each thread that was running when a woken one got the CPU (most frequent first),
the number of such wakeups and the wait's p50, p99, maximum and count over --slow-ms; with
--list THREAD, also each slow wait behind THREAD with its time.
"""

import argparse
import collections
import re

LINE = re.compile(r"^\s*.+?\s+\d+\s+\[\d+\]\s+(?P<ts>[\d.]+):\s+sched:(?P<event>sched_\w+):"
                  r"\s+(?P<rest>.*)$")
FIELD = re.compile(r"(\w+)=(\S+)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trace", help="output of perf script -F comm,tid,cpu,time,event,trace")
    parser.add_argument("prefix", help="names of the woken threads start with this")
    parser.add_argument("--slow-ms", type=float, default=1.0)
    parser.add_argument("--list", metavar="THREAD", default=None,
                        help="print each slow wait behind threads named THREAD")
    args = parser.parse_args()
    woken, waits, slow_list = {}, collections.defaultdict(list), []
    with open(args.trace) as lines:
        for line in lines:
            m = LINE.match(line)
            if not m:
                continue
            fields = dict(FIELD.findall(m["rest"]))
            ts = float(m["ts"])
            if m["event"] == "sched_wakeup":
                if fields.get("comm", "").startswith(args.prefix):
                    woken[fields["pid"]] = ts
            elif m["event"] == "sched_switch" and fields.get("next_pid") in woken:
                waited = ts - woken.pop(fields["next_pid"])
                before = fields.get("prev_comm", "?").split("/")[0]
                waits[before].append(waited)
                if before == args.list and waited * 1e3 > args.slow_ms:
                    slow_list.append((ts - waited, waited))
    if not waits:
        raise SystemExit(f"{args.trace}: no wakeup of a thread named {args.prefix}*")
    for before, times in sorted(waits.items(), key=lambda item: -len(item[1])):
        times.sort()
        n = len(times)
        slow = sum(t * 1e3 > args.slow_ms for t in times)
        print(f"{before:18} {n:7} wakeups  p50 {times[n // 2] * 1e6:7.0f} us  "
              f"p99 {times[min(n - 1, int(n * 0.99))] * 1e6:7.0f} us  "
              f"max {times[-1] * 1e3:6.2f} ms  over {args.slow_ms:g} ms: {slow}")
    for at, waited in slow_list:
        print(f"  {at:.3f} s  waited {waited * 1e3:.2f} ms behind {args.list}")


if __name__ == "__main__":
    main()
