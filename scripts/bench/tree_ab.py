#!/usr/bin/env python3
"""Alternates tree bench binaries and prints the median CPU ns per op of each row.

Build each version's bench (`cargo bench -p zinc-storage --bench tree --no-run`, then copy the
`target/release/deps/tree-*` executable it names), then:

  python3 scripts/bench/tree_ab.py /tmp/old/tree,/tmp/new/tree 3 1000000 100

runs the binaries one after the other, three times each, with the bench's arguments after the
count, and prints for every row the median and the sorted runs of each binary. Alternating
spreads the machine's changing load over both.
"""

import re
import statistics
import subprocess
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    binaries = sys.argv[1].split(",")
    rounds = int(sys.argv[2])
    bench_args = sys.argv[3:]
    results = {binary: {} for binary in binaries}
    row = re.compile(r"(.+?)\s+\d+ ops\s+\d+ ops/s\(cpu\)\s+(\d+) ns/op\(cpu\)")
    for _ in range(rounds):
        for binary in binaries:
            out = subprocess.run([binary] + bench_args, capture_output=True, text=True,
                                 check=True).stdout
            for line in out.splitlines():
                match = row.match(line)
                if match:
                    results[binary].setdefault(match.group(1).strip(), []).append(
                        int(match.group(2)))
    for name in results[binaries[0]]:
        cells = []
        for binary in binaries:
            runs = sorted(results[binary].get(name, []))
            median = statistics.median(runs) if runs else 0
            cells.append(f"{median:>9.0f} {str(runs):<30}")
        print(f"{name:<42}" + "".join(cells))


if __name__ == "__main__":
    main()
