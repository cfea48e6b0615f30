"""Which layer loses the accuracy: every quantized tensor, ranked by the error its op adds.

Two errors per quantized tensor, over the debug data:

* **added**: the op on its own. Its float inputs (the float model's, no error accumulated
  before it) are quantized with its input parameters and run through the quantized op alone;
  the reference is the float op on the same rounded inputs (the rounding of an input is the
  error of the op that produced it, counted there). What is left is this op's own: its
  weights' rounding and its output's grid.
* **accumulated**: the quantized model's tensor against the float model's, everything before
  it included.

Each is a *channel SQNR*, ``−10·log10(mean_c Σ e_c² / Σ r_c²)`` over the channels ``c`` of the
last axis that carry signal: a per-tensor SQNR hides a layer whose range is dominated by one
large channel (that channel holds the energy while every other one is rounded to zero), the
channel mean does not. The whole-tensor SQNR ``10·log10(Σ r² / Σ e²)`` is reported too. Lower
is worse; rows are sorted by the added channel SQNR, worst first.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Mapping

import numpy as np

from quantkit.debug import probe

# Channels whose signal energy is below this share of the largest channel's carry no signal
# (a ReLU channel that is always 0): their relative error would only be noise.
_SILENT = 1e-6


def layer_of(node: str) -> str:
    """The Keras layer (or TF name scope) of a TF node name: ``model/dense_1/MatMul`` →
    ``dense_1`` (a node without a scope is its own layer)."""
    parts = [p for p in node.split(";")[0].split("/") if p]
    if len(parts) < 2:
        return parts[0] if parts else node
    layer = parts[-2]
    # Keras traces a model again under `sequential_1/`, its layers as `dense_1`: the same
    # suffix on the enclosing scope and the layer's is Keras's, not the layer's name.
    model_suffix = re.search(r"_\d+$", parts[-3]) if len(parts) > 2 else None
    if model_suffix and layer.endswith(model_suffix.group()):
        layer = layer[:-len(model_suffix.group())]
    return layer


class ErrorSums:
    """Per-channel sums of squared errors and references, added and accumulated."""

    def __init__(self):
        self.sums: dict[str, list[np.ndarray]] = {}

    def _add(self, key: str, reference: np.ndarray, actual: np.ndarray) -> None:
        reference = np.asarray(reference, np.float64)
        error = np.asarray(actual, np.float64) - reference
        axes = tuple(range(reference.ndim - 1))
        pair = [(error ** 2).sum(axis=axes), (reference ** 2).sum(axis=axes)]
        if key in self.sums:
            pair = [a + b for a, b in zip(self.sums[key], pair)]
        self.sums[key] = pair

    def add(self, pair: probe.OpPair, floats: Mapping[str, np.ndarray],
            quants: Mapping[str, np.ndarray]) -> None:
        """One sample: the float and the quantized model's values by tensor name."""
        reference = floats[pair.float_output.name]
        self._add("accumulated", reference,
                  probe.dequantize(quants[pair.output.name], pair.output.quant))
        inputs = [floats[t.name] for t in probe.activation_inputs(pair.float)]
        rounded = [probe.dequantize(probe.quantize(x, t.quant, t.dtype), t.quant)
                   if t.quant is not None else x
                   for x, t in zip(inputs, probe.activation_inputs(pair.quantized))]
        self._add("added", pair.run_float(rounded), pair.run_quantized(inputs))

    def summary(self) -> dict[str, float]:
        out = {}
        for key in ("added", "accumulated"):
            noise, signal = self.sums[key]
            out[f"{key}_db"] = channel_sqnr(noise, signal)
            out[f"{key}_tensor_db"] = _db(signal.sum(), noise.sum())
        return out


def channel_sqnr(noise: np.ndarray, signal: np.ndarray) -> float:
    """``−10·log10(mean_c noise_c / signal_c)`` over channels with signal (see module doc)."""
    live = signal > _SILENT * max(float(signal.max(initial=0.0)), 1e-30)
    if not live.any():
        return _db(0.0, float(noise.sum())) if noise.sum() else math.inf
    ratio = float(np.mean(noise[live] / signal[live]))
    return math.inf if ratio == 0.0 else -10.0 * math.log10(ratio)


