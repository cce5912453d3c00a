"""The capture scenarios. Each drives one client through the proxy and returns nothing; a failed
expectation raises. Every scenario uses its own top-level znode so they may run in any order."""

import queue
import struct
import subprocess
import threading
import time

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (
    BadVersionError,
    InvalidACLError,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    RolledBackError,
)
from kazoo.security import make_acl, make_digest_acl

import fixture
import rawclient

ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"
CLI_MT = "/usr/lib/zookeeper/bin/cli_mt"
WAIT_S = 30.0


def expect_raises(error, call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except error:
        return
    raise AssertionError(f"expected {error.__name__} from {call.__name__}{args}")


class Kazoo:
    """A kazoo client through the proxy, with a queue of watch events and connection waits."""

    def __init__(self, ctx, timeout_s=10.0, read_only=False):
        self.events = queue.Queue()
        self.connected = threading.Event()
        hosts = f"127.0.0.1:{ctx.proxy.port}"
        self.zk = KazooClient(hosts=hosts, timeout=timeout_s, read_only=read_only)
        self.zk.add_listener(self._on_state)
        self.zk.start(timeout=WAIT_S)

    def _on_state(self, state):
        if state == KazooState.CONNECTED:
            self.connected.set()
        else:
            self.connected.clear()

    def watch(self, event):
        self.events.put(event)

    def await_events(self, wanted):
        """Waits until every event type name in `wanted` has been delivered."""
        seen = set()
        while not set(wanted) <= seen:
            seen.add(self.events.get(timeout=WAIT_S).type)

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.zk.stop()
        self.zk.close()


def kazoo_crud(ctx):
    """Every CreateMode via create and create2, reads, writes and their common errors."""
    with Kazoo(ctx) as k:
        zk = k.zk
        zk.create("/kc", b"root")
        zk.create("/kc/eph", b"e", ephemeral=True)
        zk.create("/kc/seq-", b"s", sequence=True)
        zk.create("/kc/eseq-", b"es", ephemeral=True, sequence=True)
        zk.create("/kc/c2", b"two", include_data=True)
        expect_raises(NodeExistsError, zk.create, "/kc", b"again")
        expect_raises(NoNodeError, zk.create, "/kc/missing/child", b"")
        assert zk.exists("/kc") is not None
        assert zk.exists("/kc/absent") is None
        assert zk.get("/kc")[0] == b"root"
        expect_raises(NoNodeError, zk.get, "/kc/absent")
        zk.set("/kc", b"root2", version=0)
        expect_raises(BadVersionError, zk.set, "/kc", b"x", version=7)
        assert "eph" in zk.get_children("/kc")
        zk.get_children("/kc", include_data=True)
        zk.sync("/kc")
        expect_raises(NotEmptyError, zk.delete, "/kc")
        expect_raises(BadVersionError, zk.delete, "/kc/c2", version=3)
        zk.delete("/kc/c2", version=0)
        expect_raises(NoNodeError, zk.delete, "/kc/c2")


def kazoo_acl_auth(ctx):
    """Digest ACLs, NoAuth, addauth, getACL/setACL and InvalidACL."""
    with Kazoo(ctx) as k:
        zk = k.zk
        zk.create("/ka", b"a")
        zk.create("/ka/locked", b"secret", acl=[make_digest_acl("bob", "pw", all=True)])
        expect_raises(NoAuthError, zk.get, "/ka/locked")
        expect_raises(InvalidACLError, zk.create, "/ka/bad", b"", acl=[make_acl("digest", "nocolon", all=True)])
        zk.add_auth("digest", "bob:pw")
        assert zk.get("/ka/locked")[0] == b"secret"
        zk.get_acls("/ka/locked")
        expect_raises(BadVersionError, zk.set_acls, "/ka", [make_acl("world", "anyone", all=True)], version=9)
        zk.set_acls("/ka", [make_acl("world", "anyone", read=True, write=True, create=True, delete=True)])
        zk.get_acls("/ka")
        expect_raises(NoAuthError, zk.set_acls, "/ka", [make_acl("world", "anyone", all=True)])
        zk.delete("/ka/locked")


def kazoo_multi(ctx):
    """A successful multi with every op type and a failing one (per-op error results)."""
    with Kazoo(ctx) as k:
        zk = k.zk
        zk.create("/kt", b"t")
        t = zk.transaction()
        t.create("/kt/a", b"a")
        t.create("/kt/s-", b"", sequence=True)
        t.set_data("/kt", b"t2")
        t.check("/kt", 1)
        t.delete("/kt/a")
        results = t.commit()
        assert not any(isinstance(r, Exception) for r in results), results
        t = zk.transaction()
        t.create("/kt/b", b"b")
        t.check("/kt", 42)
        t.delete("/kt")
        results = t.commit()
        assert isinstance(results[0], RolledBackError), results
        assert isinstance(results[1], BadVersionError), results


def kazoo_watches(ctx):
    """One-shot watches firing every server-sent event type; a ping on an idle connection."""
    with Kazoo(ctx, timeout_s=2.0) as k:
        zk = k.zk
        zk.create("/kw", b"w")
        zk.create("/kw/gone", b"")
        zk.exists("/kw/new", watch=k.watch)
        zk.get("/kw", watch=k.watch)
        zk.get_children("/kw", watch=k.watch)
        zk.exists("/kw/gone", watch=k.watch)
        zk.create("/kw/new", b"")
        zk.set("/kw", b"w2")
        zk.delete("/kw/gone")
        k.await_events(["CREATED", "CHANGED", "CHILD", "DELETED"])
        ctx.proxy.wait_for(lambda frames: fixture.has_request(frames, "ping"), what="a ping")


def kazoo_reconnect(ctx):
    """A dropped connection: kazoo reconnects with its session id and password and the session
    survives (kazoo 2.11 does not send setWatches; see cli_mt_reconnect for that)."""
    with Kazoo(ctx, timeout_s=4.0) as k:
        zk = k.zk
        zk.create("/kr", b"r", ephemeral=True)
        ctx.proxy.drop()
        ctx.proxy.wait_for(lambda frames: count_connects(frames) >= 2, what="a second connect")
        if not k.connected.wait(WAIT_S):
            raise AssertionError("kazoo did not reconnect")
        assert zk.get("/kr")[0] == b"r"


def count_connects(frames):
    return sum(1 for _c, d, _f, note in fixture.iter_annotated(frames) if note == "connect reply")


def run_java(ctx, scenario, jaas=None):
    """Runs one Driver.java scenario; answers its DROP requests by dropping the connection."""
    cmd = ["java"]
    if jaas:
        cmd.append(f"-Djava.security.auth.login.config={jaas}")
    cmd += ["-cp", ctx.java_classpath, "Driver", scenario, f"127.0.0.1:{ctx.proxy.port}"]
    with open(f"{ctx.workdir}/java-{scenario}.log", "w") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
        output = []
        for line in proc.stdout:
            output.append(line)
            if line.strip() == "DROP":
                ctx.proxy.drop()
                proc.stdin.write("\n")
                proc.stdin.flush()
        rc = proc.wait(timeout=WAIT_S)
    if rc != 0 or "done\n" not in output:
        raise AssertionError(f"java {scenario} failed (rc {rc}); see {ctx.workdir}/java-{scenario}.log")


def java_multi(ctx):
    run_java(ctx, "multi")


def java_setwatches2(ctx):
    run_java(ctx, "setwatches2")


def java_admin(ctx):
    run_java(ctx, "admin")


def java_sasl(ctx):
    run_java(ctx, "sasl", jaas=ctx.client_jaas)


ZKCLI_SCRIPT = """\
create /zc
get /zc
create -t 60000 /zc/ttl ttl-data
create -s -t 60000 /zc/ttlseq- x
create -c /zc/container
create /zc/container/child c
create -e -s /zc/eseq- e
create /zc/pw p
addWatch -m PERSISTENT_RECURSIVE /zc
addWatch -m PERSISTENT /zc/pw
set /zc new-data
create /zc/pw/kid k
delete /zc/pw/kid
stat /zc/absent
ls -s /zc
getEphemerals /zc
getAllChildrenNumber /zc
whoami
addauth digest dave:pw
whoami
getAcl /zc
setAcl /zc world:anyone:crdwa
removewatches /zc -a
reconfig -add server.5=127.0.0.1:1234:1235;1236
sync /zc
quit
"""


def zkcli(ctx):
    """zkCli: TTL and container creates, persistent watches, whoami, getEphemerals, etc."""
    proc = subprocess.run(
        [ZKCLI, "-server", f"127.0.0.1:{ctx.proxy.port}"],
        input=ZKCLI_SCRIPT, capture_output=True, text=True, timeout=120,
    )
    with open(f"{ctx.workdir}/zkcli.log", "w") as log:
        log.write(proc.stdout + proc.stderr)
    frames = ctx.proxy.recording.frames
    for op in ("createTTL", "createContainer", "addWatch", "whoAmI", "getEphemerals", "closeSession"):
        if not fixture.has_request(frames, op):
            raise AssertionError(f"zkCli sent no {op}; see {ctx.workdir}/zkcli.log")


CLI_MT_SCRIPT = """\
create /mc
create +e /mc/eph
create2 +s /mc/seq
create +c /mcont
create +t=60000 /mttl
get /mc
set /mc c-data
ls /mc
ls2 /mc
exists /mc
exists /mc/absent
wexists /mc/w
create /mc/w
sync /mc
delete /mc
delete /mcont
addauth digest erin:pw
reconfig -add 5=127.0.0.1:1234:1235;1236
"""


class CliMt:
    """cli_mt with commands piped on stdin. It runs requests asynchronously, so each batch of
    commands is followed by a wait until the proxy has seen every reply."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.log = open(f"{ctx.workdir}/{ctx.proxy.recording.name}.log", "w")
        self.proc = subprocess.Popen([CLI_MT, "-h", f"127.0.0.1:{ctx.proxy.port}"],
                                     stdin=subprocess.PIPE, stdout=self.log, stderr=self.log, text=True)
        self.requests_min = 0

    def run(self, commands):
        self.proc.stdin.write(commands)
        self.proc.stdin.flush()
        self.requests_min += commands.count("\n")
        self.settle()

    def settle(self):
        def all_answered(frames):
            pending, sent = fixture.unanswered(frames)
            return not pending and sent >= self.requests_min

        self.ctx.proxy.wait_for(all_answered, what="cli_mt replies")

    def wait_logged(self, text):
        deadline = time.monotonic() + WAIT_S
        path = self.log.name
        self.log.flush()
        while True:
            with open(path) as log:
                if text in log.read():
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"cli_mt never printed {text!r}; see {path}")
            time.sleep(0.05)  # polling interval while waiting for the condition above

    def quit(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.ctx.proxy.wait_for(lambda frames: fixture.has_request(frames, "closeSession"), what="closeSession")
        self.proc.stdin.close()
        self.proc.wait(timeout=WAIT_S)
        self.log.close()


def cli_mt(ctx):
    """The C client: every create flavour, reads, a watch, sync, auth, errors, reconfig."""
    cli = CliMt(ctx)
    cli.run(CLI_MT_SCRIPT)
    cli.quit()


def cli_mt_reconnect(ctx):
    """The C client re-registers its watches after a dropped connection with setWatches."""
    cli = CliMt(ctx)
    cli.run("create /mr\nwexists /mr/absent\nget /mr\nls /mr\nexists /mr/sentinel\n")
    # cli_mt arms a watch when it processes the reply; completions run in order, so once the
    # last one is logged every watch is armed and the connection may be dropped.
    cli.wait_logged("Error -101 for /mr/sentinel")
    ctx.proxy.drop()
    ctx.proxy.wait_for(lambda frames: fixture.has_request(frames, "setWatches"), what="setWatches")
    cli.requests_min += 1
    cli.settle()
    cli.run("create /mr/absent\nset /mr changed\n")
    cli.quit()


def raw_legacy_connect(ctx):
    """A pre-3.4 connect request (no readOnly byte): the server's reply omits it too."""
    client = rawclient.RawClient(ctx.proxy.port, legacy_connect=True)
    assert client.call(rawclient.OP_PING, xid=-2) == 0
    body = rawclient.jstring("/zookeeper") + b"\x00"
    assert client.call(rawclient.OP_EXISTS, body) == 0
    client.close()


def raw_expired_session(ctx):
    """Resuming a session the server does not know: it answers with timeout 0, session id 0 and
    a zero password, then closes the connection. (Real clients reach this only after a session
    expired while they were disconnected.)"""
    client = rawclient.RawClient(ctx.proxy.port, session_id=0x7EADBEEF00000001, passwd=b"p" * 16)
    (_version, timeout_ms, session_id) = struct.unpack(">iiq", client.connect_response[:16])
    assert (timeout_ms, session_id) == (0, 0), client.connect_response.hex()
    assert client.wait_closed() == []


def kazoo_read_only(ctx):
    """A client that accepts a read-only server: readOnly=true in the connect request."""
    with Kazoo(ctx, read_only=True) as k:
        assert k.zk.get_children("/zookeeper")


def raw_server_errors(ctx):
    """Requests no client here sends as such: checkWatches and removeWatches for watches the
    server does not have, a createTTL with a bad TTL. (A standalone check, opcode 13, makes
    ZooKeeper 3.8 close the connection, so it is not captured.)"""
    client = rawclient.RawClient(ctx.proxy.port)
    results = {
        "checkWatches": client.call(
            rawclient.OP_CHECK_WATCHES, rawclient.jstring("/zookeeper") + struct.pack(">i", rawclient.WATCHER_TYPE_ANY)),
        "removeWatches": client.call(
            rawclient.OP_REMOVE_WATCHES, rawclient.jstring("/zookeeper") + struct.pack(">i", rawclient.WATCHER_TYPE_ANY)),
        "createTTL 0": client.call(
            rawclient.OP_CREATE_TTL,
            rawclient.jstring("/rawttl") + rawclient.jstring(b"x") + rawclient.OPEN_ACL + struct.pack(">iq", 5, 0)),
    }
    print(f"raw_server_errors: {results}")
    client.close()


SCENARIOS = [
    ("kazoo_crud", "kazoo (Python)", kazoo_crud),
    ("kazoo_acl_auth", "kazoo (Python)", kazoo_acl_auth),
    ("kazoo_multi", "kazoo (Python)", kazoo_multi),
    ("kazoo_watches", "kazoo (Python)", kazoo_watches),
    ("kazoo_reconnect", "kazoo (Python)", kazoo_reconnect),
    ("cli_mt_reconnect", "C client cli_mt 3.8.0 (commands piped on stdin)", cli_mt_reconnect),
    ("java_multi", "Java client 3.8.0 (scripts/golden/Driver.java)", java_multi),
    ("java_setwatches2", "Java client 3.8.0 (scripts/golden/Driver.java)", java_setwatches2),
    ("java_admin", "Java client 3.8.0 (scripts/golden/Driver.java)", java_admin),
    ("java_sasl", "Java client 3.8.0 (scripts/golden/Driver.java) with JAAS DIGEST-MD5", java_sasl),
    ("zkcli", "zkCli.sh 3.8.0 (commands piped on stdin)", zkcli),
    ("cli_mt", "C client cli_mt 3.8.0 (commands piped on stdin)", cli_mt),
    ("raw_legacy_connect", "raw", raw_legacy_connect),
    ("kazoo_read_only", "kazoo (Python)", kazoo_read_only),
    ("raw_expired_session", "raw", raw_expired_session),
    ("raw_server_errors", "raw", raw_server_errors),
]
