"""A recording TCP proxy for ZooKeeper client connections.

Every accepted client connection is forwarded to the server. Each direction is split into
jute frames (4-byte big-endian length, then the frame) and every complete frame is recorded
BEFORE its bytes are forwarded, so a request is always recorded ahead of its reply. Frames are
kept without their length prefix.
"""

import socket
import struct
import threading
import time

FRAME_BYTES_MAX = 1 << 20  # A capture never needs more; a larger length means a broken stream.


class Recording:
    """Frames recorded for one scenario: (connection number, direction, frame bytes)."""

    def __init__(self, name):
        self.name = name
        self.frames = []  # list of (conn, '>' or '<', bytes), in the order they were recorded
        self.delivered = set()  # indexes into frames whose bytes have been forwarded
        self.connections = 0

    def delivered_frames(self):
        return [frame for index, frame in enumerate(self.frames) if index in self.delivered]


class Proxy:
    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.cond = threading.Condition()
        self.recording = None
        self.live = []  # sockets of open connections, for drop()
        self.closed = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    # --- scenario control -------------------------------------------------------------------

    def begin(self, name):
        with self.cond:
            self.recording = Recording(name)

    def end(self):
        with self.cond:
            recording, self.recording = self.recording, None
            return recording

    def drop(self):
        """Closes every open proxied connection: clients see a connection loss and reconnect."""
        with self.cond:
            live, self.live = self.live, []
        for sock in live:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def wait_for(self, predicate, timeout_s=20.0, what="condition"):
        """Waits until predicate(frames) is true for the current recording's frames that have
        reached their peer (so dropping the connection afterwards loses none of them)."""
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while not predicate(self.recording.delivered_frames()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.recording.name}: timed out waiting for {what}")
                self.cond.wait(left)

    def close(self):
        self.closed = True
        self.listener.close()
        self.drop()

    # --- forwarding --------------------------------------------------------------------------

    def _accept_loop(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self.cond:
                recording = self.recording
                conn = 0
                if recording is not None:
                    recording.connections += 1
                    conn = recording.connections
                self.live += [client, server]
            for src, dst, direction in ((client, server, ">"), (server, client, "<")):
                args = (src, dst, direction, recording, conn)
                threading.Thread(target=self._pump, args=args, daemon=True).start()

    def _pump(self, src, dst, direction, recording, conn):
        pending = b""
        while True:
            try:
                chunk = src.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            pending += chunk
            pending, recorded = self._record_frames(pending, direction, recording, conn)
            try:
                dst.sendall(chunk)
            except OSError:
                break
            if recorded:
                with self.cond:
                    recording.delivered.update(recorded)
                    self.cond.notify_all()
        # Half-close: the other direction keeps flowing, so a reply the server sends after the
        # client has finished sending (closeSession) is still recorded.
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _record_frames(self, pending, direction, recording, conn):
        frames = []
        while len(pending) >= 4:
            (length,) = struct.unpack(">i", pending[:4])
            if length < 0 or length > FRAME_BYTES_MAX:
                raise ValueError(f"bad frame length {length} on connection {conn}")
            if len(pending) < 4 + length:
                break
            frames.append(pending[4 : 4 + length])
            pending = pending[4 + length :]
        recorded = range(0)
        if frames and recording is not None:
            with self.cond:
                start = len(recording.frames)
                recording.frames += [(conn, direction, f) for f in frames]
                recorded = range(start, len(recording.frames))
        return pending, recorded
