#!/usr/bin/env bash
# Zinc with the first shard on the Zab core's executor (zinc.coreWithShard=true, the default on
# 2 CPUs or fewer) against separate executors: ops/s and server CPU microseconds per op
# (user+sys from /proc) for one zinc-bench workload, alternating the two settings ROUNDS times.
#
#   cargo build --release -p zinc-server -p zinc-bench
#   scripts/bench/core_with_shard.sh [WORKLOAD] [ROUNDS] [SECONDS]     # default: set 2 10
set -euo pipefail
cd "$(dirname "$0")/../.."
workload=${1:-set}
rounds=${2:-2}
seconds=${3:-10}
ticks_per_s=$(getconf CLK_TCK)

run() { # run SETTING
  local dir port pid before after out ops
  dir=$(mktemp -d)
  port=$(python3 -c 'import random,socket
while True:
    p=random.randrange(10000,30000); s=socket.socket()
    try: s.bind(("127.0.0.1",p)); print(p); break
    except OSError: pass')
  echo "zinc.coreWithShard=$1" > "$dir/zoo.cfg"
  target/release/zinc --config "$dir/zoo.cfg" --port "$port" --data-dir "$dir/data" >/dev/null 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null; rm -rf "$dir"' RETURN
  python3 -c "import socket,time
for _ in range(600):
    try: socket.create_connection(('127.0.0.1',$port),1).close(); break
    except OSError: time.sleep(0.05)"
  target/release/zinc-bench --servers "127.0.0.1:$port" --workload "$workload" --duration 2 \
    --warmup 1 --sessions 8 --inflight 64 >/dev/null 2>&1
  before=$(awk '{print $14+$15}' "/proc/$pid/stat")
  out=$(target/release/zinc-bench --servers "127.0.0.1:$port" --workload "$workload" \
    --duration "$seconds" --warmup 0 --sessions 8 --inflight 64 --json 2>/dev/null)
  after=$(awk '{print $14+$15}' "/proc/$pid/stat")
  ops=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ops_per_s"])')
  python3 -c "print(f'| $1 | $workload | {$ops:,.0f} | {($after-$before)/$ticks_per_s*1e6/($ops*$seconds):.1f} |')"
}

echo "| zinc.coreWithShard | workload | ops/s | server CPU us/op |"
echo "|---|---|---:|---:|"
for _ in $(seq "$rounds"); do
  run true
  run false
done
