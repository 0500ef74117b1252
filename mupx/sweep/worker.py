"""A warm worker: one process that runs a sweep's runs one after another, each through the same
``mupx.cli.main(["train", ...])`` a fresh ``mupx train`` process would run, so a run costs its training
and not the ~3 s of starting Python, importing torch and building the config machinery.

Protocol (``python -m mupx.sweep.worker``): one JSON object per line on stdin, ``{"argv": [...], "log":
path}``; the run's stdout and stderr (file descriptors 1 and 2, so C-level output too) go to ``log``; when
it ends, one line ``{"code": exit status}`` on the worker's original stdout. End of input ends the worker.
Every run seeds its own generators from its config (``Trainer.build``), so a run's result does not depend
on what the worker ran before (tests/test_sweep.py checks it bit for bit against a fresh process).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path


def run_logged(argv: list[str], log: Path) -> int:
    """``mupx.cli.main(argv)`` with file descriptors 1 and 2 sent to ``log``; its exit status."""
    from ..cli import main

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "w") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            main(argv)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:  # a crash ends this run, not the worker: the log keeps the traceback
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
    return code


def serve() -> None:
    replies = os.fdopen(os.dup(1), "w")  # the protocol channel, kept apart from the runs' output
    for line in sys.stdin:
        task = json.loads(line)
        code = run_logged(task["argv"], Path(task["log"]))
        replies.write(json.dumps({"code": code}) + "\n")
        replies.flush()


if __name__ == "__main__":
    try:
        serve()
    except KeyboardInterrupt:  # Ctrl-C between runs (a run in progress handles it itself)
        sys.exit(130)
