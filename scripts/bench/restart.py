#!/usr/bin/env python3
"""Restart time with a large tree: Zinc against Apache ZooKeeper on the same machine.

For each server (Zinc from target/release, ZooKeeper from Debian's package), in a fresh
temporary data directory on a free loopback port: load --znodes znodes of --data-bytes with
`zinc-bench --workload create`, then --txns setData txns with `zinc-bench --workload set`
(they end up in the log after the newest snapshot, together with whatever the snapshot
interval leaves there), kill the server with SIGKILL, and --runs times: start it again and time
from the start until a plain client's getData of the load's root succeeds (first read served),
then kill it again. Both use their default snapshot interval (snapCount=100000). Between the
creates and the setData txns the script waits until the data directory is quiet, restarts the
server and waits until it is quiet again: both servers write a snapshot when they start with
txns in the log after their newest one (ZooKeeper before it serves, Zinc just after), so both
then restart from a snapshot of exactly the loaded tree plus the setData txns, the issue's
scenario (unless a server's own snapshot interval takes another snapshot during the setData
txns; each server's recovery lines show what it replayed).

Prints a Markdown table and the servers' own recovery lines. Kills what it starts.

  cargo build --release -p zinc-server -p zinc-bench
  python3 scripts/bench/restart.py --znodes 1000000 --txns 100000 --data-bytes 100 --runs 3
"""

import argparse
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ZINC = os.environ.get("ZINC_BIN", os.path.join(REPO, "target", "release", "zinc"))
BENCH = os.path.join(REPO, "target", "release", "zinc-bench")
CLASSPATH = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar"
ROOT = "/zinc-bench"
READY_TIMEOUT_S = 600


def free_port():
    """A free port below the ephemeral range: a readiness probe that connects before the
    server binds could otherwise be given the port itself (a TCP self-connect) and hold it."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    while True:
        port = random.randrange(10000, max(low, 11000))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


def frame(body):
    return struct.pack(">i", len(body)) + body


def read_frame(sock):
    def exactly(n):
        out = b""
        while len(out) < n:
            chunk = sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("closed")
            out += chunk
        return out

    (length,) = struct.unpack(">i", exactly(4))
    return exactly(length)


def first_read(port, path):
    """One session: connect, getData(path). True when the server answered it without error."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        connect = struct.pack(">iqiq", 0, 0, 30000, 0) + struct.pack(">i", 16) + b"\0" * 16 + b"\0"
        sock.sendall(frame(connect))
        reply = read_frame(sock)
        (timeout,) = struct.unpack(">i", reply[4:8])
        if timeout <= 0:
            return False
        encoded = path.encode()
        request = struct.pack(">ii", 1, 4) + struct.pack(">i", len(encoded)) + encoded + b"\0"
        sock.sendall(frame(request))
        reply = read_frame(sock)
        _, _, err = struct.unpack(">iqi", reply[:16])
        return err == 0


def time_to_first_read(process, port):
    start = time.monotonic()
    while time.monotonic() - start < READY_TIMEOUT_S:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if first_read(port, ROOT):
                return time.monotonic() - start
        except (OSError, ConnectionError, struct.error):
            pass
        time.sleep(0.005)
    raise RuntimeError("no read served in time")


