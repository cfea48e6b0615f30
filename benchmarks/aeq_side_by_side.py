"""Quantizing a float ``.tflite``: quantkit's ``from_tflite`` beside ai-edge-quantizer.

    .venv/bin/python -m benchmarks.aeq_side_by_side [--models mnist_cnn ...] [--out DIR]

For each model of the harness's registry (default: the quick subset) TF's converter writes the
float ``.tflite`` sources: float32, TF's float16 mode (float16 weights behind DEQUANTIZE), the
float32 file stripped of its SignatureDef, and a magnitude-pruned copy (half of each kernel's
weights zeroed, smallest first) through ``Optimize.EXPERIMENTAL_SPARSITY`` (DENSIFY). Every
source is converted by quantkit in every mode (the presets, and legacy uint8), and in int8 by
ai-edge-quantizer (``recipe.static_wi8_ai8``, min/max) on the same calibration samples, fed
one row per sample as its examples do (``int8``) and all as one sample (``int8_one_batch``:
its moving-average min/max then is the data's exact min/max); each
result is run in LiteRT on the test inputs and scored (SQNR, all outputs together) against the
Keras model the source came from. quantkit's int8 straight from the Keras model is the
``keras`` row. ai-edge-quantizer is the optional extra ``aeq`` (it pins ai-edge-litert 2.3.0,
the version quantkit uses, so it shares the venv); without it its rows say so.

Writes ``from_tflite.json`` and ``from_tflite.md`` into ``--out``
(default ``benchmarks/results/from_tflite``, committed).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from benchmarks.models import BY_NAME, QUICK

MODES = ("float32", "dynamic_range", "float16", "int8", "int8_per_tensor", "int16x8",
         "uint8_io", "legacy_uint8")
PRUNED_SHARE = 0.5


@dataclass
class Row:
    model: str
    source: str  # float32, float16_weights, no_signature, sparse, keras
    converter: str  # quantkit, ai-edge-quantizer
    mode: str
    sqnr_db: float | None = None
    size_bytes: int | None = None
    seconds: float | None = None
    runs_in_litert: bool | None = None
    error: str | None = None


def _quiet(fn: Callable[[], Any]) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):
        return fn()


def tf_float_tflite(model: Any, **settings: Any) -> bytes:
    """TF's converter's .tflite of a Keras ``model`` (``settings``: converter attributes, and
    ``supported_types`` for its target spec), its export printout silenced."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    for name, value in settings.items():
        if name == "supported_types":
            converter.target_spec.supported_types = value
        else:
            setattr(converter, name, value)
    return _quiet(converter.convert)


def strip_signatures(model: bytes) -> bytes:
    """``model`` without its SignatureDefs (inputs and outputs then go by position)."""
    from tensorflow.lite.tools import flatbuffer_utils

    as_object = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    as_object.signatureDefs = []
    return bytes(flatbuffer_utils.convert_object_to_bytearray(as_object))


def _pruned(model: Any) -> Any:
    """A copy with the smallest ``PRUNED_SHARE`` of each conv/dense kernel set to zero."""
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for layer in copy.layers:
        weights = layer.get_weights()
        if weights and weights[0].ndim >= 2:
            w = weights[0]
            w[np.abs(w) < np.quantile(np.abs(w), PRUNED_SHARE)] = 0
            layer.set_weights([w, *weights[1:]])
    return copy


def _sqnr(reference: list[np.ndarray], outputs: list[np.ndarray]) -> float:
    from quantkit.metrics import sqnr_db

    flat = lambda arrays: np.concatenate([np.ravel(a) for a in arrays])  # noqa: E731
    return float(sqnr_db(flat(reference), flat(outputs)))


