"""The benchmark harness's outputs: ``results.json``, ``results.md`` (a Markdown table) and
``accuracy_vs_size.png`` (matplotlib, one panel per model), from a ``harness.Result``.

    .venv/bin/python -m benchmarks.report benchmarks/results/results.json   # re-render only
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchmarks.harness import Result, Row

JSON_NAME = "results.json"
MARKDOWN_NAME = "results.md"
PLOT_NAME = "accuracy_vs_size.png"
MARKERS = {"quantkit": ("o", "tab:blue"), "tf.lite": ("x", "tab:red")}


def _fmt(value: float | None, spec: str, missing: str = "—") -> str:
    return missing if value is None else format(value, spec)


def _ms(value: float | None, missing: str = "—") -> str:
    if value is None:
        return missing
    return f"{value:.4f}" if value < 1 else f"{value:.3g}" if value < 100 else f"{value:.0f}"


def _label_groups(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Points at (almost) the same place share one label: "int8, uint8_io"."""
    groups: list[list[tuple[float, float, str]]] = []
    for x, y, mode in sorted(points, key=lambda p: (p[1], p[0])):
        first = groups[-1][0] if groups else None
        if first and x / first[0] < 1.06 and abs(y - first[1]) < 1e-9:
            groups[-1].append((x, y, mode))
        else:
            groups.append([(x, y, mode)])
    return [(g[0][0], g[0][1], ", ".join(p[2] for p in g)) for g in groups]


def progress_line(row: Row) -> str:
    """One line per measured row, printed as the harness goes."""
    head = f"{row.mode:<16} {row.converter:<9}"
    if row.size_bytes is None:
        return f"{head} FAILED {row.error}"
    text = (f"{head} {row.size_bytes / 1024:9.1f} KB  {row.op_count:4d} ops  "
            f"acc {_fmt(row.accuracy, '.4f'):>6}  SQNR {_fmt(row.sqnr_db, '6.2f'):>6} dB  "
            f"top-1 {_fmt(row.top1_agreement, '.3f'):>5}  convert {row.convert_s:6.2f} s  "
            f"peak +{row.peak_mem_mb:.1f} MB  latency {_ms(row.latency_ms)} ms")
    return text + (f"  [{row.error}]" if row.error else "")


def to_json(result: Result) -> dict:
    def clean(value):  # JSON has no NaN/Infinity: an infinite SQNR (equal outputs) is "inf"
        if isinstance(value, float) and not math.isfinite(value):
            return "inf" if value > 0 else None
        return value

    return {
        "command": result.command,
        "machine": result.machine,
        "settings": dataclasses.asdict(result.settings),
        "models": [dataclasses.asdict(m) for m in result.models],
        "rows": [{k: clean(v) for k, v in dataclasses.asdict(r).items()} for r in result.rows],
    }


def _calibration_cell(row: Row) -> str:
    if row.calibrate_s is not None:
        return f"{row.calibrate_s:.2f}"
    return "n/a" if row.converter == "tf.lite" and row.size_bytes is not None else "—"


