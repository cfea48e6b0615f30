"""Writes that are killed leave nothing behind: a child process is SIGKILLed in the middle of
writing a model (``quantkit convert``, or ``write_atomically`` on its own for each route) and
the output folder is checked, then once more after the next write into it.

No model runs here (only files are written), so the mutation plugin has nothing to perturb.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import keras
import pytest

from quantkit import fileio

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")

# Child preamble: the named step announces itself on stdout, then hangs until killed.
_STALL = """
import os, sys, time
from quantkit import fileio

def stall(marker):
    print(marker, flush=True)
    time.sleep(600)

def slow_write(fd, data, mode):
    os.write(fd, data[:len(data) // 2])
    stall("WRITING")
"""


def _spawn(script: str, *args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _STALL + script, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(child: subprocess.Popen, marker: str, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([child.stdout], [], [], 1.0)
        if ready:
            line = child.stdout.readline()
            if line.strip() == marker:
                return
            if not line and child.poll() is not None:
                break
    child.kill()
    raise AssertionError(f"child never printed {marker}: {child.stderr.read()[-2000:]}")


def _kill(child: subprocess.Popen) -> None:
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    child.stdout.close()
    child.stderr.close()


def _names(folder) -> list[str]:
    return sorted(os.listdir(folder))


def test_convert_killed_while_writing_leaves_nothing(tmp_path):
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    model.save(tmp_path / "model.keras")
    out = tmp_path / "model_float32.tflite"
    child = _spawn("fileio._write_all = slow_write\n"
                   "from quantkit.cli import main\n"
                   "main(sys.argv[1:])\n",
                   "convert", tmp_path / "model.keras", "--mode", "float32", "-o", out)
    _wait_for(child, "WRITING")
    assert _names(tmp_path) == ["model.keras"]  # half the model is written, nowhere to be seen
    _kill(child)
    assert _names(tmp_path) == ["model.keras"]


def test_replacing_killed_between_link_and_rename_is_cleaned_by_the_next_write(tmp_path):
    """O_TMPFILE route over an existing file: the complete new file has a temporary name for a
    moment; killed then, the old file stays, and the next write removes the leftover (not
    while its writer lives: it holds the lock)."""
    target = tmp_path / "model.tflite"
    target.write_bytes(b"old")
    child = _spawn("os.replace = lambda *args, **kwargs: stall('LINKED')\n"
                   "fileio.write_atomically(sys.argv[1], b'new' * 1000)\n", target)
    _wait_for(child, "LINKED")
    [part] = [n for n in _names(tmp_path) if n != "model.tflite"]
    assert part.startswith(".model.tflite.") and part.endswith(fileio.PART_SUFFIX)
    assert fileio.remove_stale_parts(tmp_path) == []  # its writer is alive
    _kill(child)
    assert target.read_bytes() == b"old" and _names(tmp_path) == sorted(["model.tflite", part])
    fileio.write_atomically(tmp_path / "other.tflite", b"next")
    assert _names(tmp_path) == ["model.tflite", "other.tflite"]


def test_named_route_killed_while_writing_is_cleaned_by_the_next_write(tmp_path):
    """Where O_TMPFILE is missing, the file is written under a temporary name from the start:
    killed, it stays until the next write into the folder."""
    target = tmp_path / "model.tflite"
    child = _spawn("fileio._write_unnamed = lambda *args: False\n"
                   "fileio._write_all = slow_write\n"
                   "fileio.write_atomically(sys.argv[1], b'x' * 4096)\n", target)
    _wait_for(child, "WRITING")
    [part] = _names(tmp_path)
    assert part.endswith(fileio.PART_SUFFIX)
    _kill(child)
    assert _names(tmp_path) == [part]
    fileio.write_atomically(target, b"whole")
    assert _names(tmp_path) == ["model.tflite"] and target.read_bytes() == b"whole"