def _score(row: Row, blob: bytes, test: np.ndarray, reference: list[np.ndarray]) -> None:
    from quantkit.litert import Runner

    row.size_bytes = len(blob)
    try:
        outputs = Runner(blob).run_all([test])
    except Exception as e:  # noqa: BLE001 - a model LiteRT refuses is a result
        row.runs_in_litert, row.error = False, f"LiteRT: {str(e).splitlines()[0][:200]}"
        return
    row.runs_in_litert = True
    row.sqnr_db = _sqnr(reference, outputs)


def _quantkit(make: Callable[[Any], Any], mode: str, calibration: np.ndarray) -> bytes:
    import tensorflow as tf

    import quantkit

    converter = make(quantkit)
    dataset = lambda: ([x[None]] for x in calibration)  # noqa: E731
    if mode == "legacy_uint8":
        quantkit.Preset("int8").configure(converter, representative_dataset=dataset)
        converter.legacy_uint8 = True
        converter.inference_input_type = converter.inference_output_type = tf.uint8
    else:
        quantkit.Preset(mode).configure(converter, representative_dataset=dataset)
    converter.calibration = quantkit.CalibrationOptions(progress=False)
    return converter.convert()


def _aeq(source: bytes, calibration: np.ndarray, one_batch: bool = False) -> bytes:
    """ai-edge-quantizer's int8 (``static_wi8_ai8``). Its calibrator keeps a moving average
    (0.95) of each sample's min/max, so one-row samples give ranges narrower than the data's;
    ``one_batch`` feeds the whole calibration set as one sample: its exact min/max."""
    from ai_edge_quantizer import quantizer, recipe

    signatures = Interpreter(model_content=source).get_signature_list()
    if not signatures:
        key, names = "serving_default", ["input"]  # what it would need: it has no signature
    else:
        key = next(iter(signatures))
        names = signatures[key]["inputs"]
    qt = quantizer.Quantizer(source)
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    samples = [calibration] if one_batch else [x[None] for x in calibration]
    data = {key: [{names[0]: x} for x in samples]}
    result = _quiet(lambda: qt.quantize(qt.calibrate(data)))
    return bytes(result.quantized_model)


def _timed(row: Row, fn: Callable[[], bytes]) -> bytes | None:
    start = time.perf_counter()
    try:
        blob = fn()
    except Exception as e:  # noqa: BLE001 - a failed conversion is a result
        row.error = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        return None
    row.seconds = round(time.perf_counter() - start, 2)
    return blob


def bench_model(name: str, aeq: bool) -> list[Row]:
    import tensorflow as tf

    data = BY_NAME[name].build(BY_NAME[name].default_samples)
    model, calibration = data.model, data.calibration.astype(np.float32)
    test = data.test_inputs.astype(np.float32)
    reference = [np.asarray(model.predict(test, verbose=0))]
    pruned = _pruned(model)
    float32 = tf_float_tflite(model)
    sources = {
        "float32": (float32, reference),
        "float16_weights": (tf_float_tflite(model, optimizations=[tf.lite.Optimize.DEFAULT],
                                      supported_types=[tf.float16]), reference),
        "no_signature": (strip_signatures(float32), reference),
        "sparse": (tf_float_tflite(pruned, optimizations=[tf.lite.Optimize.EXPERIMENTAL_SPARSITY]),
                   [np.asarray(pruned.predict(test, verbose=0))]),
    }
    rows = []
    keras_row = Row(name, "keras", "quantkit", "int8")
    blob = _timed(keras_row, lambda: _quantkit(
        lambda q: q.TFLiteConverter.from_keras_model(model), "int8", calibration))
    if blob is not None:
        _score(keras_row, blob, test, reference)
    rows.append(keras_row)
    for source, (blob_in, ref) in sources.items():
        for mode in MODES:
            row = Row(name, source, "quantkit", mode)
            blob = _timed(row, lambda: _quantkit(
                lambda q: q.TFLiteConverter.from_tflite(blob_in), mode, calibration))
            if blob is not None:
                _score(row, blob, test, ref)
            rows.append(row)
            print(_line(row), flush=True)
        for mode, one_batch in (("int8", False), ("int8_one_batch", True)):
            row = Row(name, source, "ai-edge-quantizer", mode)
            if not aeq:
                row.error = "ai-edge-quantizer is not installed (pip install quantkit[aeq])"
            else:
                blob = _timed(row, lambda: _aeq(blob_in, calibration, one_batch))
                if blob is not None:
                    _score(row, blob, test, ref)
            rows.append(row)
            print(_line(row), flush=True)
    return rows


