"""Compatibility scenarios driven by the kazoo client.

Usage: kazoo_scenarios.py HOST:PORT [SCENARIO ...]

Prints one normalized line per observation (no session ids, zxids or times), so the transcript
of a Zinc server can be compared with Apache ZooKeeper's line by line.
"""
import os
import subprocess
import sys
import threading

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.security import make_digest_acl, OPEN_ACL_UNSAFE, READ_ACL_UNSAFE

HOSTS = sys.argv[1]
OUT = []


def say(*parts):
    line = " ".join(str(p) for p in parts)
    OUT.append(line)
    print(line, flush=True)


def stat_text(stat):
    if stat is None:
        return "none"
    return (f"version={stat.version} cversion={stat.cversion} aversion={stat.aversion} "
            f"dataLength={stat.dataLength} numChildren={stat.numChildren} "
            f"ephemeral={stat.ephemeralOwner != 0} created_is_modified={stat.czxid == stat.mzxid}")


def result_text(result):
    if isinstance(result, Exception):
        return type(result).__name__
    if hasattr(result, "czxid"):
        return "stat(" + stat_text(result) + ")"
    return result


def attempt(label, fn):
    try:
        result = fn()
        return result
    except KazooException as error:
        say(label, "->", type(error).__name__)
        return None


def client(**kwargs):
    zk = KazooClient(hosts=HOSTS, timeout=10, **kwargs)
    zk.start(timeout=15)
    return zk


def scenario_crud(zk):
    zk.create("/crud", b"hello")
    data, stat = zk.get("/crud")
    say("get /crud", data, stat_text(stat))
    stat = zk.set("/crud", b"world!")
    say("set /crud", stat_text(stat))
    attempt("set /crud version=7", lambda: zk.set("/crud", b"x", version=7))
    attempt("create /crud again", lambda: zk.create("/crud", b""))
    attempt("create /missing/child", lambda: zk.create("/missing/child", b""))
    zk.create("/crud/a", b"")
    zk.create("/crud/b", None)
    data, stat = zk.get("/crud/b")
    say("get /crud/b", repr(data), stat_text(stat))
    say("children /crud", sorted(zk.get_children("/crud")))
    _, stat = zk.get("/crud")
    say("parent after children", stat_text(stat))
    attempt("delete /crud non-empty", lambda: zk.delete("/crud"))
    attempt("delete /crud/a version=3", lambda: zk.delete("/crud/a", version=3))
    zk.delete("/crud/a")
    zk.delete("/crud/b", version=0)
    _, stat = zk.get("/crud")
    say("parent after deletes", stat_text(stat))
    say("exists /crud/a", stat_text(zk.exists("/crud/a")))
    attempt("get /nope", lambda: zk.get("/nope"))
    attempt("bad path", lambda: zk.create("/bad//path", b""))
    zk.delete("/crud")
    say("exists /crud", stat_text(zk.exists("/crud")))


def scenario_kinds(zk):
    zk.create("/kinds", b"")
    for i in range(3):
        path = zk.create("/kinds/seq-", b"", sequence=True)
        say("sequential", path)
    path = zk.create("/kinds/eseq-", b"", ephemeral=True, sequence=True)
    say("ephemeral sequential", path)
    zk.create("/kinds/eph", b"e", ephemeral=True)
    _, stat = zk.get("/kinds/eph")
    say("ephemeral stat", stat_text(stat))
    attempt("child of ephemeral", lambda: zk.create("/kinds/eph/child", b""))
    other = client()
    other.create("/kinds/other-eph", b"", ephemeral=True)
    say("children with other", sorted(zk.get_children("/kinds")))
    other.stop()
    other.close()
    say("children after close", sorted(zk.get_children("/kinds")))


