"""quantkit and tf.lite.TFLiteConverter side by side: same model, same mode, same calibration and
test data.

``convert`` configures either converter for a mode (``MODES``) through the shared API;
``measure`` runs the result on the test inputs against the float reference;
``assert_as_good_as_tf`` checks the int8 targets (integer tensors only, model IO aside; one
weight scale per filter; SQNR ≥ TF's − 0.5 dB and ≥ an absolute floor; size ≤ 1.01 × TF's; op
count ≤ TF's) and ``assert_mode_as_good_as_tf`` the same margins for the other modes.

A margin relative to TF passes when both converters are broken, or when the outputs hardly
depend on the input; so every measurement is guarded (``assert_input_matters``): the float
reference must vary across the test rows (its mean over the rows, the best a model that ignores
its input can return, must score under ``NEAR_CONSTANT_DB``), and the converted model must
score at least ``INPUT_MATTERS_DB`` more on the right rows than against the reference of other
rows (as it would on shuffled inputs).
"""

from __future__ import annotations

import contextlib
import io as _io
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

import quantkit
from quantkit.ops import spec
from quantkit.litert import (batch_states, dequantize_output, has_states, quantize_input,
                             resize_batch)
from quantkit.metrics import sqnr_db
from quantkit.tflite_io.reader import op_types, read_model

SQNR_MARGIN_DB = 0.5
SIZE_RATIO = 1.01
# A reference whose mean over the test rows scores this much is near-constant: a model that
# ignores its input would pass a relative check on it.
NEAR_CONSTANT_DB = 20.0
# How much better a model must score on its own test rows than on the rows shuffled.
INPUT_MATTERS_DB = 3.0
# Mode tolerances that mean something (on the small and trained models; the random-weight
# applications amplify rounding error, TF's as much as quantkit's, see test_applications).
FLOAT32_REL = 1e-4  # of the output's largest magnitude
FLOAT16_FLOOR_DB = 60.0
INT16X8_OVER_INT8_DB = 3.0  # int16 activations beat int8 ones on the same model and data

MODES = ("float32", "int8", "dynamic_range", "float16", "int16x8", "uint8")
INT16X8 = "EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8"

MakeConverter = Callable[[Any], Any]  # module (quantkit or tf.lite) → its converter


def samples(calibration: Any) -> list[Any]:
    """Calibration samples: an array is one single-input sample per row (batch dim 1);
    a list is taken as samples already (each a list of input arrays or a dict by name)."""
    if isinstance(calibration, np.ndarray):
        return [[x[None]] for x in calibration]
    return list(calibration)