def _db(signal: float, noise: float) -> float:
    if noise == 0.0:
        return math.inf
    return -math.inf if signal == 0.0 else 10.0 * math.log10(signal / noise)


@dataclass(frozen=True)
class RankRow:
    """One quantized tensor: where it came from, its grid, and its errors (dB, lower worse)."""

    tensor: str  # the float model's name (a model output's integer tensor is `NAME/int8`)
    layer: str  # the Keras layer or TF name scope
    node: str  # the TF node the op came from
    op_type: str
    dtype: str
    scale: float
    zero_point: int
    range_min: float  # the grid's real range s·(qmin − z) .. s·(qmax − z)
    range_max: float
    added_db: float  # channel SQNR of the error this op adds on its own
    added_tensor_db: float
    accumulated_db: float  # channel SQNR against the float model, everything before included
    accumulated_tensor_db: float
    op_index: int = -1  # the op's position in the quantized graph (graph order)


class Ranking:
    """Rows, worst first by ``added_db``; ties keep graph order (deterministic)."""

    def __init__(self, rows: list[RankRow]):
        self.rows = sorted(rows, key=lambda r: r.added_db)

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]

    def to_csv(self, file: io.TextIOBase | None = None) -> str:
        """The rows as CSV (written to ``file`` too when given)."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, [f.name for f in fields(RankRow)])
        writer.writeheader()
        for row in self.rows:
            writer.writerow(asdict(row))
        if file is not None:
            file.write(buffer.getvalue())
        return buffer.getvalue()

    def to_json(self) -> str:
        """The rows as a JSON list (infinite SQNRs as the strings "inf" / "-inf")."""
        def clean(v):
            return str(v) if isinstance(v, float) and math.isinf(v) else v
        return json.dumps([{k: clean(v) for k, v in asdict(r).items()} for r in self.rows],
                          indent=1)

    def table(self, limit: int | None = 10) -> str:
        """The worst ``limit`` rows as a text table."""
        lines = [f"{'#':>3} {'added dB':>9} {'accum dB':>9} {'op':<17} {'dtype':<6} "
                 f"{'scale':>10} {'range':>21}  layer / tensor"]
        for n, r in enumerate(self.rows[:limit], 1):
            span = f"[{r.range_min:.3g}, {r.range_max:.3g}]"
            lines.append(f"{n:>3} {r.added_db:>9.1f} {r.accumulated_db:>9.1f} {r.op_type:<17} "
                         f"{r.dtype:<6} {r.scale:>10.3g} {span:>21}  {r.layer} / {r.tensor}")
        return "\n".join(lines)

    def plot(self, path: str | None = None, ax=None, title: str = "Error per quantized layer"):
        """A bar chart of the added and accumulated channel SQNR per tensor, worst first;
        saved to ``path`` when given. Returns the axes."""
        import matplotlib  # deferred: slow to import, only plots need it

        if ax is None:
            if path is not None:
                matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(self.rows)), 4))
        positions = np.arange(len(self.rows))
        finite = [_finite(r.added_db) for r in self.rows]
        ax.bar(positions - 0.2, finite, 0.4, label="added by the layer")
        ax.bar(positions + 0.2, [_finite(r.accumulated_db) for r in self.rows], 0.4,
               label="accumulated up to it")
        ax.set_xticks(positions, [f"{r.layer}\n{r.op_type}" for r in self.rows], fontsize=7,
                      rotation=45, ha="right")
        ax.set_ylabel("channel SQNR (dB), lower is worse")
        ax.set_title(title)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend()
        if path is not None:
            ax.figure.tight_layout()
            ax.figure.savefig(path, dpi=100)
        return ax


def _finite(db: float, cap: float = 100.0) -> float:
    return max(-cap, min(cap, db))
