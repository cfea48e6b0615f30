"""The accuracy-vs-size figure: per model a score panel (accuracy, the user's metric or top-1
agreement with the float model) and an SQNR panel (which separates modes of equal accuracy),
one legend for all.

Made to be read at a glance: each mode has its own colour and marker (filled for quantkit,
hollow for tf.lite), so no text sits next to the points and nothing collides; the float
model's score is a dashed reference line; a size axis from 0 (a quarter of the float size
looks like a quarter); a score axis at least ``MIN_SPAN`` of the score's scale tall, so a
0.2-point difference between modes stays the small thing it is; one font size throughout.
"""

from __future__ import annotations

import dataclasses
import io
import math
import sys
from typing import Any, Callable

from quantkit.bench.types import Converter, ModelSummary, Result, Row

FONT_SIZE = 10
SQNR_CAP_DB = 100.0  # higher SQNRs (float32: equal up to float rounding) are drawn at the cap
MIN_SPAN = 0.10      # of a score in [0, 1] (10 points of accuracy); of |score| otherwise
PANEL_INCHES = (4.6, 3.6)
MARKERS = ("o", "s", "D", "^", "v", "P", "X", "p", "h", "<", ">")
CONVERTER_STYLE = {  # how each converter's points are drawn: filled, hollow, a star
    Converter.QUANTKIT.value: dict(edgecolors="face", s=64),
    Converter.TF_LITE.value: dict(facecolors="none", linewidths=1.6, s=120),
    Converter.INPUT.value: dict(marker="*", edgecolors="face", s=160),
}


@dataclasses.dataclass(frozen=True)
class Score:
    """What a panel's vertical axis shows for one model."""

    field: str                 # the Row attribute
    label: str
    reference: float | None    # the float model's value: the dashed line
    fraction: bool             # a share in [0, 1], shown in percent
    cap: float = math.inf      # values above are drawn at the cap


SQNR = Score("sqnr_db", "output SQNR vs float (dB)", None, False, SQNR_CAP_DB)


# The first rule that applies to a model picks its score: its own metric, accuracy on the
# labels, agreement with the float model's top-1 class, else the output SQNR.
SCORES: tuple[tuple[Callable[[ModelSummary], bool], Callable[[ModelSummary], Score]], ...] = (
    (lambda m: m.metric_name is not None,
     lambda m: Score("metric", m.metric_name, m.float_metric, False)),
    (lambda m: m.labelled,
     lambda m: Score("accuracy", "test accuracy (%)", m.float_accuracy, True)),
    (lambda m: m.classes,
     lambda m: Score("top1_agreement", f"top-1 agreement with float (%, {m.test_samples} "
                     "inputs)", 1.0, True)),
    (lambda m: True, lambda m: SQNR),
)


def scores_for(model: ModelSummary) -> list[Score]:
    """The model's panels: its score, then the SQNR (unless the score is the SQNR)."""
    first = next(make(model) for applies, make in SCORES if applies(model))
    return [first] if first is SQNR else [first, SQNR]


def y_limits(values: list[float], score: Score) -> tuple[float, float]:
    """Top at the best value; at least ``MIN_SPAN`` of the scale tall (an SQNR axis from
    0 dB, so dB read as heights); a margin both ways."""
    known = [v for v in values + [score.reference] if v is not None and math.isfinite(v)]
    top, bottom = max(known), min(known)
    if score is SQNR:
        bottom = min(bottom, 0.0)
    scale = 1.0 if score.fraction else max(abs(top), abs(bottom), 1e-12)
    span = max(top - bottom, MIN_SPAN * scale)
    pad = 0.08 * span
    low = top - span - pad
    if score.fraction:
        low = max(low, -pad)  # a share cannot be below 0
    return low, top + pad


def _size_unit(rows: list[Row]) -> tuple[float, str]:
    """KB, or MB from 2 MB on (each model its own: a 60 KB model is not 0.06 MB)."""
    largest = max([r.size_bytes for r in rows if not r.failed] or [1])
    return (2**20, "MB") if largest >= 2 * 2**20 else (1024, "KB")


