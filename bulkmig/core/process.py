"""How a bulkmig process ends: Python's own shutdown, then an exit that skips native teardown.

pyarrow's C++ thread pools can abort the interpreter's final teardown ("terminate called without an active
exception", exit -6 or 134) after every byte of the work is done and durable: a still-joinable ``std::thread``
destroyed while the runtime unwinds.  It is an Arrow bug (apache/arrow#34314), rare (2 of 400 runs of a
script that only reads a Parquet table in a thread, on this project's CI machine) and it turns a successful
stage into a failed one that an operator, a supervisor or a retry loop then acts on.

So the command-line entry points do the shutdown that matters to Python code — join the non-daemon threads
(``concurrent.futures`` pools finish their work items), run the ``atexit`` handlers (temp directories,
logging, child servers of the demo), flush stdout and stderr — and then leave with :func:`os._exit`, which
skips the C++ static destructors where the abort happens.  Nothing bulkmig writes depends on them: every
durable state is fsynced and renamed before a stage returns.  Library callers (tests, an embedding program)
call :func:`bulkmig.cli.main` and keep the normal interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import NoReturn


def exit_process(code: int) -> NoReturn:
    """Exit with ``code`` after Python's shutdown work, without the native teardown (see the module)."""
    try:
        threading._shutdown()  # type: ignore[attr-defined]  # what Py_Finalize does first: join the threads
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            # a closed pipe (``bulkmig status | head``) or a closed stream: nothing more can be said
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)