def scenario_multi(zk):
    zk.create("/multi", b"")
    tx = zk.transaction()
    tx.create("/multi/a", b"1")
    tx.set_data("/multi", b"2")
    tx.check("/multi", 1)
    say("multi ok", [result_text(r) for r in tx.commit()])
    tx = zk.transaction()
    tx.create("/multi/b", b"")
    tx.check("/multi", 0)
    tx.delete("/multi/a")
    results = tx.commit()
    say("multi failing", [result_text(r) for r in results])
    say("after failed multi", sorted(zk.get_children("/multi")), zk.get("/multi")[0])


def scenario_watches(zk):
    zk.create("/w", b"")
    events = []
    done = threading.Event()

    def record(event):
        events.append(f"{event.type} {event.path}")
        done.set()

    def wait_event():
        assert done.wait(10), "watch did not fire"
        done.clear()
        say("event", events.pop(0))

    zk.get("/w", watch=record)
    zk.set("/w", b"1")
    wait_event()
    zk.get_children("/w", watch=record)
    zk.create("/w/c", b"")
    wait_event()
    zk.exists("/w/later", watch=record)
    zk.create("/w/later", b"")
    wait_event()
    zk.get("/w/later", watch=record)
    zk.delete("/w/later")
    wait_event()
    zk.get_children("/w/c", watch=record)
    zk.delete("/w/c")
    wait_event()
    # A one-shot watch fires once.
    zk.get("/w", watch=record)
    zk.set("/w", b"2")
    wait_event()
    zk.set("/w", b"3")
    zk.sync("/w")
    say("events left", len(events))


def scenario_acl(zk):
    zk.add_auth("digest", "alice:secret")
    acl = make_digest_acl("alice", "secret", all=True)
    zk.create("/acl", b"private", acl=[acl])
    acls, stat = zk.get_acls("/acl")
    say("acls", [(a.perms, a.id.scheme, a.id.id) for a in acls], stat_text(stat))
    other = client()
    attempt("other get", lambda: other.get("/acl"))
    attempt("other set", lambda: other.set("/acl", b"x"))
    other.add_auth("digest", "alice:secret")
    say("other after auth", other.get("/acl")[0])
    other.stop()
    other.close()
    zk.set_acls("/acl", READ_ACL_UNSAFE)
    acls, stat = zk.get_acls("/acl")
    say("acls after set", [(a.perms, a.id.scheme, a.id.id) for a in acls], stat_text(stat))
    attempt("set read-only", lambda: zk.set("/acl", b"x"))
    attempt("empty acl", lambda: zk.create("/acl2", b"", acl=[]))
    attempt("set_acls bad version", lambda: zk.set_acls("/acl", OPEN_ACL_UNSAFE, version=5))


def scenario_expiry(zk):
    """A client that dies without closing: its ephemerals go when the session expires."""
    zk.create("/expiry", b"")
    gone = threading.Event()
    code = (
        "import os,sys\n"
        "from kazoo.client import KazooClient\n"
        f"zk = KazooClient(hosts='{HOSTS}', timeout=1.0)\n"
        "zk.start(timeout=15)\n"
        "zk.create('/expiry/mine', b'', ephemeral=True)\n"
        "print('created', flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=False, timeout=60)

    def record(event):
        if event.type == "DELETED":
            gone.set()

    if zk.exists("/expiry/mine", watch=record) is None:
        say("ephemeral was not created")
        return
    say("ephemeral present", True)
    say("ephemeral removed after expiry", gone.wait(30))


SCENARIOS = {
    "crud": scenario_crud,
    "kinds": scenario_kinds,
    "multi": scenario_multi,
    "watches": scenario_watches,
    "acl": scenario_acl,
    "expiry": scenario_expiry,
}


def main():
    names = sys.argv[2:] or list(SCENARIOS)
    for name in names:
        say("==", name)
        zk = client()
        try:
            SCENARIOS[name](zk)
        finally:
            zk.stop()
            zk.close()
    say("== done")


if __name__ == "__main__":
    main()
