#!/usr/bin/env python3
"""Measures Apache ZooKeeper's memory per znode, for comparison with Zinc's tree benchmark.

Starts a standalone ZooKeeper (Debian's `zookeeper` package) on a free loopback port in a
temporary directory, measures it empty, loads N znodes with D-byte data (same layout as
`cargo bench -p zinc-storage --bench tree`: /bench/dNNNN/nNNNNNN, 1000 per directory) with
ZkLoad.java (the Java client's async API), then measures again after a full GC:

  - live heap: `jmap -histo:live` total (forces a full GC, counts reachable objects only)
  - heap used after `jcmd <pid> GC.run`, from `jcmd <pid> GC.heap_info`
  - process RSS from /proc/<pid>/status

Prints one JSON object. Kills the server it started, also on failure.

  python3 scripts/bench/zk_tree_memory.py --znodes 1000000 --data-bytes 100
"""

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

CLASSPATH = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar"
READY_TIMEOUT_S = 60


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(port):
    deadline = time.time() + READY_TIMEOUT_S
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"ruok")
                if sock.recv(16) == b"imok":
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("ZooKeeper did not become ready")


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def live_heap_bytes(pid):
    out = subprocess.run(["jmap", "-histo:live", str(pid)], capture_output=True, text=True,
                         check=True).stdout
    total = [line for line in out.splitlines() if line.startswith("Total")][-1]
    return int(total.split()[2])


def heap_used_bytes(pid):
    subprocess.run(["jcmd", str(pid), "GC.run"], capture_output=True, check=True)
    out = subprocess.run(["jcmd", str(pid), "GC.heap_info"], capture_output=True, text=True,
                         check=True).stdout
    match = re.search(r"total (\d+)K, used (\d+)K", out)
    if not match:
        raise RuntimeError("unexpected GC.heap_info output: " + out)
    return int(match.group(2)) * 1024, int(match.group(1)) * 1024


def measure(pid):
    live = live_heap_bytes(pid)
    used, committed = heap_used_bytes(pid)
    return {"live_heap_bytes": live, "heap_used_bytes": used,
            "heap_committed_bytes": committed, "rss_bytes": rss_bytes(pid)}


def load(port, znodes, data_bytes):
    """Runs ZkLoad.java (Java client, async creates); returns the load time in seconds."""
    loader = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ZkLoad.java")
    started = time.time()
    out = subprocess.run(["java", "-cp", CLASSPATH, loader, f"127.0.0.1:{port}", str(znodes),
                          str(data_bytes)], capture_output=True, text=True, check=True).stdout
    if f"created={znodes} failures=0" not in out:
        raise RuntimeError("load failed: " + out)
    return time.time() - started


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--znodes", type=int, default=1_000_000)
    parser.add_argument("--data-bytes", type=int, default=100)
    parser.add_argument("--heap", default="1000m",
                        help="-Xmx (1000m is zkServer.sh's default, ZK_SERVER_HEAP=1000); "
                             "'default' leaves the JVM's own choice (1/4 of RAM)")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="zk-mem-")
    port = free_port()
    with open(os.path.join(workdir, "zoo.cfg"), "w") as cfg:
        cfg.write(f"tickTime=2000\ndataDir={workdir}/data\nclientPort={port}\n"
                  "clientPortAddress=127.0.0.1\n4lw.commands.whitelist=*\n"
                  "admin.enableServer=false\nforceSync=no\n")
    log = open(os.path.join(workdir, "zk.log"), "w")
    server = subprocess.Popen(
        ["java"] + ([] if args.heap == "default" else [f"-Xmx{args.heap}"]) + ["-cp", CLASSPATH,
         "org.apache.zookeeper.server.quorum.QuorumPeerMain", "zoo.cfg"],
        cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(port)
        empty = measure(server.pid)
        load_s = load(port, args.znodes, args.data_bytes)
        loaded = measure(server.pid)
        per_znode = {key: (loaded[key] - empty[key]) / args.znodes for key in loaded}
        print(json.dumps({"znodes": args.znodes, "data_bytes": args.data_bytes,
                          "heap_max": args.heap, "load_seconds": round(load_s, 1),
                          "empty": empty, "loaded": loaded,
                          "per_znode_bytes": per_znode}, indent=2))
    finally:
        server.kill()
        server.wait()
        log.close()
        subprocess.run(["rm", "-rf", workdir], check=False)


if __name__ == "__main__":
    sys.exit(main())
