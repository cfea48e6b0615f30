"""A benchmark's outputs: ``results.json``, ``results.md`` (a Markdown table) and
``accuracy_vs_size.png`` (one panel per model), and the progress line of each row.

    python -m quantkit.bench DIR/results.json   # re-render the table and the plot
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Callable

from quantkit.bench.types import Converter, ModelSummary, Result, Row, Settings

JSON_NAME = "results.json"
MARKDOWN_NAME = "results.md"
PLOT_NAME = "accuracy_vs_size.png"


def _fmt(value: float | None, spec: str, missing: str = "—") -> str:
    return missing if value is None else format(value, spec)


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" if value < 1 else f"{value:.3g}" if value < 100 else f"{value:.0f}"


def _opt(value: float | None, spec: str) -> str | None:
    """A cell that may be left empty (None: the column is dropped if every row's is)."""
    return None if value is None else format(value, spec)


def _ratio(row: Row) -> str:
    if row.latency_ratio is None:
        return "—"
    low, high = row.latency_ratio_range or (row.latency_ratio, row.latency_ratio)
    return f"{row.latency_ratio:.2f} ({low:.2f}–{high:.2f})"


def progress_line(row: Row) -> str:
    """One line per measured row, printed as the benchmark goes."""
    head = f"{row.mode:<16} {row.converter:<9}"
    if row.failed:
        return f"{head} FAILED {row.error}"
    text = (f"{head} {row.size_bytes / 1024:9.1f} KB {row.op_count:4d} ops  "
            f"acc {_fmt(row.accuracy, '.4f'):>6}  SQNR {_fmt(row.sqnr_db, '6.2f'):>6} dB  "
            f"top-1 {_fmt(row.top1_agreement, '.3f'):>5}  convert {_fmt(row.convert_s, '.2f')} s"
            f"  latency {_ms(row.latency_ms)} ms")
    if row.metric is not None:
        text += f"  metric {row.metric:.4g}"
    if row.latency_ratio is not None:
        text += f" (× tf.lite {_ratio(row)})"
    return text + (f"  [{row.error}]" if row.error else "")


def _calibration_cell(row: Row) -> str | None:
    """quantkit's calibration time; "n/a" for tf.lite, whose API has no separate step."""
    if row.calibrate_s is not None:
        return f"{row.calibrate_s:.2f}"
    return "n/a" if row.converter == Converter.TF_LITE.value else None


# The table's columns: header, alignment, cell; a column every row leaves empty is dropped.
Column = tuple[str, str, Callable[[Row], Any]]
COLUMNS: tuple[Column, ...] = (
    ("model", "---", lambda r: r.model),
    ("mode", "---", lambda r: r.mode),
    ("converter", "---", lambda r: r.converter),
    ("size (KB)", "---:", lambda r: f"{r.size_bytes / 1024:,.1f}"),
    ("ops", "---:", lambda r: r.op_count),
    ("accuracy", "---:", lambda r: _opt(r.accuracy, ".4f")),
    ("metric", "---:", lambda r: _opt(r.metric, ".4g")),
    ("SQNR (dB)", "---:", lambda r: _fmt(r.sqnr_db, ".2f", "error")),
    ("top-1 agr.", "---:", lambda r: _opt(r.top1_agreement, ".3f")),
    ("convert (s)", "---:", lambda r: _fmt(r.convert_s, ".2f")),
    ("calib. (s)", "---:", lambda r: _calibration_cell(r)),
    ("peak mem (MB)", "---:", lambda r: _fmt(r.peak_mem_mb, ".1f")),
    ("latency (ms)", "---:", lambda r: _ms(r.latency_ms)),
    ("latency / tf.lite", "---:", lambda r: None if r.latency_ratio is None else _ratio(r)),
)
_OPTIONAL = {"accuracy", "metric", "top-1 agr.", "calib. (s)", "latency / tf.lite"}


def markdown_table(rows: tuple[Row, ...] | list[Row]) -> str:
    def cell(column: Column, row: Row) -> str:
        value = column[2](row) if not row.failed or column[0] in ("model", "mode",
                                                                   "converter") else None
        return "—" if value is None else str(value)

    columns = [c for c in COLUMNS if c[0] not in _OPTIONAL or any(
        not r.failed and c[2](r) not in (None, "n/a") for r in rows)]
    lines = ["| " + " | ".join(c[0] for c in columns) + " |",
             "| " + " | ".join(c[1] for c in columns) + " |"]
    for r in rows:
        if r.failed:
            lines.append(f"| {r.model} | {r.mode} | {r.converter} | failed: "
                         f"{(r.error or '').replace('|', '/')} |" + " |" * (len(columns) - 4))
        else:
            lines.append("| " + " | ".join(cell(c, r) for c in columns) + " |")
    return "\n".join(lines)


def _reference_text(m: ModelSummary) -> str:
    parts = []
    if m.float_accuracy is not None:
        parts.append(f"accuracy {m.float_accuracy:.4f}")
    if m.metric_name is not None and m.float_metric is not None:
        parts.append(f"{m.metric_name} {m.float_metric:.4g}")
    return (f"{m.name} ({m.description}; {m.test_samples} test, {m.calibration_samples} "
            f"calibration samples)" + (": float model " + ", ".join(parts) if parts else ""))


def markdown(result: Result) -> str:
    m, s = result.machine, result.settings
    ratios = [r.latency_ratio for r in result.rows if r.latency_ratio is not None]
    text = [f"`{result.command}` — {m['date']}, {m['cpu_count']} CPUs ({m['processor']}), "
            f"TensorFlow {m['tensorflow']}, quantkit {m['quantkit']}, ai-edge-litert "
            f"{m['ai_edge_litert']}; LiteRT latency: median of up to {s.invokes} single-sample "
            f"invokes per model, {s.threads} thread(s), each mode's models taking turns.", ""]
    text += [f"- {_reference_text(x)}" for x in result.models] + [""]
    text.append(markdown_table(result.rows))
    if ratios:
        text += ["", f"Latency quantkit / tf.lite (in brackets: lowest–highest of 5 rounds): "
                     f"{min(ratios):.2f}–{max(ratios):.2f} over {len(ratios)} model × mode "
                     f"pairs, median {sorted(ratios)[len(ratios) // 2]:.2f}."]
    errors = [r for r in result.rows if r.error and not r.failed]
    if errors:
        text += ["", *(f"- {r.model} / {r.mode} / {r.converter}: {r.error}" for r in errors)]
    return "\n".join(text) + "\n"


def to_json(result: Result) -> dict:
    def clean(value: Any) -> Any:  # JSON has no Infinity: an infinite SQNR is "inf"
        if isinstance(value, float) and not math.isfinite(value):
            return "inf" if value > 0 else None
        return list(value) if isinstance(value, tuple) else value

    return {
        "command": result.command,
        "machine": result.machine,
        "settings": dataclasses.asdict(result.settings),
        "models": [dataclasses.asdict(m) for m in result.models],
        "rows": [{k: clean(v) for k, v in dataclasses.asdict(r).items()} for r in result.rows],
    }


def from_json(data: dict) -> Result:
    """The ``Result`` a ``results.json`` was written from (to re-render its table and plot)."""
    def row(fields: dict) -> Row:
        fields = dict(fields)
        if fields.get("sqnr_db") == "inf":
            fields["sqnr_db"] = math.inf
        if fields.get("latency_ratio_range") is not None:
            fields["latency_ratio_range"] = tuple(fields["latency_ratio_range"])
        return Row(**fields)

    return Result(data["machine"], data["command"], Settings(**data["settings"]),
                  tuple(ModelSummary(**m) for m in data["models"]),
                  tuple(row(r) for r in data["rows"]))


def png_bytes(result: Result) -> bytes:
    from quantkit.bench.plot import figure, png

    return png(figure(result))


def write_all(result: Result, out_dir: str) -> list[str]:
    """Write the three outputs into ``out_dir`` (created if needed), each atomically; their
    paths."""
    from quantkit.fileio import write_atomically

    os.makedirs(out_dir, exist_ok=True)
    contents = {
        JSON_NAME: (json.dumps(to_json(result), indent=1, allow_nan=False) + "\n").encode(),
        MARKDOWN_NAME: markdown(result).encode(),
        PLOT_NAME: png_bytes(result),
    }
    paths = []
    for name, content in contents.items():
        path = os.path.join(out_dir, name)
        write_atomically(path, content)
        paths.append(path)
    return paths
