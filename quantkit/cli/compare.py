"""``quantkit compare A.tflite B.tflite --data DATA``: B against A (the reference) on the same
samples, in LiteRT: per output SQNR and top-1 agreement, sizes, median latency, and with
``--labels`` each model's accuracy; ``--json`` prints the same as JSON.

Integer model inputs are quantized with the model's own parameters and integer outputs
dequantized, so a float model and its quantized version compare directly.
"""

from __future__ import annotations

import argparse
import json
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
    p.add_argument("--labels", metavar="LABELS",
                   help="class index per sample (.npy, .npz, .txt or .csv): each model's "
                        "accuracy (arg-max of its first output)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_data_options(p)
    p.set_defaults(run=run)


class Runner:
    """One model in a LiteRT interpreter (``quantkit.litert.Runner``), run one sample at a
    time and timed."""

    def __init__(self, path: str, threads: int):
        from quantkit import litert
        from quantkit._tf_import import native_banners_filtered
        from quantkit.cli.inspect import read

        self.path = path
        self.data, _ = read(path)  # a clear error for a missing or corrupt file
        try:
            with native_banners_filtered():  # LiteRT announces its XNNPACK delegate
                self.model = litert.Runner(self.data, threads)
        except Exception as e:
            raise CliError(f"{path}: LiteRT cannot load it ({one_line(e)[:200]})") from None
        self.inputs, self.outputs = self.model.inputs, self.model.outputs
        self.input_names, self.output_names = self.model.input_names, self.model.output_names

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
        from quantkit.litert import dequantize_output

        values = [sample[n] for n in self.input_names] if isinstance(sample, dict) else sample
        try:
            self.model.feed(values)
            self.model.interpreter.reset_all_variables()  # a fused RNN starts from zeros
            start = time.perf_counter()
            self.model.interpreter.invoke()
            seconds = time.perf_counter() - start
            return [dequantize_output(self.model.interpreter.get_tensor(d["index"]), d)
                    for d in self.outputs], seconds
        except Exception as e:  # a model LiteRT loads but cannot run, or data it refuses
            raise CliError(f"{self.path}: LiteRT cannot run it ({one_line(e)[:200]})") from None


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


def _measure(args: argparse.Namespace, a: Runner,
             b: Runner) -> tuple[int, dict[str, list[np.ndarray]], dict[str, float]]:
    """(samples, each model's outputs concatenated, each model's median ms per sample)."""
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
    joined = {k: [np.concatenate(parts) for parts in zip(*v)] for k, v in outputs.items()}
    return (len(outputs["a"]), joined,
            {k: 1e3 * statistics.median(v) for k, v in times.items()})


def _finite(value: float) -> float | str:
    return value if np.isfinite(value) else "inf"  # JSON has no Infinity


def summary(args: argparse.Namespace, a: Runner, b: Runner) -> dict[str, Any]:
    """What ``compare`` reports, as plain data (``--json`` prints it as it is)."""
    from quantkit.bench.data import load_labels
    from quantkit.metrics import accuracy, sqnr_db, top1_agreement

    count, outputs, latency = _measure(args, a, b)
    labels = None
    if args.labels:
        try:
            labels = load_labels(args.labels, count, truncated=True)
        except ValueError as e:
            raise CliError(str(e)) from None
    result: dict[str, Any] = {"samples": count, "data": args.data, "threads": args.threads,
                              "outputs": []}
    for i, name in enumerate(a.output_names):
        ref, got = outputs["a"][i], outputs["b"][i]
        if ref.shape != got.shape:
            raise CliError(f"output {name!r}: A gives shape {ref.shape[1:]}, B {got.shape[1:]}")
        classes = ref.ndim == 2 and ref.shape[1] > 1
        result["outputs"].append({
            "name": name, "shape": list(ref.shape[1:]), "sqnr_db": _finite(sqnr_db(ref, got)),
            "top1_agreement": top1_agreement(ref, got) if classes else None})
    for key, runner in (("a", a), ("b", b)):
        result[key] = {"path": runner.path, "size_bytes": len(runner.data),
                       "latency_ms": latency[key],
                       "accuracy": None if labels is None else accuracy(outputs[key][0], labels)}
    return result


def render(s: dict[str, Any]) -> str:
    a, b = s["a"], s["b"]
    lines = [f"A = {a['path']}", f"B = {b['path']}",
             f"{s['samples']} samples from {s['data']}, {s['threads']} thread(s)", ""]
    for out in s["outputs"]:
        sqnr = out["sqnr_db"]
        line = (f"output {out['name']!r} {tuple(out['shape'])}: SQNR "
                f"{sqnr if isinstance(sqnr, str) else format(sqnr, '.2f')} dB")
        if out["top1_agreement"] is not None:
            line += f", top-1 agreement {100 * out['top1_agreement']:.1f} %"
        lines.append(line)
    if a["accuracy"] is not None:
        lines.append(f"accuracy ({s['samples']} labels): A {a['accuracy']:.4f}, B "
                     f"{b['accuracy']:.4f} (B − A {100 * (b['accuracy'] - a['accuracy']):+.2f} "
                     f"points)")
    lines.append(f"size: A {a['size_bytes']:,} bytes, B {b['size_bytes']:,} bytes "
                 f"(B/A {b['size_bytes'] / a['size_bytes']:.3f})")
    ratio = b["latency_ms"] / max(a["latency_ms"], 1e-9)
    lines.append(f"median latency per sample: A {a['latency_ms']:.3f} ms, B "
                 f"{b['latency_ms']:.3f} ms (B/A {ratio:.2f})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.threads < 1:
        raise CliError(f"--threads {args.threads}: must be at least 1")
    a, b = Runner(args.reference, args.threads), Runner(args.candidate, args.threads)
    _check_compatible(a, b)
    s = summary(args, a, b)
    print(json.dumps(s, indent=1) if args.json else render(s))
    return 0
