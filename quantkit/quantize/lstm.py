"""LiteRT's integer LSTM: UNIDIRECTIONAL_SEQUENCE_LSTM in its "8x8_16" kernel.

The float op (24 inputs in LiteRT's order, ``LstmInput``) computes, per time step ``t`` from
zero states (``σ``: the logistic function, ``act``: the fused activation, TANH)::

    i_t = σ(W_xi·x_t + W_hi·h_{t−1} + b_i)     (CIFG, no input weights: i_t = 1 − f_t)
    f_t = σ(W_xf·x_t + W_hf·h_{t−1} + b_f)
    g_t = act(W_xc·x_t + W_hc·h_{t−1} + b_c)
    c_t = clip(f_t ⊙ c_{t−1} + i_t ⊙ g_t, ±cell_clip)   (no clip when cell_clip = 0)
    o_t = σ(W_xo·x_t + W_ho·h_{t−1} + b_o)
    h_t = o_t ⊙ act(c_t)                        (the output at step t, and the next state)

LiteRT's integer kernel (``PopulateQuantizedLstmParams8x8_16`` and ``EvalInteger8x8_16`` in
its ``unidirectional_sequence_lstm.cc`` and ``lstm_eval.cc``) takes, without layer norm,
peepholes or projection (the Keras LSTM):

* input 0: int8, asymmetric, its own calibrated parameters ``(s_x, z_x)``;
* weights 1–8: int8 symmetric **per tensor** (the kernel reads one scale per matrix, a
  per-channel tensor's other scales would be ignored): ``s_w = max|W| / 127``;
* biases 12–15: int32, ``s_b = s_x·s_w`` of the gate's input weights (the kernel adds them to
  the input-to-gate accumulator, rescaled by ``s_x·s_w / 2^−12``);
* gate pre-activations: int16 in Q3.12 (``s = 2^−12``) without layer norm, fixed by the
  kernel (values past ±8 saturate, where σ and tanh are flat);
* output state 18 and the output: int8 ``(s_h, z_h)``, the output's calibrated range; the
  hidden ``o ⊙ tanh(c)`` is written straight into the output state at the 5th intermediate's
  parameters (``s = 2^−30 / s_h`` effective), so all three share ``(s_h, z_h)``;
* cell state 19: int16, ``z = 0``, a power-of-two scale ``s_c = 2^k`` (``CheckedLog2``):
  ``k = ceil(log2 max|c|) − 15`` over every step of the calibration data, clamped to
  ``[−15, −9]`` (the kernel's tanh of the cell takes 0…6 integer bits);
* intermediates: five tensors (the kernel refuses another count); the first four are read
  only with layer norm (written int16 at Q3.12), the fifth is the hidden's ``(s_h, z_h)``.

The cell state over time is inside the fused op, so calibration cannot read it from LiteRT:
``hidden_values`` runs the float LSTM above in numpy on the op's input as LiteRT computed it,
and returns the cell state over all steps under ``cell_state_name(op)`` for the observers.
LiteRT has no int16x8 kernel for this op (the op table's ``lacks``).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from quantkit.ir.graph import Graph, Op, Tensor
from quantkit.quantize import math as qm
from quantkit.quantize.edits import Edit, SetInput, SetIntermediates
from quantkit.types import Activation, OpType, QuantParams


class LstmInput(enum.IntEnum):
    """UNIDIRECTIONAL_SEQUENCE_LSTM's inputs, in LiteRT's order (``lstm_shared.h``)."""

    INPUT = 0
    INPUT_TO_INPUT = 1  # optional (CIFG when absent)
    INPUT_TO_FORGET = 2
    INPUT_TO_CELL = 3
    INPUT_TO_OUTPUT = 4
    RECURRENT_TO_INPUT = 5  # optional (CIFG)
    RECURRENT_TO_FORGET = 6
    RECURRENT_TO_CELL = 7
    RECURRENT_TO_OUTPUT = 8
    CELL_TO_INPUT = 9  # peepholes, optional
    CELL_TO_FORGET = 10
    CELL_TO_OUTPUT = 11
    INPUT_GATE_BIAS = 12  # optional (CIFG)
    FORGET_GATE_BIAS = 13
    CELL_GATE_BIAS = 14
    OUTPUT_GATE_BIAS = 15
    PROJECTION_WEIGHTS = 16  # optional
    PROJECTION_BIAS = 17  # optional
    OUTPUT_STATE = 18  # variable
    CELL_STATE = 19  # variable
    INPUT_LAYER_NORM = 20  # optional
    FORGET_LAYER_NORM = 21
    CELL_LAYER_NORM = 22
    OUTPUT_LAYER_NORM = 23


L = LstmInput
N_INPUTS = 24
# Per gate (input, forget, cell, output): its input weights, recurrent weights and bias.
GATES = ((L.INPUT_TO_INPUT, L.RECURRENT_TO_INPUT, L.INPUT_GATE_BIAS),
         (L.INPUT_TO_FORGET, L.RECURRENT_TO_FORGET, L.FORGET_GATE_BIAS),
         (L.INPUT_TO_CELL, L.RECURRENT_TO_CELL, L.CELL_GATE_BIAS),
         (L.INPUT_TO_OUTPUT, L.RECURRENT_TO_OUTPUT, L.OUTPUT_GATE_BIAS))
WEIGHTS = tuple(i for gate in GATES for i in gate[:2])
UNSUPPORTED_INPUTS = (L.CELL_TO_INPUT, L.CELL_TO_FORGET, L.CELL_TO_OUTPUT,
                      L.PROJECTION_WEIGHTS, L.PROJECTION_BIAS, L.INPUT_LAYER_NORM,
                      L.FORGET_LAYER_NORM, L.CELL_LAYER_NORM, L.OUTPUT_LAYER_NORM)
GATE_SCALE = 2.0**-12  # Q3.12: the kernel's gate pre-activations without layer norm
CELL_EXPONENTS = (-15, -9)  # s_c = 2^k: the kernel's tanh of the cell takes 0..6 integer bits
N_INTERMEDIATES = 5

_ACTIVATIONS: dict[Activation, Callable[[np.ndarray], np.ndarray]] = {
    Activation.TANH: np.tanh,
    Activation.RELU: lambda x: np.maximum(x, 0.0),
    Activation.RELU6: lambda x: np.clip(x, 0.0, 6.0),
}


def is_lstm(op: Op) -> bool:
    return op.type == OpType.UNIDIRECTIONAL_SEQUENCE_LSTM


def unsupported(op: Op) -> str | None:
    """Why LiteRT's integer kernel cannot take ``op`` as quantkit quantizes it (None: it can).

    quantkit quantizes the plain LSTM (CIFG allowed): 24 inputs, constant float weights and
    biases, both states variables, TANH, no peepholes, projection or layer norm."""
    problem = _structure(op)
    if problem is not None:
        return problem
    activation = getattr(op.options, "fused_activation_function", None)
    if activation != Activation.TANH:
        return f"fused activation {activation} (the integer kernel computes TANH)"
    if getattr(op.options, "diagonal_recurrent_tensors", False):
        return "diagonal recurrent weights"
    return None


def _structure(op: Op) -> str | None:
    """What keeps ``op`` from being the plain LSTM of the module docstring (None: it is)."""
    if len(op.inputs) != N_INPUTS:
        return f"{len(op.inputs)} inputs (the kernel takes {N_INPUTS})"
    present = [i.name.lower() for i in UNSUPPORTED_INPUTS if op.inputs[i] is not None]
    if present:
        return f"has {', '.join(present)} (quantkit's integer LSTM has none of these)"
    for index in WEIGHTS + tuple(g[2] for g in GATES):
        t = op.inputs[index]
        if t is None and index in (L.INPUT_TO_INPUT, L.RECURRENT_TO_INPUT, L.INPUT_GATE_BIAS):
            continue  # CIFG
        if t is None or not t.is_const:
            return f"its {L(index).name.lower()} is not a constant"
    for index in (L.OUTPUT_STATE, L.CELL_STATE):
        if op.inputs[index] is None or not op.inputs[index].is_variable:
            return f"its {L(index).name.lower()} is not a variable tensor"
    return None


# --- the float LSTM, for the values the fused op keeps inside ---------------------------------
@dataclass(frozen=True)
class Trace:
    """The float LSTM's values over all steps, laid out as the op's output (``[batch, time,
    units]``, or ``[time, batch, units]`` when time-major)."""

    hidden: np.ndarray  # h_t: the op's output
    cell: np.ndarray  # c_t


def float_lstm(op: Op, x: np.ndarray) -> Trace:
    """The float LSTM of the module docstring on ``x`` (the op's input 0), from zero states.

    Raises:
        ValueError: an activation this function does not compute, or a variant it does not
            (peepholes, projection, layer norm, non-constant weights).
    """
    problem = _structure(op)
    if problem is not None:
        raise ValueError(f"UNIDIRECTIONAL_SEQUENCE_LSTM op {op.name!r}: {problem}")
    activation = _ACTIVATIONS.get(op.options.fused_activation_function)
    if activation is None:
        raise ValueError(f"UNIDIRECTIONAL_SEQUENCE_LSTM op {op.name!r}: activation "
                         f"{op.options.fused_activation_function} has no float reference")
    x = np.asarray(x, np.float64)
    if op.options.time_major:
        x = x.transpose(1, 0, 2)
    data = {i: t.data.astype(np.float64) for i, t in enumerate(op.inputs)
            if t is not None and t.is_const}

    def gate(index: int, x_t: np.ndarray, h: np.ndarray) -> np.ndarray:
        w_x, w_h, b = (data[i] for i in GATES[index])
        return x_t @ w_x.T + h @ w_h.T + b

    def sigmoid(v: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-v))

    batch, steps = x.shape[:2]
    n_cell = data[L.INPUT_TO_FORGET].shape[0]
    h, c = np.zeros((batch, n_cell)), np.zeros((batch, n_cell))
    clip = float(op.options.cell_clip)
    cifg = op.inputs[L.INPUT_TO_INPUT] is None
    hidden, cell = np.empty((batch, steps, n_cell)), np.empty((batch, steps, n_cell))
    for t in range(steps):
        f = sigmoid(gate(1, x[:, t], h))
        i = 1.0 - f if cifg else sigmoid(gate(0, x[:, t], h))
        c = f * c + i * activation(gate(2, x[:, t], h))
        if clip > 0:
            c = np.clip(c, -clip, clip)
        h = sigmoid(gate(3, x[:, t], h)) * activation(c)
        hidden[:, t], cell[:, t] = h, c
    if op.options.time_major:
        hidden, cell = hidden.transpose(1, 0, 2), cell.transpose(1, 0, 2)
    return Trace(hidden.astype(np.float32), cell.astype(np.float32))


def cell_state_name(op: Op) -> str:
    """The name calibration statistics give an LSTM's cell state over time."""
    return f"{op.outputs[0].name}/cell_state"


def hidden_values(graph: Graph) -> Callable[[dict], dict] | None:
    """For calibration: from a batch's observed values, each quantizable LSTM's cell state over
    all steps (``float_lstm`` on its input), keyed ``cell_state_name``; None without one."""
    lstms = [op for op in graph.ops if is_lstm(op) and unsupported(op) is None]
    if not lstms:
        return None

    def derive(values: dict) -> dict:
        return {cell_state_name(op): float_lstm(op, values[op.inputs[0].name]).cell
                for op in lstms if op.inputs[0].name in values}
    return derive


# --- the integer kernel's parameters ----------------------------------------------------------
def cell_state_params(max_abs: float) -> QuantParams:
    """``s_c = 2^k`` with ``k = ceil(log2 max|c|) − 15`` clamped to ``[−15, −9]``, ``z = 0``:
    int16 codes cover ``±2^(k+15)`` ⊇ ``±max|c|`` (the kernel's tanh takes ``k + 15`` integer
    bits, 0 to 6)."""
    low, high = CELL_EXPONENTS
    k = math.ceil(math.log2(max_abs)) - 15 if max_abs > 0 else low
    return QuantParams((2.0 ** min(max(k, low), high),), (0,))


@dataclass(frozen=True)
class LstmParams:
    """Everything the integer kernel reads: per input index, its parameters; the
    intermediates' parameters in order."""

    inputs: dict[int, QuantParams]
    intermediates: tuple[QuantParams, ...]


def lstm_params(op: Op, input_params: QuantParams, output_params: QuantParams,
                cell_max: float) -> LstmParams:
    """The parameters of the module docstring: per-tensor int8 weights ``s_w = max|W|/127``,
    int32 biases ``s_b = s_x·s_w(input weights of the gate)``, the output state at the
    output's ``(s_h, z_h)``, the cell state at ``cell_state_params(cell_max)``; intermediates
    four Q3.12 gates and the hidden at ``(s_h, z_h)``."""
    params: dict[int, QuantParams] = {}
    for w_x, w_h, bias in GATES:
        if op.inputs[w_x] is None:  # CIFG: no input gate
            continue
        params[w_x] = qm.weight_params(op.inputs[w_x].data, None)
        params[w_h] = qm.weight_params(op.inputs[w_h].data, None)
        params[bias] = qm.bias_params(input_params, params[w_x])
    params[L.INPUT] = input_params
    params[L.OUTPUT_STATE] = output_params
    params[L.CELL_STATE] = cell_state_params(cell_max)
    gate = QuantParams((GATE_SCALE,), (0,))
    return LstmParams(params, (gate,) * 4 + (output_params,))


def integer_edits(op: Op, params: LstmParams) -> list[Edit]:
    """The edits that give ``op`` the kernel's inputs: int8 weights, int32 biases, new int8
    and int16 variable states, and the five intermediates (input 0 and the output are the
    planner's, at ``params.inputs[0]`` and the output state's parameters). A constant two
    inputs share (TF shares equal biases) is quantized once per parameters, each copy under
    its own name."""
    made: dict[tuple[int, QuantParams], Tensor] = {}
    names: set[str] = set()

    def quantized(index: int, quantize, storage: qm.Storage) -> Tensor:
        t, p = op.inputs[index], params.inputs[index]
        if (id(t), p) not in made:
            name = t.name if t.name not in names else f"{t.name}/{L(index).name.lower()}"
            names.add(name)
            data = quantize(t.data, p, storage)
            made[(id(t), p)] = Tensor(name, data.dtype, t.shape, data, p)
        return made[(id(t), p)]

    edits: list[Edit] = []
    for w_x, w_h, bias in GATES:
        for index in (w_x, w_h):
            if op.inputs[index] is not None:
                edits.append(SetInput(op, index, quantized(index, qm.quantize_weights,
                                                           qm.INT8_WEIGHTS)))
        if op.inputs[bias] is not None:
            edits.append(SetInput(op, bias, quantized(bias, qm.quantize_bias, qm.INT32_BIAS)))
    for index, dtype in ((L.OUTPUT_STATE, np.int8), (L.CELL_STATE, np.int16)):
        state = op.inputs[index]
        edits.append(SetInput(op, index, Tensor(state.name, np.dtype(dtype), state.shape,
                                                quant=params.inputs[index], is_variable=True)))
    kinds = ("input_gate", "forget_gate", "cell_gate", "output_gate", "hidden")
    dtypes = (np.int16,) * (N_INTERMEDIATES - 1) + (np.int8,)
    edits.append(SetIntermediates(op, [
        Tensor(f"{op.outputs[0].name}/{name}", np.dtype(dtype), (0,), quant=p)
        for name, dtype, p in zip(kinds, dtypes, params.intermediates)]))
    return edits
