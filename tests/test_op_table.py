"""The op table's consistency (``quantkit.ops``): a test per row, driven by the table.

The rows' behaviour is tested elsewhere, each test iterating over the table: integer rules per
scheme in LiteRT (``test_quantize_rules.py``), versions (``test_tflite_versions.py``,
``test_versions_vs_tf.py``), options round trips (``test_tflite_io.py``), folding and fusion
(``test_passes.py``). Here: the rows agree with themselves, with the options classes and with
the one-op cases, and each kernel a row says a scheme lacks is really lacking in LiteRT.
"""

from __future__ import annotations

import dataclasses

import pytest
from ai_edge_litert.interpreter import Interpreter

from quantkit.metrics import sqnr_db
from quantkit.ops import OPS, BiasCorrection, OutputRule
from quantkit.ops.spec import INTEGER_SCHEMES
from quantkit.types import Activation, QuantMode
from tests import test_quantize_rules as rules
from tests.side_by_side import flat, run_all

ROWS = sorted(OPS.values(), key=lambda s: s.op.name)


def _fields(cls: type | None) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)} if cls is not None else set()


@pytest.mark.parametrize("spec", ROWS, ids=lambda s: s.op.name)
def test_row_is_consistent(spec):
    """Each fact of a row fits the others: options fields for what the row sets in them,
    weights for what reads weights, a runtime for each version, rules only with kernels."""
    options = _fields(spec.options)
    if spec.fusable:
        assert "fused_activation_function" in options
        assert Activation.NONE not in spec.fusable
    if spec.int16.bias_type_option:
        assert "quantized_bias_type" in options and spec.weights is not None
    if spec.int16.general_scaling:
        assert "pot_scale_int16" in options
    if spec.hybrid is not None and spec.hybrid.asymmetric_inputs:
        assert "asymmetric_quantize_inputs" in options
    if spec.hybrid is not None and spec.hybrid.per_channel or spec.int16.bias is not None \
            or spec.bias_correction is not BiasCorrection.NONE:
        assert spec.weights is not None
    assert spec.lacks <= INTEGER_SCHEMES and (not spec.lacks or spec.quant is not None)
    if spec.quant is not None:
        assert (spec.quant.output is OutputRule.FIXED) == (spec.quant.fixed is not None)
    if spec.versions:
        assert sorted({v for v, _ in spec.versions}) == sorted(v for v, _ in spec.versions)
        assert spec.runtime is None or len(spec.runtime) >= max(v for v, _ in spec.versions)
    else:  # read only: quantkit never writes it, so nothing else can be known about it
        assert (spec.quant, spec.weights, spec.fold, spec.runtime) == (None, None, None, ())


WEIGHTED = [s for s in ROWS if s.weights is not None]


@pytest.mark.parametrize("spec", WEIGHTED, ids=lambda s: s.op.name)
def test_weight_layout_fits_the_op(spec):
    """On the row's one-op case (``test_quantize_rules.CASES``): the activation input is the
    graph's input and the rule's only activation, the bias has one value per output channel,
    and the input axis counts the input's channels (depthwise: × its multiplier)."""
    layout = spec.weights
    graph = rules.CASES[spec.op].graph()
    (op,) = graph.ops
    w, bias = op.inputs[layout.weights_input], op.inputs[layout.bias_input]
    activation = op.inputs[layout.activation_input]
    assert activation is graph.inputs[0] and w.is_const and bias.is_const
    assert spec.quant.activations == (layout.activation_input,)
    assert len({layout.weights_input, layout.bias_input, layout.activation_input}) == 3
    assert layout.output_axis != layout.input_axis or spec.bias_correction \
        is BiasCorrection.DEPTHWISE
    assert bias.shape == (w.shape[layout.output_axis],)
    assert w.shape[layout.input_axis] % activation.shape[-1] == 0


LACKING = [(mode, spec.op) for spec in ROWS for mode in sorted(spec.lacks, key=str)]
_MODES = {mode.quant: (mode, offset) for mode, offset in rules.SCHEMES.values()}


def _sqnr(case: rules.Case, mode) -> float:
    """SQNR of the case quantized in ``mode`` against its float model, on the test samples
    drawn as the calibration ones were (no clamping: as test_rule's last check)."""
    float_model, int_model = rules.quantized(case, mode)
    tests = [xs for xs, k in zip(rules._test_data(case), rules.TEST_WIDENING) if k == 1.0]
    expected = [run_all(float_model, xs) for xs in tests]
    actual = [run_all(int_model, xs) for xs in tests]
    return sqnr_db(flat(sum(expected, [])), flat(sum(actual, [])))


@pytest.mark.parametrize("mode, op_type", LACKING,
                         ids=[f"{m.value}-{t.name}" for m, t in LACKING])
def test_lacked_kernel_is_lacking_in_litert(monkeypatch, mode, op_type):
    """Each kernel a row says a scheme lacks: with the row claiming it, LiteRT refuses the
    one-op model (its kernel checks the tensor types, whatever the values: invoked on its
    allocated tensors as they are), or the model runs but misses the SQNR bar of the scheme's
    other rows where the same op in int8 meets it on the same data (int16 PRELU: 9.9 dB against
    a 40 dB bar). Claiming int16 RELU lacking fails here: it runs, at 83 dB."""
    spec = OPS[op_type]
    monkeypatch.setitem(OPS, op_type, dataclasses.replace(spec, lacks=frozenset()))
    conversion, offset = _MODES[mode]
    case = rules.CASES[op_type]
    interpreter = Interpreter(model_content=rules.quantized(case, conversion)[1])
    try:
        interpreter.allocate_tensors()
        interpreter.invoke()
    except RuntimeError as refused:  # LiteRT: "... Node number 0 (OP) failed to invoke."
        assert "failed to" in str(refused)
        return
    assert _sqnr(case, rules.INT8_IO) >= case.min_sqnr, "int8, which has the kernel"
    sqnr = _sqnr(case, conversion)
    assert sqnr < case.min_sqnr + offset, f"{op_type.name} runs in {mode.value}: {sqnr:.1f} dB"


def test_every_integer_scheme_is_a_quant_mode():
    assert INTEGER_SCHEMES == {QuantMode.FULL_INTEGER, QuantMode.INT16X8,
                               QuantMode.LEGACY_UINT8}
    assert set(_MODES) == INTEGER_SCHEMES
