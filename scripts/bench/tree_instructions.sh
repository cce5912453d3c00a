#!/usr/bin/env bash
# Instructions per txn inside `Tree::apply` (callgrind; they do not depend on the machine's
# load): creates, setData and deletes on a 100,000-znode tree with 100-byte data. Each phase's
# figure is its run's total minus the run with the creates alone.
#
#   apt-get install valgrind
#   cargo bench -p zinc-storage --bench tree --no-run     # prints the bench binary's path
#   scripts/bench/tree_instructions.sh target/release/deps/tree-HASH [more binaries...]
set -euo pipefail
count() { # count BINARY PHASE -> instructions inside Tree::apply for that run
  local out
  out=$(mktemp)
  valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect='*Tree>::apply' \
    "$1" 100000 100 "$2" >/dev/null 2>&1
  callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'
  rm -f "$out"
}
for binary in "$@"; do
  creates=$(count "$binary" none)
  set_data=$(count "$binary" set)
  deletes=$(count "$binary" delete)
  # The load creates 100,000 znodes, their 100 directories and /bench.
  python3 -c "
creates, set_data, deletes = $creates, $set_data, $deletes
print(f'$binary: create {creates / 101101:.0f}  setData {(set_data - creates) / 1e5:.0f}  '
      f'delete {(deletes - creates) / 1e5:.0f}  instructions per txn')"
done
