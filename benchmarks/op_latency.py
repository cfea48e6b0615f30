"""Where two .tflite models' LiteRT latencies differ: each op timed on its own, side by side.

    .venv/bin/python -m benchmarks.op_latency A.tflite B.tflite [--invokes 300] [--threads 1]

Each op of subgraph 0 is cut into a model of its own (its constant inputs kept, the others
made model inputs, fed random values), and A's and B's ops are timed in turn, invoke by
invoke, in op order. The two op lists are aligned where they have the same op types (a
longest-common-subsequence match), so an op one model has and the other lacks shows on its
own line. This found the 0.10 ms broadcast ADD that made quantkit's int8 MobileNetV3Small
1.15–1.2× slower than TF's (README, "LiteRT latency"). Ops LiteRT cannot run on their own
(a RESHAPE whose shape is computed) are reported as such.
"""

from __future__ import annotations

import argparse
import difflib
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import flatbuffers  # noqa: E402
import numpy as np  # noqa: E402
from ai_edge_litert import schema_py_generated as schema  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


class Cutter:
    """A model's ops, each as a single-op model."""

    def __init__(self, path: str):
        with open(path, "rb") as f:
            self.model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(f.read(), 0))
        self.graph = self.model.subgraphs[0]
        self.constants = {i for i, t in enumerate(self.graph.tensors)
                          if t.buffer and self.model.buffers[t.buffer].data is not None
                          and len(self.model.buffers[t.buffer].data)}

    def op_types(self) -> list[str]:
        codes = self.model.operatorCodes
        return [OP_NAMES.get(max(codes[op.opcodeIndex].builtinCode,
                                 codes[op.opcodeIndex].deprecatedBuiltinCode), "?")
                for op in self.graph.operators]

    def single(self, index: int) -> bytes:
        """Op ``index`` alone: non-constant inputs become model inputs, its outputs outputs."""
        g, op = self.graph, self.graph.operators[index]
        saved = (g.operators, g.inputs, g.outputs, self.model.signatureDefs)
        g.operators = [op]
        g.inputs = np.array([i for i in op.inputs if i >= 0 and i not in self.constants],
                            np.int32)
        g.outputs = np.array(op.outputs, np.int32)
        self.model.signatureDefs = []
        try:
            builder = flatbuffers.Builder(1 << 20)
            builder.Finish(self.model.Pack(builder), b"TFL3")
            return bytes(builder.Output())
        finally:
            g.operators, g.inputs, g.outputs, self.model.signatureDefs = saved


def _interpreter(blob: bytes, threads: int) -> Interpreter:
    interpreter = Interpreter(model_content=blob, num_threads=threads)
    interpreter.allocate_tensors()
    rng = np.random.default_rng(0)
    for d in interpreter.get_input_details():
        dtype = np.dtype(d["dtype"])
        value = (rng.integers(-100, 100, d["shape"]) if np.issubdtype(dtype, np.integer)
                 else rng.normal(size=d["shape"]))
        interpreter.set_tensor(d["index"], value.astype(dtype))
    for _ in range(3):
        interpreter.invoke()
    return interpreter


def time_ops(blobs: list[bytes | None], invokes: int, threads: int) -> list[float | None]:
    """Median µs per invoke of each single-op model, taking turns; None where it cannot run."""
    interpreters: list[Interpreter | None] = []
    for blob in blobs:
        try:
            interpreters.append(None if blob is None else _interpreter(blob, threads))
        except (RuntimeError, ValueError):
            interpreters.append(None)
    times: list[list[float]] = [[] for _ in blobs]
    for _ in range(invokes):
        for interpreter, spent in zip(interpreters, times):
            if interpreter is not None:
                start = time.perf_counter()
                interpreter.invoke()
                spent.append(time.perf_counter() - start)
    return [1e6 * statistics.median(t) if t else None for t in times]


def _us(value: float | None) -> str:
    return f"{value:9.1f}" if value is not None else "        —"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="a .tflite")
    parser.add_argument("b", help="the .tflite compared with it")
    parser.add_argument("--invokes", type=int, default=300, help="per op (default 300)")
    parser.add_argument("--threads", type=int, default=1, help="LiteRT threads (default 1)")
    args = parser.parse_args(argv)
    a, b = Cutter(args.a), Cutter(args.b)
    types_a, types_b = a.op_types(), b.op_types()
    pairs: list[tuple[int | None, int | None]] = []
    matcher = difflib.SequenceMatcher(a=types_a, b=types_b, autojunk=False)
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal":
            pairs += list(zip(range(a0, a1), range(b0, b1)))
        else:
            pairs += [(i, None) for i in range(a0, a1)] + [(None, j) for j in range(b0, b1)]
    totals = [0.0, 0.0]
    print(f"{'A#':>4} {'B#':>4}  {'op':<20} {'A µs':>9} {'B µs':>9}  B/A")
    for i, j in pairs:
        us = time_ops([None if i is None else a.single(i), None if j is None else b.single(j)],
                      args.invokes, args.threads)
        totals = [t + (u or 0.0) for t, u in zip(totals, us)]
        ratio = f"{us[1] / us[0]:5.2f}" if None not in us and us[0] > 0 else ""
        name = types_a[i] if i is not None else types_b[j]
        print(f"{'' if i is None else i:>4} {'' if j is None else j:>4}  {name:<20} "
              f"{_us(us[0])} {_us(us[1])}  {ratio}")
    print(f"sum of ops: A {totals[0] / 1e3:.3f} ms, B {totals[1] / 1e3:.3f} ms")


if __name__ == "__main__":
    main()
