"""Starts and stops a standalone Apache ZooKeeper (the Debian package) in a temp dir."""

import os
import socket
import subprocess
import time

ZK_CLASSPATH = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar"
SASL_USER = "golden"
SASL_PASSWORD = "golden-secret"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def four_letter_word(port, word, timeout_s=2.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(word.encode())
        out = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return out.decode(errors="replace")
            out += chunk


class ZooKeeper:
    """One server; `tickTime=500` so the minimum session timeout (1 s) makes pings come fast."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.port = free_port()
        os.makedirs(os.path.join(workdir, "data"), exist_ok=True)
        cfg = os.path.join(workdir, "zoo.cfg")
        with open(cfg, "w") as out:
            out.write(
                "tickTime=500\n"
                f"dataDir={workdir}/data\n"
                f"clientPort={self.port}\n"
                "clientPortAddress=127.0.0.1\n"
                "maxClientCnxns=0\n"
                "extendedTypesEnabled=true\n"
                "4lw.commands.whitelist=*\n"
                "admin.enableServer=false\n"
                "authProvider.sasl=org.apache.zookeeper.server.auth.SASLAuthenticationProvider\n"
            )
        jaas = os.path.join(workdir, "server_jaas.conf")
        with open(jaas, "w") as out:
            out.write(
                "Server {\n"
                "  org.apache.zookeeper.server.auth.DigestLoginModule required\n"
                f'  user_{SASL_USER}="{SASL_PASSWORD}";\n'
                "};\n"
            )
        self.log = open(os.path.join(workdir, "server.log"), "w")
        self.proc = subprocess.Popen(
            [
                "java",
                f"-Djava.security.auth.login.config={jaas}",
                "-cp",
                ZK_CLASSPATH,
                "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                cfg,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )

    def wait_ready(self, timeout_s=60.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ZooKeeper exited early; see {self.workdir}/server.log")
            try:
                if four_letter_word(self.port, "ruok") == "imok":
                    return
            except OSError:
                pass
            time.sleep(0.1)  # polling interval while waiting for the condition above
        raise TimeoutError("ZooKeeper did not answer ruok")

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()
