"""How long the ``quantkit`` command takes to answer when it needs no TensorFlow.

Target: ``quantkit --help`` and ``quantkit --version`` under 1 s (median wall time of fresh
processes, the console script as a user runs it); ``quantkit inspect`` of a small model is
listed beside them. Exits 1 when a targeted command misses.

    .venv/bin/python -m benchmarks.cli_startup [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from quantkit.ir import options as o
from quantkit.ir.graph import Graph, Op, Tensor
from quantkit.tflite_io import write_model
from quantkit.types import OpType

TARGET_S = 1.0


def _script() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "quantkit")
    return [script] if os.path.isfile(script) else [sys.executable, "-m", "quantkit.cli"]


def median_wall(argv: list[str], runs: int) -> float:
    """Median wall seconds of ``runs`` fresh processes, after one warm-up run."""
    times = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def _small_model(folder: str) -> str:
    """A float32 model quantkit writes from a hand-built graph (no TF needed)."""
    f32 = np.dtype(np.float32)
    x, y = Tensor("x", f32, (1, 8)), Tensor("y", f32, (1, 4))
    w = Tensor("w", f32, (4, 8), np.ones((4, 8), np.float32))
    graph = Graph([Op(OpType.FULLY_CONNECTED, [x, w, None], [y], o.FullyConnectedOptions())],
                  [x], [y], ["x"], ["y"])
    path = os.path.join(folder, "small.tflite")
    with open(path, "wb") as f:
        f.write(write_model([graph]))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    command = _script()
    with tempfile.TemporaryDirectory() as folder:
        rows = [(["--help"], True), (["--version"], True),
                (["inspect", _small_model(folder)], False)]
        print("| command | median wall (s) | target |\n| --- | ---: | --- |")
        missed = False
        for extra, targeted in rows:
            seconds = median_wall(command + extra, args.runs)
            missed |= targeted and seconds >= TARGET_S
            target = f"< {TARGET_S:g} s" if targeted else ""
            shown = " ".join(a if a.startswith("-") or a == "inspect" else "MODEL" for a in extra)
            print(f"| quantkit {shown} | {seconds:.2f} | {target} |")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
