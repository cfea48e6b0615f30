"""quantkit and tf.lite.TFLiteConverter side by side: same model, same calibration and test data.

``convert_int8`` configures either converter the same way through the shared API;
``assert_as_good_as_tf`` checks the int8 targets: integer tensors only (model IO aside), one
weight scale per filter, SQNR ≥ TF's − 0.5 dB, size ≤ 1.01 × TF's, op count ≤ TF's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

import quantkit
from quantkit.ir.layouts import WEIGHT_LAYOUTS
from quantkit.litert import dequantize_output, quantize_input
from quantkit.metrics import sqnr_db
from quantkit.tflite_io.reader import op_types, read_model

SQNR_MARGIN_DB = 0.5
SIZE_RATIO = 1.01


def convert_int8(module: Any, make_converter: Callable[[Any], Any], samples: list[Any],
                 io: tf.DType = tf.int8, int8_only: bool = True) -> bytes:
    """Convert with ``module`` (quantkit or tf.lite): ``make_converter(module)`` gives the
    converter; calibration on ``samples`` (each a list of input arrays or a dict by name)."""
    converter = make_converter(module)
    converter.optimizations = [module.Optimize.DEFAULT]
    converter.representative_dataset = lambda: iter(samples)
    if int8_only:
        converter.target_spec.supported_ops = [module.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = io
    if module is quantkit:
        converter.calibration = quantkit.CalibrationOptions(progress=False)
    return converter.convert()


def run_all(model: bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Every output (as float) of the model on float ``inputs``. With a signature, inputs and
    outputs go by sorted signature name (TF orders multi-input models its own way); a model
    without one (TF's from a bare concrete function) goes by position."""
    interpreter = Interpreter(model_content=model)
    if not interpreter.get_signature_list():
        details = interpreter.get_input_details()
        for detail, x in zip(details, inputs):
            interpreter.resize_tensor_input(detail["index"], list(x.shape))
        interpreter.allocate_tensors()
        for detail, x in zip(details, inputs):
            interpreter.set_tensor(detail["index"], quantize_input(x, detail))
        interpreter.invoke()
        return [dequantize_output(interpreter.get_tensor(d["index"]), d)
                for d in interpreter.get_output_details()]
    runner = interpreter.get_signature_runner()
    details = runner.get_input_details()
    names = sorted(details)
    outputs = runner(**{name: quantize_input(x, details[name]) for name, x in zip(names, inputs)})
    out_details = runner.get_output_details()
    return [dequantize_output(outputs[k], out_details[k]) for k in sorted(outputs)]


@dataclass(frozen=True)
class Converted:
    model: bytes
    sqnr: float  # dB, all outputs together, against the float reference

    @property
    def size(self) -> int:
        return len(self.model)

    @property
    def ops(self) -> list[str]:
        return op_types(self.model)


def measure(model: bytes, inputs: list[np.ndarray], reference: list[np.ndarray]) -> Converted:
    outputs = run_all(model, inputs)
    flat = lambda arrays: np.concatenate([np.ravel(a) for a in arrays])  # noqa: E731
    return Converted(model, sqnr_db(flat(reference), flat(outputs)))


def float_tensors_inside(model: bytes) -> list[str]:
    """Names of float32 tensors that are not a model input or output."""
    sub = read_model(model).subgraphs[0]
    io = set(sub.inputs) | set(sub.outputs)
    return [t.name for i, t in enumerate(sub.tensors) if t.dtype == np.float32 and i not in io]


# Where each weighted op keeps its weights and their output-channel axis.
def per_channel_mismatches(model: bytes) -> list[str]:
    """Weighted ops whose weight scale count is not their filter (output channel) count."""
    sub = read_model(model).subgraphs[0]
    wrong = []
    for op in sub.ops:
        layout = WEIGHT_LAYOUTS.get(op.type)
        if layout is None:
            continue
        w = sub.tensors[op.inputs[layout.weights_input]]
        if w.quant is None or len(w.quant.scales) != w.shape[layout.output_axis]:
            wrong.append(f"{op.type.name} {w.name}: {w.shape} with "
                         f"{0 if w.quant is None else len(w.quant.scales)} scales")
    return wrong


def assert_as_good_as_tf(ours: Converted, theirs: Converted) -> None:
    report = (f"quantkit: {ours.sqnr:.2f} dB, {ours.size} B, {len(ours.ops)} ops; "
              f"TF: {theirs.sqnr:.2f} dB, {theirs.size} B, {len(theirs.ops)} ops")
    assert not float_tensors_inside(ours.model), float_tensors_inside(ours.model)
    assert not per_channel_mismatches(ours.model), per_channel_mismatches(ours.model)
    assert ours.sqnr >= theirs.sqnr - SQNR_MARGIN_DB, report
    assert ours.size <= SIZE_RATIO * theirs.size, report
    assert len(ours.ops) <= len(theirs.ops), f"{report}\n{ours.ops}\n{theirs.ops}"


def side_by_side(make_converter: Callable[[Any], Any], calibration: list[Any],
                 test_inputs: list[np.ndarray], reference: list[np.ndarray],
                 io: tf.DType = tf.int8) -> tuple[Converted, Converted]:
    """(quantkit, TF) converted from the same model and calibration, measured on the same
    test inputs against the float ``reference`` outputs."""
    ours = measure(convert_int8(quantkit, make_converter, calibration, io), test_inputs,
                   reference)
    theirs = measure(convert_int8(tf.lite, make_converter, calibration, io), test_inputs,
                     reference)
    return ours, theirs