def markdown_table(rows: tuple[Row, ...] | list[Row]) -> str:
    lines = ["| model | mode | converter | size (KB) | ops | accuracy | SQNR (dB) | top-1 agr. "
             "| convert (s) | calib. (s) | peak mem (MB) | latency (ms) |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if r.size_bytes is None:
            lines.append(f"| {r.model} | {r.mode} | {r.converter} | failed: "
                         f"{r.error.replace('|', '/')} |" + " |" * 8)
            continue
        latency = _ms(r.latency_ms, "error")
        lines.append(
            f"| {r.model} | {r.mode} | {r.converter} | {r.size_bytes / 1024:,.1f} | "
            f"{r.op_count} | {_fmt(r.accuracy, '.4f')} | {_fmt(r.sqnr_db, '.2f', 'error')} | "
            f"{_fmt(r.top1_agreement, '.3f', 'error')} | {r.convert_s:.2f} | "
            f"{_calibration_cell(r)} | {r.peak_mem_mb:.1f} | {latency} |")
    return "\n".join(lines)


def markdown(result: Result) -> str:
    m, s = result.machine, result.settings
    floats = ", ".join(f"{x.name} {x.keras_accuracy:.4f}" for x in result.models
                       if x.keras_accuracy is not None)
    samples = ", ".join(f"{x.name} {x.calibration_samples}" for x in result.models)
    text = [f"`{result.command}` — {m['date']}, {m['cpu_count']} CPUs ({m['processor']}), "
            f"TensorFlow {m['tensorflow']}, quantkit {m['quantkit']}, ai-edge-litert "
            f"{m['ai_edge_litert']}; LiteRT latency: median of up to {s.invokes} single-sample "
            f"invokes, {s.threads} thread(s). Calibration samples: {samples}.",
            ""]
    if floats:
        text += [f"Keras float model accuracy: {floats}.", ""]
    text.append(markdown_table(result.rows))
    errors = [r for r in result.rows if r.error and r.size_bytes is not None]
    if errors:
        text += ["", *(f"- {r.model} / {r.mode} / {r.converter}: {r.error}" for r in errors)]
    return "\n".join(text) + "\n"


def plot(result: Result, path: str) -> None:
    """Accuracy (or top-1 agreement with the float model, where there are no labels) against
    model size, one panel per model, quantkit and tf.lite as different markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, FuncFormatter

    models = result.models
    cols = min(len(models), 3)
    rows = -(-len(models) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.0 * rows), squeeze=False)
    for ax in axes.flat[len(models):]:
        ax.set_visible(False)
    for ax, summary in zip(axes.flat, models):
        metric = "accuracy" if summary.labelled else "top1_agreement"
        for converter, (marker, color) in MARKERS.items():
            points = [(r.size_bytes / 1024, getattr(r, metric), r.mode) for r in result.rows
                      if r.model == summary.name and r.converter == converter
                      and r.size_bytes is not None and getattr(r, metric) is not None]
            if not points:
                continue
            xs, ys, modes = zip(*points)
            ax.scatter(xs, ys, marker=marker, color=color, label=converter, zorder=3)
            dy = 4 if converter == "quantkit" else -9
            for x, y, mode in _label_groups(points):
                ax.annotate(mode, (x, y), textcoords="offset points", xytext=(4, dy),
                            fontsize=6, color=color)
        reference = summary.keras_accuracy if summary.labelled else 1.0
        ax.axhline(reference, color="gray", linestyle="--", linewidth=0.8,
                   label="Keras float" if summary.labelled else "= float model")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        low, high = ax.get_xlim()
        if high / low < 10:  # less than a decade: label minor ticks 2, 3, 5 (×10^k) too
            ax.xaxis.set_minor_formatter(FuncFormatter(
                lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "235" else ""))
        ax.set_title(summary.name, fontsize=10)
        ax.set_xlabel("model size (KB, log scale)", fontsize=8)
        ax.set_ylabel("test accuracy" if summary.labelled
                      else f"top-1 agreement with float ({summary.test_samples} inputs)",
                      fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, which="both", linewidth=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Accuracy vs size, every mode: quantkit and tf.lite.TFLiteConverter",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def from_json(data: dict) -> Result:
    """The ``Result`` a ``results.json`` was written from (to re-render its table and plot)."""
    from benchmarks.harness import ModelSummary, Result, Row, Settings

    def row(fields: dict) -> Row:
        if fields.get("sqnr_db") == "inf":
            fields = {**fields, "sqnr_db": math.inf}
        return Row(**fields)

    return Result(data["machine"], data["command"], Settings(**data["settings"]),
                  tuple(ModelSummary(**m) for m in data["models"]),
                  tuple(row(r) for r in data["rows"]))


def write_all(result: Result, out_dir: str) -> list[str]:
    """Write the three outputs into ``out_dir`` (created if needed); their paths."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, JSON_NAME)
    with open(path, "w") as f:
        json.dump(to_json(result), f, indent=1, allow_nan=False)
        f.write("\n")
    return [path, *_render(result, out_dir)]


def _render(result: Result, out_dir: str) -> list[str]:
    """Write the Markdown table and the plot into ``out_dir``; their paths."""
    table, figure = os.path.join(out_dir, MARKDOWN_NAME), os.path.join(out_dir, PLOT_NAME)
    with open(table, "w") as f:
        f.write(markdown(result))
    plot(result, figure)
    return [table, figure]


def main(argv: list[str] | None = None) -> None:
    """Re-render ``results.md`` and the plot beside a ``results.json`` (no measuring)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("json", help="a results.json written by benchmarks.harness")
    args = parser.parse_args(argv)
    with open(args.json) as f:
        result = from_json(json.load(f))
    _render(result, os.path.dirname(os.path.abspath(args.json)))


if __name__ == "__main__":
    main()