def _panel(ax: Any, model: ModelSummary, score: Score, rows: list[Row],
           modes: list[str]) -> None:
    from matplotlib.ticker import FuncFormatter  # deferred: only the plot needs it (slow to import)

    unit, unit_name = _size_unit(rows)
    factor = 100.0 if score.fraction else 1.0
    shown = [r for r in rows if not r.failed and getattr(r, score.field) is not None]
    cap = score.cap
    low, high = y_limits([min(getattr(r, score.field), cap) for r in shown] or [0.0], score)
    for r in shown:
        i = modes.index(r.mode)
        style = dict(marker=MARKERS[i % len(MARKERS)], zorder=3)
        style.update(CONVERTER_STYLE[r.converter])
        color = "black" if r.converter == Converter.INPUT.value else f"C{i}"
        colors = {"edgecolors": color} if style.get("facecolors") == "none" else {"c": color}
        ax.scatter([r.size_bytes / unit], [factor * min(getattr(r, score.field), cap)],
                   clip_on=False, **colors, **style)
    if score.reference is not None:
        ax.axhline(factor * score.reference, color="0.35", linestyle="--", linewidth=1,
                   zorder=2)
    ax.set_ylim(factor * low, factor * high)
    ax.set_xlim(0, 1.08 * max([r.size_bytes / unit for r in shown] or [1.0]))
    ax.yaxis.set_major_formatter(FuncFormatter(  # the capped values sit on the "≥ cap" tick
        lambda v, _: f"≥{v:g}" if v >= factor * cap else f"{v:g}"))
    ax.set_xlabel(f"model size ({unit_name})")
    ax.set_ylabel(score.label)
    failed = sum(r.failed for r in rows)
    what = "SQNR" if score is SQNR else score.field.replace("top1_", "top-1 ")
    ax.set_title(f"{model.name}: {what}" + (
        f"\n({failed} failed row{'s' * (failed > 1)}: see the table)" if failed else ""),
        fontweight="bold")
    ax.grid(True, linewidth=0.4, alpha=0.6)


def _legend_handles(modes: list[str], converters: list[str]) -> list[Any]:
    from matplotlib.lines import Line2D  # deferred: only the plot needs it (slow to import)

    handles = [Line2D([], [], color=f"C{i}", marker=MARKERS[i % len(MARKERS)], linestyle="",
                      markersize=8, label=mode) for i, mode in enumerate(modes)]
    looks = {Converter.QUANTKIT.value: dict(marker="o", markerfacecolor="0.3"),
             Converter.TF_LITE.value: dict(marker="o", markerfacecolor="none",
                                           markeredgewidth=1.6, markersize=10),
             Converter.INPUT.value: dict(marker="*", markerfacecolor="black", markersize=12)}
    names = {Converter.QUANTKIT.value: "quantkit (filled)",
             Converter.TF_LITE.value: "tf.lite (hollow)",
             Converter.INPUT.value: "the given .tflite"}
    handles += [Line2D([], [], color="0.3", linestyle="", label=names[c],
                       **{"markersize": 8, **looks[c]}) for c in converters]
    handles.append(Line2D([], [], color="0.35", linestyle="--", linewidth=1,
                          label="float model"))
    return handles


def _shown_by_ipython(figure_type: type) -> None:
    """In IPython/Jupyter, show a returned Figure as PNG (matplotlib's inline backend
    registers that only once pyplot has made a figure; this one is made without pyplot, so
    that scripts accumulate no figures)."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    if shell is None:
        return
    formatter = shell.display_formatter.formatters["image/png"]
    try:
        formatter.lookup_by_type(figure_type)
    except KeyError:
        formatter.for_type(figure_type, png)


def png(fig: Any) -> bytes:
    """The figure as PNG bytes (100 dpi)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def figure(result: Result) -> Any:
    """The figure (a matplotlib Figure; ``.savefig(path)``; shown when a notebook cell
    returns it)."""
    import matplotlib  # deferred: only the plot needs it (slow to import)
    from matplotlib.figure import Figure  # deferred: only the plot needs it (slow to import)

    _shown_by_ipython(Figure)
    modes = list(dict.fromkeys(r.mode for r in result.rows if r.converter != "input"))
    converters = list(dict.fromkeys(r.converter for r in result.rows))
    panels = [(m, score) for m in result.models for score in scores_for(m)]
    count = len(panels)
    cols = 2 if all(len(scores_for(m)) == 2 for m in result.models) else min(count, 3)
    rows = -(-count // cols)
    sizes_rc = {k: FONT_SIZE for k in ("font.size", "axes.titlesize", "axes.labelsize",
                                       "xtick.labelsize", "ytick.labelsize", "legend.fontsize",
                                       "figure.titlesize")}
    with matplotlib.rc_context(sizes_rc):
        fig = Figure(figsize=(PANEL_INCHES[0] * cols + 2.2, PANEL_INCHES[1] * rows + 0.6),
                     layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax in axes.flat[count:]:
            ax.set_visible(False)
        for ax, (model, score) in zip(axes.flat, panels):
            _panel(ax, model, score, [r for r in result.rows if r.model == model.name], modes)
        fig.legend(handles=_legend_handles(modes, converters), loc="outside right center",
                   frameon=False)
        fig.suptitle("Accuracy vs size, every mode" + (
            ": quantkit and tf.lite" if "tf.lite" in converters else ""), fontweight="bold")
    return fig
