"""An OSS Vizier server in its own process, started and stopped by the study.

Vizier's servicer imports jax and turns on `jax_enable_x64` globally, so it
never runs in a training process: `VizierServerProcess(database_url)` starts

    python -m controllers.vizier_server --database_url URL --ready_file F

in a child process on loopback. The child serves `vizier.service`'s
`DefaultVizierServer` (its SQL datastore at any SQLAlchemy URL, e.g.
`sqlite:///W/vizier.db`) with `controllers.vizier_designers.TunasPolicyFactory`
(Vizier's algorithms plus the designers registered there, and in the
`--designer_module`s it imports first), writes its endpoint and the
algorithms it serves to the ready file (JSON, atomically), and exits when it
is sent SIGTERM or when its parent dies (a SIGKILLed study leaves no server holding the database).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from search_spaces import SpecError

READY_TIMEOUT_S = 120.0


class VizierServerProcess:
    """A Vizier server child process on 127.0.0.1; `.endpoint` is its 'HOST:PORT'."""

    def __init__(self, database_url: str, log_path: str | None = None,
                 designer_modules: tuple[str, ...] = ()) -> None:
        self.database_url = database_url
        # Endpoint file beside the log (a stale one from a killed study is replaced), or
        # both in a temporary folder when no log path is given.
        self._folder = None if log_path else tempfile.mkdtemp(prefix="tunas_vizier_")
        log_path = log_path or os.path.join(self._folder, "server.log")
        self._ready = log_path + ".endpoint"
        if os.path.exists(self._ready):
            os.remove(self._ready)
        self._log = open(log_path, "ab")  # noqa: SIM115  (the child writes it until stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controllers.vizier_server", "--database_url", database_url,
             "--ready_file", self._ready, *(f"--designer_module={m}" for m in designer_modules)],
            stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": _repo_path()})
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not os.path.exists(self._ready):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop(keep_log=True)
                raise SpecError(f"vizier server: did not start (exit {self.proc.returncode}) "
                                f"for database_url {database_url!r}; see {self._log.name}")
            time.sleep(0.1)
        with open(self._ready) as f:
            ready = json.load(f)
        self.endpoint: str = ready["endpoint"]
        self.algorithms: tuple[str, ...] = tuple(ready["algorithms"])  # the ones it serves

    def stop(self, keep_log: bool = False) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); remove its temporary files."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        if self._folder is None:
            if os.path.exists(self._ready):
                os.remove(self._ready)
        elif not keep_log:  # a failed start's log stays, for the error to point at
            shutil.rmtree(self._folder, ignore_errors=True)


def _repo_path() -> str:
    """This checkout first on the child's path (controllers/ must import as here)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rest = os.environ.get("PYTHONPATH", "")
    return root + (os.pathsep + rest if rest else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database_url", required=True)
    parser.add_argument("--ready_file", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--designer_module", action="append", default=[],
                        help="a module to import first (it registers designers by name)")
    args = parser.parse_args(argv)
    from vizier.service import servers

    from controllers.vizier_designers import DESIGNERS, TunasPolicyFactory
    from controllers.vizier_strategy import VIZIER_ALGORITHMS

    for module in args.designer_module:
        importlib.import_module(module)

    parent = os.getppid()
    server = servers.DefaultVizierServer(host=args.host, database_url=args.database_url,
                                         policy_factory=TunasPolicyFactory())
    tmp = args.ready_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"endpoint": server.endpoint,
                   "algorithms": [*VIZIER_ALGORITHMS, *sorted(DESIGNERS)]}, f)
    os.replace(tmp, args.ready_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(0.5):
        if os.getppid() != parent:  # the study was killed: do not outlive it
            break
    server._server.stop(grace=1.0)  # DefaultVizierServer has no public stop
    return 0


if __name__ == "__main__":
    sys.exit(main())
