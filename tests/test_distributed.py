"""`tunas_jax.distributed.primary_first` in two real processes (loopback coordinator):
the others get process 0's result after it, and its error at once instead of waiting
out the barrier."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = textwrap.dedent("""
    import json, os, sys
    import jax
    from tunas_jax import distributed
    from tunas_jax.errors import PrimaryFailedError, UsageError

    port, pid, workdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    distributed.initialize(f"127.0.0.1:{port}", 2, pid)
    marker = os.path.join(workdir, "built.txt")

    def build():  # process 0 writes; the others read what it wrote
        if pid == 0:
            with open(marker, "w") as f:
                f.write("built by 0")
        with open(marker) as f:
            return f.read()

    print(json.dumps({"built": distributed.primary_first("build", build, workdir)}))
    def fail():
        if pid == 0:
            raise UsageError("config.thing: bad; set it right")
        return "process 1 must not get here"
    try:
        distributed.primary_first("fail", fail, workdir)
    except (PrimaryFailedError, UsageError) as err:
        print(json.dumps({"error": type(err).__name__, "message": str(err)}), flush=True)
        sys.exit(0)
    print(json.dumps({"error": None}))
""")


def test_primary_first_shares_results_and_process_0s_error(tmp_path):
    import json

    script = tmp_path / "two.py"
    script.write_text(SCRIPT)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    runs = [subprocess.Popen([sys.executable, str(script), str(port), str(i), str(tmp_path)],
                             env=env, cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for i in range(2)]
    # Well under distributed.BARRIER_TIMEOUT_S (an hour): process 1 learns of the error
    # at the barrier, not by timing out.
    outs = [run.communicate(timeout=120) for run in runs]
    for run, (_, err) in zip(runs, outs, strict=True):
        assert run.returncode == 0, err[-3000:]
    lines = [[json.loads(x) for x in out.splitlines() if x.startswith("{")] for out, _ in outs]
    assert lines[0][0] == lines[1][0] == {"built": "built by 0"}
    assert lines[0][1] == {"error": "UsageError", "message": "config.thing: bad; set it right"}
    assert lines[1][1]["error"] == "PrimaryFailedError"
    assert "process 0 failed at 'fail'" in lines[1][1]["message"]
    assert "UsageError: config.thing: bad; set it right" in lines[1][1]["message"]
