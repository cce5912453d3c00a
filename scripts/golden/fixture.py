"""Writes a recording as a fixture file and answers questions about recorded frames."""

import struct

OP_NAMES = {
    0: "notification", 1: "create", 2: "delete", 3: "exists", 4: "getData", 5: "setData",
    6: "getACL", 7: "setACL", 8: "getChildren", 9: "sync", 11: "ping", 12: "getChildren2",
    13: "check", 14: "multi", 15: "create2", 16: "reconfig", 17: "checkWatches",
    18: "removeWatches", 19: "createContainer", 20: "deleteContainer", 21: "createTTL",
    22: "multiRead", 100: "auth", 101: "setWatches", 102: "sasl", 103: "getEphemerals",
    104: "getAllChildrenNumber", 105: "setWatches2", 106: "addWatch", 107: "whoAmI",
    -10: "createSession", -11: "closeSession",
}
EVENT_NAMES = {1: "NodeCreated", 2: "NodeDeleted", 3: "NodeDataChanged", 4: "NodeChildrenChanged"}
XID_NOTIFICATION = -1
XID_PING = -2

HEADER = """\
# Zinc golden fixture: frames captured between a real client and Apache ZooKeeper 3.8.0.
# Re-capture with scripts/golden/capture.py (see scripts/golden/README.md); do not edit by hand.
# Format: '> HEX' client-to-server frame, '< HEX' server-to-client frame, in the order the
# proxy saw them. HEX is one jute frame WITHOUT its 4-byte length prefix. '@ N' means the
# frames that follow belong to client connection N (the first frame of each direction on a
# connection is the connect request/response). '# ' lines are comments (annotations below are
# informative only).
"""


def frame_xid(frame):
    return struct.unpack(">i", frame[:4])[0]


def iter_annotated(frames):
    """Yields (conn, direction, frame, annotation) with per-connection xid -> op tracking."""
    seen = set()  # (conn, direction) whose connect frame has passed
    ops = {}  # (conn, xid) -> op name
    for conn, direction, frame in frames:
        if (conn, direction) not in seen:
            seen.add((conn, direction))
            yield conn, direction, frame, "connect" if direction == ">" else "connect reply"
            continue
        if direction == ">":
            xid, op = struct.unpack(">ii", frame[:8])
            name = OP_NAMES.get(op, f"op {op}")
            ops[(conn, xid)] = name
            yield conn, direction, frame, f"{name} xid={xid}"
            continue
        xid, zxid, err = struct.unpack(">iqi", frame[:16])
        if xid == XID_NOTIFICATION:
            event, _state = struct.unpack(">ii", frame[16:24])
            (length,) = struct.unpack(">i", frame[24:28])
            path = frame[28 : 28 + length].decode(errors="replace")
            yield conn, direction, frame, f"notification {EVENT_NAMES.get(event, event)} {path}"
            continue
        name = ops.get((conn, xid), "?")
        yield conn, direction, frame, f"{name} reply xid={xid} zxid={zxid} err={err}"


def unanswered(frames):
    """Requests with no reply yet as {(conn, xid): op name}, and the number of requests sent."""
    pending, sent = {}, 0
    for conn, direction, frame, note in iter_annotated(frames):
        if note.startswith("connect") or note.startswith("notification"):
            continue
        xid = frame_xid(frame)
        if direction == ">":
            pending[(conn, xid)] = note.split()[0]
            sent += 1
        else:
            pending.pop((conn, xid), None)
    return pending, sent


def has_request(frames, op_name):
    return any(d == ">" and note.startswith(op_name + " ") for _c, d, _f, note in iter_annotated(frames))


def write(path, recording, client, description):
    lines = [HEADER, f"# scenario: {recording.name}\n", f"# client: {client}\n"]
    lines += [f"# {line.strip()}\n" for line in description.strip().splitlines()]
    current = None
    for conn, direction, frame, note in iter_annotated(recording.frames):
        if conn != current:
            lines.append(f"@ {conn}\n")
            current = conn
        lines.append(f"# {note}\n{direction} {frame.hex()}\n")
    with open(path, "w") as out:
        out.write("".join(lines))
