"""What the benchmark scripts share: running a mupx command as a user would, naming the command line and the
machine a result came from, and writing generated sections of Markdown files.

A generated section sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``; a benchmark replaces
its own section (README.md's headline or RESULTS.md's tables) and leaves the rest of the file as it was,
so no number in either file is typed by hand.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys

import torch

from mupx.io import atomic_write_text


def mupx(*args: str) -> None:
    """Run ``mupx ARGS`` in a subprocess, echoed first; a failure ends the benchmark with its exit code."""
    print(f"\n$ mupx {shlex.join(args)}", flush=True)
    code = subprocess.run([sys.executable, "-m", "mupx.cli", *args]).returncode
    if code != 0:
        sys.exit(f"mupx {args[0]} exited {code}")


def command_line() -> str:
    """The command this benchmark was started with, as a user would retype it."""
    return shlex.join([os.path.relpath(sys.executable), *sys.argv])


def replace_section(path, name: str, text: str, default_head: str = "") -> None:
    """Put ``text`` between NAME's markers in ``path`` (appending the section when absent), atomically."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    old = path.read_text() if path.exists() else default_head
    section = f"{start}\n{text.rstrip()}\n{end}"
    if start in old and end in old:
        head, rest = old.split(start, 1)
        new = head + section + rest.split(end, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + section + "\n"
    atomic_write_text(path, new)


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def machine() -> str:
    """One line naming the machine: CPU count and torch, and the GPU when there is one."""
    cpu = f"{platform.processor() or platform.machine()}, os.cpu_count() = {os.cpu_count()}"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, torch {torch.__version__}, {gpu}"
