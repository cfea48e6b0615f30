"""``quantkit compare A.tflite B.tflite --data DATA``: B against A (the reference) on the same
samples, in LiteRT: per output SQNR and top-1 agreement, sizes, median latency.

Integer model inputs are quantized with the model's own parameters and integer outputs
dequantized, so a float model and its quantized version compare directly.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

from quantkit.cli._data import (DATA_SYNTAX, CliError, ModelInput, make_source, one_line,
                               parse_fraction)
from quantkit.cli.convert import add_data_options

DEFAULT_SAMPLES = 100


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "compare", help="SQNR, top-1 agreement, size and latency of B against A",
        description="Run two TFLite models on the same data; B is compared with A.")
    p.add_argument("reference", metavar="A", help="the reference .tflite (e.g. float32)")
    p.add_argument("candidate", metavar="B", help="the .tflite compared with it")
    p.add_argument("--data", required=True, metavar="DATA", help=f"the inputs: {DATA_SYNTAX}")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                   help=f"at most N samples (default {DEFAULT_SAMPLES})")
    p.add_argument("--threads", type=int, default=1,
                   help="LiteRT threads for both models (default 1)")
    add_data_options(p)
    p.set_defaults(run=run)


class Runner:
    """One model in a LiteRT interpreter, run one sample at a time."""

    def __init__(self, path: str, threads: int):
        from ai_edge_litert.interpreter import Interpreter

        from quantkit._tf_import import native_banners_filtered
        from quantkit.cli.inspect import read

        self.path = path
        self.data, info = read(path)  # a clear error for a missing or corrupt file
        try:
            with native_banners_filtered():  # LiteRT announces its XNNPACK delegate
                self.interpreter = Interpreter(model_content=self.data, num_threads=threads)
                self.interpreter.allocate_tensors()
            self.inputs = self.interpreter.get_input_details()
            self.outputs = self.interpreter.get_output_details()
        except Exception as e:
            raise CliError(f"{path}: LiteRT cannot load it ({one_line(e)[:200]})") from None
        sig = info.signatures[0] if info.signatures else None
        self.input_names = _names(self.inputs, sig.inputs if sig else {})
        self.output_names = _names(self.outputs, sig.outputs if sig else {})

    def model_inputs(self) -> list[ModelInput]:
        """The inputs as float data sources see them (integer IO is quantized here)."""
        result = []
        for name, d in zip(self.input_names, self.inputs):
            shape = tuple(None if s < 0 else int(s) for s in d["shape_signature"])
            dtype = np.dtype(d["dtype"])
            float_fed = np.issubdtype(dtype, np.integer) and d["quantization"][0] != 0.0
            result.append(ModelInput(name, shape, np.dtype(np.float32) if float_fed else dtype))
        return result

    def __call__(self, sample: Any) -> tuple[list[np.ndarray], float]:
        from quantkit.litert import dequantize_output, quantize_input

        values = [sample[n] for n in self.input_names] if isinstance(sample, dict) else sample
        try:
            for d, x in zip(self.inputs, values):
                x = np.asarray(x)
                if tuple(d["shape"]) != x.shape:
                    self.interpreter.resize_tensor_input(d["index"], list(x.shape))
                    self.interpreter.allocate_tensors()
                self.interpreter.set_tensor(d["index"], quantize_input(x, d))
            start = time.perf_counter()
            self.interpreter.invoke()
            seconds = time.perf_counter() - start
            return [dequantize_output(self.interpreter.get_tensor(d["index"]), d)
                    for d in self.outputs], seconds
        except Exception as e:  # a model LiteRT loads but cannot run, or data it refuses
            raise CliError(f"{self.path}: LiteRT cannot run it ({one_line(e)[:200]})") from None


def _names(details: list[dict], by_name: dict[str, int]) -> list[str]:
    """Each tensor's signature name (``by_name``: name → tensor index), else its own name."""
    by_index = {index: name for name, index in by_name.items()}
    return [by_index.get(d["index"], d["name"]) for d in details]


def _check_compatible(a: Runner, b: Runner) -> None:
    ia, ib = a.model_inputs(), b.model_inputs()
    if len(ia) != len(ib):
        raise CliError(f"{a.path} has {len(ia)} input(s), {b.path} has {len(ib)}")
    for n, (x, y) in enumerate(zip(ia, ib)):
        if x.shape != y.shape:
            raise CliError(f"input {n}: {a.path} takes shape {x.describe()}, {b.path} takes "
                           f"{y.describe()}")
    if len(a.outputs) != len(b.outputs):
        raise CliError(f"{a.path} has {len(a.outputs)} output(s), {b.path} has "
                       f"{len(b.outputs)}")


def run(args: argparse.Namespace) -> int:
    from quantkit.metrics import sqnr_db, top1_agreement

    if args.threads < 1:
        raise CliError(f"--threads {args.threads}: must be at least 1")
    a, b = Runner(args.reference, args.threads), Runner(args.candidate, args.threads)
    _check_compatible(a, b)
    source = make_source(args.data, a.model_inputs(), samples=args.samples,
                         scale=parse_fraction(args.scale), tfds_data_dir=args.tfds_data_dir,
                         tfds_key=args.tfds_key)
    outputs: dict[str, list[list[np.ndarray]]] = {"a": [], "b": []}
    times: dict[str, list[float]] = {"a": [], "b": []}
    for n, sample in enumerate(source()):
        for key, runner in (("a", a), ("b", b)):
            if n == 0:
                runner(sample)  # warm-up: the first invoke prepares the kernels
            result, seconds = runner(sample)
            outputs[key].append(result)
            times[key].append(seconds)
    count = len(outputs["a"])
    print(f"A = {a.path}\nB = {b.path}\n{count} samples from {args.data}, "
          f"{args.threads} thread(s)\n")
    for i, name in enumerate(a.output_names):
        ref = np.concatenate([r[i] for r in outputs["a"]])
        got = np.concatenate([r[i] for r in outputs["b"]])
        if ref.shape != got.shape:
            raise CliError(f"output {name!r}: A gives shape {ref.shape[1:]}, B {got.shape[1:]}")
        line = f"output {name!r} {tuple(ref.shape[1:])}: SQNR {sqnr_db(ref, got):.2f} dB"
        if ref.ndim == 2 and ref.shape[1] > 1:
            line += f", top-1 agreement {100 * top1_agreement(ref, got):.1f} %"
        print(line)
    size_a, size_b = len(a.data), len(b.data)
    print(f"size: A {size_a:,} bytes, B {size_b:,} bytes (B/A {size_b / size_a:.3f})")
    lat_a, lat_b = (1e3 * statistics.median(times[k]) for k in ("a", "b"))
    print(f"median latency per sample: A {lat_a:.3f} ms, B {lat_b:.3f} ms "
          f"(B/A {lat_b / max(lat_a, 1e-9):.2f})")
    return 0

