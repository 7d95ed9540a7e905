"""``bulkmig.core.process.exit_process``: the command line's exit skips native teardown, not Python's.

The abort it avoids (pyarrow's thread pools at interpreter teardown) is rare — 2 in 400 runs of a script that
reads one Parquet table in a thread — so no test here waits for it; these check that what Python code relies on
at exit still happens: threads finish, ``atexit`` handlers run, buffered output reaches a pipe, the code is kept.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import atexit, sys, threading, time
from pathlib import Path
from bulkmig.core.process import exit_process

out = Path(sys.argv[1])
def late() -> None:
    time.sleep(0.3)
    out.write_text("thread finished")
threading.Thread(target=late).start()  # not a daemon: a normal exit waits for it, so must this one
atexit.register(lambda: print("atexit ran"))
print("buffered", end="")  # no newline: still in the buffer of a pipe
exit_process(int(sys.argv[2]))
"""


def _run(tmp_path: Path, code: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "out"), str(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_threads_finish_atexit_runs_output_is_flushed_and_the_code_is_kept(tmp_path: Path) -> None:
    run = _run(tmp_path, 3)
    assert run.returncode == 3, run.stderr
    assert run.stdout == "bufferedatexit ran\n"
    assert (tmp_path / "out").read_text() == "thread finished"


def test_success_is_zero(tmp_path: Path) -> None:
    assert _run(tmp_path, 0).returncode == 0


def test_the_console_entry_points_exit_through_it() -> None:
    """``python -m bulkmig`` and the ``bulkmig`` script both go through ``cli.run``; a usage error still exits 2."""
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="bulkmig")
    assert script.value == "bulkmig.cli:run"
    run = subprocess.run([sys.executable, "-m", "bulkmig", "--version"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.startswith("bulkmig "), run
    run = subprocess.run([sys.executable, "-m", "bulkmig", "no-such-step"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "invalid choice" in run.stderr, run
