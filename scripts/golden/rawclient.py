"""A minimal jute client for requests no real client here sends.

It builds request bytes by hand and sends them through the recording proxy, so the server's
answers in `# client: raw` fixtures are real even though the requests are not.
"""

import socket
import struct

OP_CREATE = 1
OP_EXISTS = 3
OP_CHECK = 13
OP_CHECK_WATCHES = 17
OP_REMOVE_WATCHES = 18
OP_CREATE_TTL = 21
OP_CLOSE_SESSION = -11
OP_PING = 11
WATCHER_TYPE_ANY = 3
OPEN_ACL = struct.pack(">i", 1) + struct.pack(">i", 31) + b"".join(
    struct.pack(">i", len(s)) + s for s in (b"world", b"anyone")
)


def jstring(value):
    if value is None:
        return struct.pack(">i", -1)
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack(">i", len(raw)) + raw


class RawClient:
    def __init__(self, port, legacy_connect=False, session_id=0, passwd=bytes(16)):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.buf = b""
        self.xid = 0
        # protocolVersion, lastZxidSeen, timeOut, sessionId, passwd
        connect = struct.pack(">iqiq", 0, 0, 4000, session_id) + jstring(passwd)
        if not legacy_connect:
            connect += b"\x00"  # readOnly: a client older than 3.4 omits it
        self._send(connect)
        self.connect_response = self._recv()

    def _send(self, payload):
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)

    def _recv(self):
        while True:
            if len(self.buf) >= 4:
                (length,) = struct.unpack(">i", self.buf[:4])
                if len(self.buf) >= 4 + length:
                    frame, self.buf = self.buf[4 : 4 + length], self.buf[4 + length :]
                    return frame
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk

    def call(self, op, body=b"", xid=None):
        """Sends one request and returns the reply's error code (skipping notifications)."""
        if xid is None:
            self.xid += 1
            xid = self.xid
        self._send(struct.pack(">ii", xid, op) + body)
        while True:
            reply = self._recv()
            reply_xid, _zxid, err = struct.unpack(">iqi", reply[:16])
            if reply_xid == xid:
                return err

    def wait_closed(self):
        """Reads until the server closes the connection; returns the frames it sent meanwhile."""
        frames = []
        while True:
            try:
                frames.append(self._recv())
            except ConnectionError:
                self.sock.close()
                return frames

    def close(self):
        self.call(OP_CLOSE_SESSION)
        self.sock.close()
