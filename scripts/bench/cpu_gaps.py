#!/usr/bin/env python3
"""Prints the gaps in a busy loop's own clock: times when this process did not run although it
never sleeps. On a VM, gaps that recur at a fixed period while the guest is busy are the host
stopping the VM (CPU bandwidth control), not the guest's scheduler.

  taskset -c 1 python3 scripts/bench/cpu_gaps.py --seconds 5 --min-ms 1

With `--sleep-ms` the loop sleeps that long each time round instead of spinning: a probe that
costs the machine nothing, and that, run at a real-time priority, is late only when the whole
VM was stopped (or interrupts were off), not because the guest's scheduler ran something else:

  chrt -f 50 python3 scripts/bench/cpu_gaps.py --seconds 60 --sleep-ms 1 --min-ms 4

(a gap then includes the sleep itself). Prints one line per gap (seconds since the start, gap
in ms), then the count and total.
"""

import argparse
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--min-ms", type=float, default=1.0)
    parser.add_argument("--sleep-ms", type=float, default=0.0,
                        help="sleep this long each time round instead of spinning")
    args = parser.parse_args()
    pause = args.sleep_ms / 1e3
    threshold = args.min_ms / 1e3
    start = last = time.monotonic()
    gaps = []
    while last - start < args.seconds:
        now = time.monotonic()
        if now - last > threshold:
            gaps.append((now - start, (now - last) * 1e3))
        last = now
        if pause:
            time.sleep(pause)
    for at, ms in gaps:
        print(f"{at:9.4f} s  gap {ms:7.2f} ms")
    print(f"{len(gaps)} gaps over {args.min_ms} ms, {sum(ms for _, ms in gaps):.1f} ms in all")


if __name__ == "__main__":
    main()