class Server:
    def __init__(self, kind, directory, port):
        self.kind, self.directory, self.port = kind, directory, port
        self.process = None
        self.log = os.path.join(directory, "server.log")

    def start(self):
        out = open(self.log, "a")
        if self.kind == "zinc":
            command = [ZINC, "--port", str(self.port), "--data-dir", os.path.join(self.directory, "data")]
        else:
            config = os.path.join(self.directory, "zoo.cfg")
            with open(config, "w") as f:
                f.write(f"tickTime=2000\ndataDir={self.directory}/data\nclientPort={self.port}\n"
                        "clientPortAddress=127.0.0.1\nadmin.enableServer=false\n"
                        "4lw.commands.whitelist=*\n")
            command = ["java", "-Xmx6g", "-cp", CLASSPATH,
                       "org.apache.zookeeper.server.quorum.QuorumPeerMain", config]
        self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)

    def kill(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


def load(server, workload, ops, data_bytes):
    target = f"127.0.0.1:{server.port}"
    common = ["--servers", target, "--value-bytes", str(data_bytes), "--sessions", "8",
              "--inflight", "64", "--warmup", "0", "--duration", "3600"]
    result = subprocess.run([BENCH, "--workload", workload, "--ops", str(ops)] + common,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{server.kind} {workload}: {result.stderr[-2000:]}")


def wait_snapshots_settled(data_dir, quiet_s=3.0, timeout_s=300):
    """Until no file in the data directory has changed for `quiet_s`: a snapshot the load
    started is then on disk, so the restart begins from a snapshot of the loaded tree plus the
    setData txns, as the issue's scenario says (a server killed mid-snapshot would replay the
    load's tail as well). Applied to both servers alike."""
    def listing():
        found = []
        for root, _, names in os.walk(data_dir):
            for name in names:
                try:
                    found.append((os.path.join(root, name), os.path.getsize(os.path.join(root, name))))
                except OSError:
                    pass
        return sorted(found)

    deadline = time.monotonic() + timeout_s
    last, since = listing(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = listing()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
    raise RuntimeError(f"files in {data_dir} kept changing for {timeout_s} s")


def measure(kind, args, base):
    directory = tempfile.mkdtemp(prefix=f"restart-{kind}-", dir=base)
    server = Server(kind, directory, free_port())
    times = []
    try:
        server.start()
        wait_started(server)
        data_dir = os.path.join(directory, "data")
        load(server, "create", args.znodes, args.data_bytes)
        # A snapshot of exactly the loaded tree: both servers write one when they start with
        # txns in the log after their newest snapshot (ZooKeeper before it serves, Zinc just
        # after), so the setData txns that follow are what the restarts replay.
        wait_snapshots_settled(data_dir)
        server.kill()
        server.start()
        wait_started(server)
        wait_snapshots_settled(data_dir)
        load(server, "set", args.txns, args.data_bytes)
        for _ in range(args.runs):
            server.kill()
            server.start()
            times.append(time_to_first_read(server.process, server.port))
    except RuntimeError:
        with open(server.log) as f:
            sys.stderr.write(f"{kind} log:\n" + "".join(f.readlines()[-20:]))
        raise
    finally:
        server.kill()
    with open(server.log) as f:
        lines = [line.strip() for line in f if "loaded" in line or "replayed" in line
                 or "Snapshot loaded" in line or "Reading snapshot" in line]
    return times, lines[-2 * args.runs:]


def wait_started(server):
    wait_serving(server.process, server.port, server.kind)


def wait_serving(process, port, what):
    """Until the server on `port` answers srvr with a mode (ZooKeeper answers ruok before it
    serves); fails at once if `process` exits."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(b"srvr")
                if b"Mode:" in sock.recv(4096):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--znodes", type=int, default=1_000_000)
    parser.add_argument("--txns", type=int, default=100_000)
    parser.add_argument("--data-bytes", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the data directories go (a temp dir)")
    parser.add_argument(
        "--servers",
        default="zinc,zookeeper",
        help="which servers to measure, comma separated (the ratio needs both)",
    )
    args = parser.parse_args()
    kinds = [kind for kind in args.servers.split(",") if kind]
    for kind in kinds:
        if kind not in ("zinc", "zookeeper"):
            parser.error(f"unknown server {kind!r}: zinc or zookeeper")
    with tempfile.TemporaryDirectory(dir=args.dir) as base:
        results = {kind: measure(kind, args, base) for kind in kinds}
    print(f"| server | znodes | txns | restart to first read, s (runs) | median s |")
    print("|---|---:|---:|---|---:|")
    for kind, (times, _) in results.items():
        median = sorted(times)[len(times) // 2]
        runs = ", ".join(f"{t:.2f}" for t in times)
        print(f"| {kind} | {args.znodes} | {args.txns} | {runs} | {median:.2f} |")
    if len(results) == 2:
        zinc, zookeeper = (
            sorted(results[k][0])[len(results[k][0]) // 2] for k in ("zinc", "zookeeper")
        )
        print(f"\nratio Zinc / ZooKeeper (medians): {zinc / zookeeper:.3f}")
    for kind, (_, lines) in results.items():
        for line in lines:
            print(f"{kind}: {line}", file=sys.stderr)


if __name__ == "__main__":
    main()