def _line(row: Row) -> str:
    result = (f"{row.sqnr_db:.2f} dB" if row.sqnr_db is not None else "-")
    return (f"{row.model:22s} {row.source:16s} {row.converter:18s} {row.mode:16s} {result:>10s} "
            f"{row.size_bytes or '-':>9} {row.seconds or '-':>6} "
            f"{'' if row.error is None else row.error}")


def markdown(rows: list[Row]) -> str:
    lines = ["| model | source | converter | mode | SQNR dB | size B | time s | runs | error |",
             "|---|---|---|---|---:|---:|---:|---|---|"]
    for r in rows:
        sqnr = "" if r.sqnr_db is None else f"{r.sqnr_db:.2f}"
        runs = "" if r.runs_in_litert is None else ("yes" if r.runs_in_litert else "no")
        error = (r.error or "").replace("|", "/")
        lines.append(f"| {r.model} | {r.source} | {r.converter} | {r.mode} | {sqnr} | "
                     f"{r.size_bytes or ''} | {r.seconds or ''} | {runs} | {error} |")
    return "\n".join(lines) + "\n"


def int8_verdicts(rows: list[Row]) -> list[str]:
    """Per model and source: quantkit's int8 against ai-edge-quantizer's best int8 row and the
    Keras path."""
    verdicts = []
    keras = {r.model: r.sqnr_db for r in rows if r.source == "keras"}
    best: dict[tuple[str, str], Row] = {}
    for r in rows:
        if r.converter == "ai-edge-quantizer":
            known = best.get((r.model, r.source))
            if known is None or (r.sqnr_db or -1e9) > (known.sqnr_db or -1e9):
                best[r.model, r.source] = r
    for r in best.values():
        ours = next(q for q in rows if q.model == r.model and q.source == r.source
                    and q.converter == "quantkit" and q.mode == "int8")
        theirs = "does not run" if r.sqnr_db is None else f"{r.sqnr_db:.2f} dB ({r.mode})"
        ok = ours.sqnr_db is not None and (r.sqnr_db is None or ours.sqnr_db >= r.sqnr_db)
        gap = "" if r.source == "sparse" or ours.sqnr_db is None or keras.get(r.model) is None \
            else f"; Keras path {keras[r.model]:.2f} dB (Δ {ours.sqnr_db - keras[r.model]:+.2f})"
        mine = "fails" if ours.sqnr_db is None else f"{ours.sqnr_db:.2f} dB"
        verdicts.append(f"{r.model} {r.source}: quantkit {mine} vs "
                        f"ai-edge-quantizer {theirs} -> {'OK' if ok else 'WORSE'}{gap}")
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(QUICK), choices=sorted(BY_NAME))
    parser.add_argument("--out", default="benchmarks/results/from_tflite")
    args = parser.parse_args(argv)
    try:
        import ai_edge_quantizer  # noqa: F401
        aeq = True
    except ImportError:
        aeq = False
    rows: list[Row] = []
    for name in args.models:
        try:
            rows += bench_model(name, aeq)
        except Exception:  # noqa: BLE001 - one model's failure leaves the others' results
            traceback.print_exc()
            rows.append(Row(name, "-", "-", "-", error="the model could not be built"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "from_tflite.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    verdicts = int8_verdicts(rows)
    (out / "from_tflite.md").write_text(markdown(rows) + "\n" + "\n".join(
        f"- {v}" for v in verdicts) + "\n")
    print("\n".join(verdicts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