def configure(module: Any, converter: Any, mode: str, calibration: Any = None,
              fallback: bool = False, io: tf.DType | None = None) -> Any:
    """Set ``converter`` (of ``module``, quantkit or tf.lite) to ``mode``.

    int8 has int8 model IO unless ``io`` says otherwise, and the INT8-only op set unless
    ``fallback``; int16x8 keeps TFLITE_BUILTINS in the op set with ``fallback`` (ops its
    kernels lack stay float); uint8 is quantkit's legacy uint8 (TF has no such mode).
    """
    assert mode in MODES, mode
    if mode != "float32":
        converter.optimizations = [module.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode in ("int8", "int16x8", "uint8"):
        data = samples(calibration)
        converter.representative_dataset = lambda: iter(data)
    builtins = [module.OpsSet.TFLITE_BUILTINS] if fallback else []
    if mode == "int8":
        converter.target_spec.supported_ops = [module.OpsSet.TFLITE_BUILTINS_INT8, *builtins]
        converter.inference_input_type = converter.inference_output_type = io or tf.int8
    if mode == "int16x8":
        converter.target_spec.supported_ops = [getattr(module.OpsSet, INT16X8), *builtins]
    if mode == "uint8":
        converter.legacy_uint8 = True
        converter.inference_input_type = converter.inference_output_type = tf.uint8
    if module is quantkit:
        converter.calibration = quantkit.CalibrationOptions(progress=False)
    return converter


def keras_converter(model: Any) -> MakeConverter:
    return lambda module: module.TFLiteConverter.from_keras_model(model)


def convert(module: Any, make_converter: MakeConverter, mode: str, calibration: Any = None,
            fallback: bool = False, io: tf.DType | None = None) -> bytes:
    """``make_converter(module)`` configured for ``mode`` (see ``configure``), converted."""
    converter = configure(module, make_converter(module), mode, calibration, fallback, io)
    with contextlib.redirect_stdout(_io.StringIO()):  # TF's converter prints its export
        return converter.convert()


def run_all(model: bytes, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Every output (as float) of the model on float ``inputs``. With a signature, inputs and
    outputs go by sorted signature name (TF orders multi-input models its own way); a model
    without one (TF's from a bare concrete function) goes by position. A fused RNN's states
    start from zeros, with the inputs' batch (``quantkit.litert``)."""
    interpreter = Interpreter(model_content=model)
    states = batch_states(model)
    if not interpreter.get_signature_list():
        details = interpreter.get_input_details()
        for detail, x in zip(details, inputs):
            interpreter.resize_tensor_input(detail["index"], list(x.shape))
        resize_batch(interpreter, states, len(inputs[0]))
        interpreter.allocate_tensors()
        interpreter.reset_all_variables()
        for detail, x in zip(details, inputs):
            interpreter.set_tensor(detail["index"], quantize_input(x, detail))
        interpreter.invoke()
        return [dequantize_output(interpreter.get_tensor(d["index"]), d)
                for d in interpreter.get_output_details()]
    details = interpreter.get_signature_runner().get_input_details()
    names = sorted(details)
    if has_states(model):  # (the signature runner would resize the inputs only)
        for name, x in zip(names, inputs):
            interpreter.resize_tensor_input(details[name]["index"], list(x.shape))
        resize_batch(interpreter, states, len(inputs[0]))
        interpreter.allocate_tensors()
        interpreter.reset_all_variables()
    runner = interpreter.get_signature_runner()  # (it holds the interpreter: made after)
    outputs = runner(**{name: quantize_input(x, details[name]) for name, x in zip(names, inputs)})
    out_details = runner.get_output_details()
    return [dequantize_output(outputs[k], out_details[k]) for k in sorted(outputs)]


def flat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.ravel(a) for a in arrays])


def constant_sqnr(reference: Sequence[np.ndarray]) -> float:
    """The SQNR (dB) of the best model that ignores its input: each output's mean over the
    test rows (axis 0), against the reference itself."""
    means = [np.broadcast_to(np.mean(r, axis=0, keepdims=True), np.shape(r)) for r in reference]
    return sqnr_db(flat(reference), flat(means))


def mismatched(outputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each output row moved to the next row, so no row meets its own reference: what the
    model scores on shuffled inputs (its rows are independent, so running it again on the
    inputs rolled by one would give exactly these)."""
    return [np.roll(np.asarray(y), 1, axis=0) for y in outputs]


@dataclass(frozen=True)
class Converted:
    model: bytes
    sqnr: float  # dB, all outputs together, against the float reference
    shuffled_sqnr: float  # the same model on shuffled test rows, against the same reference
    constant_sqnr: float  # the reference's mean over the rows, against the reference

    @property
    def size(self) -> int:
        return len(self.model)

    @property
    def ops(self) -> list[str]:
        return op_types(self.model)

    def __str__(self) -> str:
        return (f"{self.sqnr:.2f} dB ({self.shuffled_sqnr:.2f} dB on shuffled rows), "
                f"{self.size} B, {len(self.ops)} ops")


Runner = Callable[[Sequence[np.ndarray]], Sequence[np.ndarray]]  # inputs → outputs


def measure(model: bytes, inputs: Sequence[np.ndarray], reference: Sequence[np.ndarray],
            run: Runner | None = None) -> Converted:
    """The model's SQNR on ``inputs`` against the float ``reference`` outputs, and what an
    input-ignoring model would score (see ``assert_input_matters``). ``run`` runs the model
    (default: ``run_all``, whose output order the reference must follow)."""
    run = run or (lambda xs: run_all(model, xs))
    reference = [np.asarray(r) for r in reference]
    outputs = run(inputs)
    right = sqnr_db(flat(reference), flat(outputs))
    wrong = sqnr_db(flat(reference), flat(mismatched(outputs)))
    return Converted(model, right, wrong, constant_sqnr(reference))


def assert_input_matters(converted: Converted, what: str = "quantkit") -> None:
    """The reference varies with the input (its row mean scores < ``NEAR_CONSTANT_DB``) and
    the model follows it (≥ ``INPUT_MATTERS_DB`` better than on shuffled rows)."""
    report = (f"{what}: {converted}; the reference's mean over the rows scores "
              f"{converted.constant_sqnr:.2f} dB")
    assert converted.constant_sqnr < NEAR_CONSTANT_DB, f"near-constant reference: {report}"
    assert converted.sqnr >= converted.shuffled_sqnr + INPUT_MATTERS_DB, (
        f"the model scores about as well on shuffled rows: {report}")


def float_tensors_inside(model: bytes) -> list[str]:
    """Names of float32 tensors that are not a model input or output."""
    sub = read_model(model).subgraphs[0]
    io = set(sub.inputs) | set(sub.outputs)
    return [t.name for i, t in enumerate(sub.tensors) if t.dtype == np.float32 and i not in io]


def per_channel_mismatches(model: bytes) -> list[str]:
    """Weighted ops whose weight scale count is not their filter (output channel) count."""
    sub = read_model(model).subgraphs[0]
    wrong = []
    for op in sub.ops:
        layout = spec(op.type).weights
        if layout is None:
            continue
        w = sub.tensors[op.inputs[layout.weights_input]]
        if w.quant is None or len(w.quant.scales) != w.shape[layout.output_axis]:
            wrong.append(f"{op.type.name} {w.name}: {w.shape} with "
                         f"{0 if w.quant is None else len(w.quant.scales)} scales")
    return wrong


def assert_mode_as_good_as_tf(ours: Converted, theirs: Converted | None, floor_db: float,
                              what: str = "") -> None:
    """Guarded (``assert_input_matters``); SQNR ≥ ``floor_db`` and, where TF's model runs
    (``theirs``), ≥ TF's − ``SQNR_MARGIN_DB``; size ≤ ``SIZE_RATIO`` × TF's; op count ≤ TF's."""
    report = f"{what} quantkit: {ours}; TF: {theirs if theirs else 'does not run in LiteRT'}"
    assert_input_matters(ours)
    assert ours.sqnr >= floor_db, f"below the floor of {floor_db} dB: {report}"
    if theirs is None:
        return
    assert ours.sqnr >= theirs.sqnr - SQNR_MARGIN_DB, report
    assert ours.size <= SIZE_RATIO * theirs.size, report
    assert len(ours.ops) <= len(theirs.ops), f"{report}\n{ours.ops}\n{theirs.ops}"


def assert_as_good_as_tf(ours: Converted, theirs: Converted, floor_db: float) -> None:
    """The int8 targets: integer tensors inside, one weight scale per filter, and the margins
    of ``assert_mode_as_good_as_tf``."""
    assert not float_tensors_inside(ours.model), float_tensors_inside(ours.model)
    assert not per_channel_mismatches(ours.model), per_channel_mismatches(ours.model)
    assert_mode_as_good_as_tf(ours, theirs, floor_db, "int8")


def side_by_side(make_converter: MakeConverter, calibration: Any,
                 test_inputs: Sequence[np.ndarray], reference: Sequence[np.ndarray],
                 mode: str = "int8", io: tf.DType | None = None, fallback: bool = False
                 ) -> tuple[Converted, Converted | None]:
    """(quantkit, TF) converted in ``mode`` from the same model and calibration, measured on
    the same test inputs against the float ``reference`` outputs; TF's is None when its model
    does not run in LiteRT (TF's int16x8 SQUARED_DIFFERENCE)."""
    ours = measure(convert(quantkit, make_converter, mode, calibration, fallback, io),
                   test_inputs, reference)
    theirs_model = convert(tf.lite, make_converter, mode, calibration, fallback, io)
    try:
        theirs = measure(theirs_model, test_inputs, reference)
    except RuntimeError:
        theirs = None
    return ours, theirs
