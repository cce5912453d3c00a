#!/usr/bin/env python3
"""Captures golden vectors: real clients talking to a real Apache ZooKeeper 3.8 through a
recording proxy, one fixture file per scenario in protocol/tests/golden/.

Usage: scripts/golden/capture.py [--out DIR] [--keep] [SCENARIO ...]
With no scenario names, every scenario runs. See README.md in this folder.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fixture  # noqa: E402
import rawclient  # noqa: E402
import scenarios  # noqa: E402
import zkserver  # noqa: E402
from proxy import Proxy  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
JAVA_CLASSPATH = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-nop.jar"


class Context:
    def __init__(self, workdir, proxy):
        self.workdir = workdir
        self.proxy = proxy
        self.java_classpath = f"{workdir}/classes:{JAVA_CLASSPATH}"
        self.client_jaas = f"{workdir}/client_jaas.conf"
        with open(self.client_jaas, "w") as out:
            out.write(
                "Client {\n"
                "  org.apache.zookeeper.server.auth.DigestLoginModule required\n"
                f'  username="{zkserver.SASL_USER}"\n'
                f'  password="{zkserver.SASL_PASSWORD}";\n'
                "};\n"
            )
        subprocess.run(
            ["javac", "-d", f"{workdir}/classes", "-cp", JAVA_CLASSPATH, f"{HERE}/Driver.java"],
            check=True,
        )


def warm_up(port, timeout_s=30.0):
    """Opens sessions directly until one succeeds: `ruok` answers before the server accepts
    sessions, and the first session makes it preallocate its log. Keeps both out of fixtures."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            rawclient.RawClient(port).close()
            return
        except (ConnectionError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # polling interval while waiting for the condition above


def settle(proxy):
    """Waits until every recorded request has its reply, so none is cut off the fixture. The C
    client closes its socket right after sending closeSession, so that reply never comes."""

    def answered(frames):
        return set(fixture.unanswered(frames)[0].values()) <= {"closeSession"}

    try:
        proxy.wait_for(answered, timeout_s=10.0, what="replies")
    except TimeoutError as error:
        print(f"   warning: {error}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(REPO, "protocol/tests/golden"))
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    parser.add_argument("scenario", nargs="*")
    args = parser.parse_args()
    chosen = [s for s in scenarios.SCENARIOS if not args.scenario or s[0] in args.scenario]
    unknown = set(args.scenario) - {s[0] for s in scenarios.SCENARIOS}
    if unknown:
        parser.error(f"unknown scenarios: {sorted(unknown)}")

    workdir = tempfile.mkdtemp(prefix="zinc-golden-")
    server = zkserver.ZooKeeper(workdir)
    failed = []
    try:
        server.wait_ready()
        warm_up(server.port)
        proxy = Proxy(server.port)
        ctx = Context(workdir, proxy)
        os.makedirs(args.out, exist_ok=True)
        for name, client, run in chosen:
            print(f"== {name} ({client})", flush=True)
            proxy.begin(name)
            try:
                run(ctx)
            except Exception:
                traceback.print_exc()
                failed.append(name)
                proxy.end()
                continue
            settle(proxy)
            recording = proxy.end()
            path = os.path.join(args.out, f"{name}.txt")
            fixture.write(path, recording, client, run.__doc__ or "")
            print(f"   {len(recording.frames)} frames -> {os.path.relpath(path)}", flush=True)
        proxy.close()
    finally:
        server.stop()
        if args.keep or failed:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir)
    if failed:
        sys.exit(f"failed scenarios: {failed}")


if __name__ == "__main__":
    main()
