"""Keras RNN loops as TFLite's fused sequence ops: UNIDIRECTIONAL_SEQUENCE_LSTM and _RNN.

A Keras LSTM or SimpleRNN traces to a ``While`` whose body runs the cell once per time step
(``tf_loops``). Where the body is Keras's default cell, the loop becomes one fused op over the
whole sequence (TFLite's kernels, as TF's converter writes for tf_keras LSTMs):

* LSTM: ``z = x·W + h·U + b`` split into the gates i, f, c, o (Keras's order, which is
  LiteRT's), ``c' = σ(f)·c + σ(i)·tanh(c)``, ``h' = σ(o)·tanh(c')``
  → UNIDIRECTIONAL_SEQUENCE_LSTM (24 inputs: no peepholes, projection or layer norms);
* SimpleRNN: ``h' = tanh(x·W + h·U + b)`` → UNIDIRECTIONAL_SEQUENCE_RNN.

How the body is recognised: it is lowered once into a scratch graph with its step input and
states bound to placeholders, and the IR matched (``_match_lstm``, ``_match_rnn``). The lowering
has already made MatMul a FULLY_CONNECTED with [out, in] weights and BiasAdd an ADD, and folded
the weight reads, so Keras models and SavedModels look the same here. A second scratch step
checks that step k reads item k of the sequence and writes item k (a returned sequence) or
item 0 (the last output only). Anything else (other activations, a recurrent_activation other
than sigmoid, masking, a cell Keras does not write this way, a loop whose final cell state is
read: ``return_state``) is unrolled as before; so is GRU, which has no fused op.

The fused ops keep their states in variable tensors (zeros at load and after
``reset_all_variables()``; the loop's initial states must be zeros). LiteRT carries them from
one invoke to the next, so a stateless Keras layer needs a reset between calls
(``quantkit.litert`` does it). A state has the input's batch; a dynamic one is written as
batch 1 with shape_signature −1, and LiteRT resizes a state as it resizes an input
(``quantkit.litert.resize_batch``; README, "RNNs").
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from quantkit.frontend import tf_loops
from quantkit.frontend.tf_context import TFContext
from quantkit.frontend.tf_loops import TensorList, slice_axis
from quantkit.ir import options as o
from quantkit.ir.graph import Graph, Op, Tensor
from quantkit.types import Activation, ConversionError, OpType


class FusedCell(enum.Enum):
    """An RNN cell the TF frontend can lower to a fused TFLite sequence op; ``LOOP``: any
    other loop (a GRU's) becomes a TFLite WHILE with its condition and body as subgraphs
    (``tf_while``). A loop whose kind is not in the mode's set is unrolled (``tf_loops``)."""

    LSTM = "lstm"  # UNIDIRECTIONAL_SEQUENCE_LSTM
    SIMPLE_RNN = "simple_rnn"  # UNIDIRECTIONAL_SEQUENCE_RNN
    LOOP = "loop"  # WHILE (float modes and int8: calibration replays its body)


ALL_CELLS = frozenset(FusedCell)


@dataclass(frozen=True)
class Cell:
    """A matched cell: its weights with the gates stacked in Keras's order (LSTM: i, f, c, o)."""

    kind: FusedCell
    weights: np.ndarray  # [gates·units, features]
    recurrent: np.ndarray  # [gates·units, units]
    bias: np.ndarray  # [gates·units]
    read: int  # the index of the sequence item the step read
    written: int  # the index of the output list item the step wrote


@dataclass(frozen=True)
class _Roles:
    """What each loop variable of a Keras RNN's While is."""

    sequence: int  # the input TensorList (from TensorListFromTensor)
    outputs: int  # the output TensorList
    states: tuple[int, ...]  # float states (LSTM: h, c; SimpleRNN: h)
    counters: tuple[int, ...]  # constant integer scalars (time, loop counter, bound)


# --- matching the scratch graph ------------------------------------------------------------------
class _Graph:
    """The scratch graph's producers, read through the op types a cell is made of."""

    def __init__(self, graph: Graph):
        self.producers = graph.producers()

    def op(self, t: Tensor | None, op_type: OpType) -> Op | None:
        op = self.producers.get(t) if t is not None else None
        if op is None or op.type != op_type or getattr(
                op.options, "fused_activation_function", Activation.NONE) != Activation.NONE:
            return None
        return op

    def unary(self, t: Tensor, op_type: OpType) -> Tensor | None:
        """The input of ``t = op_type(input)``."""
        op = self.op(t, op_type)
        return op.inputs[0] if op is not None else None

    def product(self, t: Tensor) -> tuple[Tensor, Tensor] | None:
        op = self.op(t, OpType.MUL)
        return (op.inputs[0], op.inputs[1]) if op is not None else None

    def terms(self, t: Tensor) -> list[Tensor]:
        """The summands of a tree of ADDs."""
        op = self.op(t, OpType.ADD)
        return [t] if op is None else self.terms(op.inputs[0]) + self.terms(op.inputs[1])

    def affine(self, z: Tensor, h: Tensor, sequence: tuple[Tensor, ...]
               ) -> tuple[Tensor, np.ndarray, np.ndarray, np.ndarray] | None:
        """``z = x·Wᵀ + h·Uᵀ + b`` with x an item of ``sequence``: (x, W, U, b)."""
        found: dict[str, Any] = {}
        bias = np.zeros([], np.float32)
        for t in self.terms(z):
            if t.is_const:
                bias = bias + t.data
                continue
            fc = self.op(t, OpType.FULLY_CONNECTED)
            if fc is None or fc.options.keep_num_dims or not fc.inputs[1].is_const \
                    or not (fc.inputs[2] is None or fc.inputs[2].is_const):
                return None
            role = "U" if fc.inputs[0] is h else "W" if fc.inputs[0] in sequence else None
            if role is None or role in found:
                return None
            found[role] = fc
            if fc.inputs[2] is not None:
                bias = bias + fc.inputs[2].data
        if set(found) != {"W", "U"}:
            return None
        w, u = found["W"].inputs[1].data, found["U"].inputs[1].data
        if bias.size not in (1, w.shape[0]) or u.shape != (w.shape[0], h.shape[-1]):
            return None
        bias = np.broadcast_to(bias.reshape(-1), (w.shape[0],)).astype(np.float32)
        return found["W"].inputs[0], w, u, bias


def _gate(g: _Graph, t: Tensor, op_type: OpType, split: Op | None, k: int) -> Op | None:
    """The SPLIT whose output ``k`` ``t = op_type(·)`` reads (the one given, if any)."""
    pre = g.unary(t, op_type)
    op = g.op(pre, OpType.SPLIT)
    if op is None or (split is not None and op is not split) or op.outputs.index(pre) != k:
        return None
    return op


def _match_lstm(g: _Graph, h: Tensor, c: Tensor, h_out: Tensor, c_out: Tensor,
                sequence: tuple[Tensor, ...]) -> tuple[Tensor, np.ndarray, np.ndarray,
                                                       np.ndarray] | None:
    """Keras's LSTM cell (implementation 2): (x, W, U, b) or None."""
    pair = g.product(h_out)  # h' = σ(o)·tanh(c')
    if pair is None:
        return None
    o_gate, activated = pair if g.unary(pair[1], OpType.TANH) is c_out else pair[::-1]
    if g.unary(activated, OpType.TANH) is not c_out:
        return None
    split = _gate(g, o_gate, OpType.LOGISTIC, None, 3)
    terms = g.terms(c_out)  # c' = σ(f)·c + σ(i)·tanh(g)
    if split is None or len(terms) != 2 or len(split.outputs) != 4:
        return None
    products = [g.product(t) for t in terms]
    if any(p is None for p in products):
        return None
    kept = next((p for p in products if c in p), None)
    if kept is None:
        return None
    new = products[1 - products.index(kept)]
    forget = kept[1] if kept[0] is c else kept[0]
    i_gate, candidate = new if g.unary(new[0], OpType.LOGISTIC) is not None else new[::-1]
    if None in (_gate(g, forget, OpType.LOGISTIC, split, 1),
                _gate(g, i_gate, OpType.LOGISTIC, split, 0),
                _gate(g, candidate, OpType.TANH, split, 2)):
        return None
    axis = split.inputs[0]
    if not axis.is_const or int(np.reshape(axis.data, -1)[0]) % 2 != 1:  # the units axis
        return None
    return g.affine(split.inputs[1], h, sequence)


def _match_rnn(g: _Graph, h: Tensor, h_out: Tensor, sequence: tuple[Tensor, ...]
               ) -> tuple[Tensor, np.ndarray, np.ndarray, np.ndarray] | None:
    """Keras's SimpleRNN cell with tanh: (x, W, U, b) or None."""
    pre = g.unary(h_out, OpType.TANH)
    return None if pre is None else g.affine(pre, h, sequence)


# --- the loop -------------------------------------------------------------------------------
def _roles(node: Any, values: list) -> _Roles | None:
    """The loop variables' roles, or None for a loop that is not a plain Keras RNN's."""
    sequences, outputs, states, counters = [], [], [], []
    for i, (tf_in, value) in enumerate(zip(node.inputs, values)):
        if isinstance(value, TensorList):
            (sequences if value.source is not None else outputs).append(i)
        elif tf_in.dtype == tf.resource:
            continue  # a weight, read as a constant in the body
        elif tf_in.dtype.is_floating and value.is_const and value.data.ndim == 2 \
                and not value.data.any():
            states.append(i)
        elif tf_in.dtype.is_integer and value.is_const and value.data.size == 1:
            counters.append(i)
        else:
            return None
    if len(sequences) != 1 or len(outputs) != 1 or len(states) not in (1, 2):
        return None
    source = values[sequences[0]].source
    if source.shape is None or len(source.shape) != 3 or None in source.shape[::2]:
        return None
    return _Roles(sequences[0], outputs[0], tuple(states), tuple(counters))


def _scratch_step(ctx: TFContext, values: list, roles: _Roles,
                  lower_nodes: Callable[[TFContext, list], None]
                  ) -> tuple[Cell, list] | None:
    """Lower the body once into a scratch graph (states and sequence items as placeholders)
    and match the cell; with the body's results (its counters constants)."""
    node = ctx.node
    source = values[roles.sequence].source
    sequence = tuple(Tensor(f"x_{t}", source.dtype, source.shape[1:])
                     for t in range(source.shape[0]))
    bound = list(values)
    bound[roles.sequence] = TensorList(sequence)
    states = [Tensor(f"state_{i}", values[i].dtype, values[i].shape) for i in roles.states]
    for i, state in zip(roles.states, states):
        bound[i] = state
    graph = Graph()
    scratch = TFContext(graph, ctx.library, f"{ctx.prefix}{node.name}/match/", ctx.bodies)
    body = tf_loops.function_graph(ctx, f"{ctx.name}/body", node.get_attr("body").name, bound)
    for param, value in zip(body.inputs, bound):
        scratch.tensors[param.name] = value
    try:
        lower_nodes(scratch, body.get_operations())
    except ConversionError:
        return None  # unrolling reports it
    results = [scratch.tensors.get(t.name) for t in body.outputs]
    written = results[roles.outputs]
    if not isinstance(written, TensorList) or any(results[i] is None for i in roles.states):
        return None
    changed = [(k, t) for k, t in enumerate(written.items)
               if t is not None and values[roles.outputs].items[k] is not t]
    g = _Graph(graph)
    if len(states) == 2:
        kind = FusedCell.LSTM
        match = _match_lstm(g, *states, *(results[i] for i in roles.states), sequence)
    else:
        kind = FusedCell.SIMPLE_RNN
        match = _match_rnn(g, states[0], results[roles.states[0]], sequence)
    if match is None or len(changed) != 1 or changed[0][1] is not results[roles.states[0]]:
        return None
    x, w, u, b = match
    return Cell(kind, w, u, b, sequence.index(x), changed[0][0]), results


def _trip_count(ctx: TFContext, cond: Any, values: list, roles: _Roles, results: list) -> int:
    """How many steps the loop runs, its counters stepping as the first step moved them."""
    steps = {}
    for i in roles.counters:
        if results[i] is None or not results[i].is_const:
            return -1
        steps[i] = results[i].data - values[i].data
    current = list(values)
    for n in range(tf_loops.MAX_STEPS + 1):
        try:
            if not tf_loops.loop_condition(ctx, cond, current):
                return n
        except ConversionError:
            return -1
        for i, step in steps.items():
            current[i] = Tensor(values[i].name, values[i].dtype, values[i].shape,
                                current[i].data + step)
    return -1


def lower_fused(ctx: TFContext, cond: Any, lower_nodes: Callable[[TFContext, list], None],
                cells: frozenset[FusedCell]) -> bool:
    """Lower the While ``ctx.node`` to one fused sequence op if it is a Keras RNN of one of
    ``cells``; False (nothing emitted) otherwise."""
    if not cells:
        return False
    node = ctx.node
    values = [ctx.tensors[t.name] for t in node.inputs]
    roles = _roles(node, values)
    if roles is None:
        return False
    first = _scratch_step(ctx, values, roles, lower_nodes)
    if first is None or first[0].kind not in cells:
        return False
    cell, results = first
    source = values[roles.sequence].source
    steps = source.shape[0]
    second_values = list(values)
    for i in roles.counters:
        second_values[i] = results[i]
    second_values[roles.outputs] = results[roles.outputs]
    second = _scratch_step(ctx, second_values, roles, lower_nodes)
    if second is None:
        return False
    length = len(values[roles.outputs].items)
    reads = [c.read for c in (cell, second[0])]
    writes = [c.written for c in (cell, second[0])]
    returns_sequence = writes == [0, 1] and length == steps
    if reads != [0, 1] or not (returns_sequence or (writes == [0, 0] and length == 1)):
        return False
    if _trip_count(ctx, cond, values, roles, results) != steps:
        return False
    used = {i for i, t in enumerate(node.outputs) if t.consumers()}
    if not used <= {roles.outputs, roles.states[0]}:
        return False  # the final cell state or a counter is read (return_state)
    _emit(ctx, cell, source, roles, returns_sequence)
    return True


def _batch_major(ctx: TFContext, x: Tensor) -> Tensor | None:
    """``x`` [time, batch, ...] as [batch, time, ...] without a new TRANSPOSE: the input of
    the TRANSPOSE that made it (Keras's, to time-major), reversed along time if ``x`` was
    (``go_backwards``); None when there is none."""
    rank = len(x.shape)
    op = ctx.producer(x, OpType.TRANSPOSE)
    swap = [1, 0, *range(2, rank)]
    if op is not None and op.inputs[1].is_const and list(op.inputs[1].data) == swap:
        return op.inputs[0]
    op = ctx.producer(x, OpType.STRIDED_SLICE)
    if op is None or not all(t.is_const for t in op.inputs[1:]):
        return None
    begin, strides = op.inputs[1].data, op.inputs[3].data
    reverse = (list(strides) == [-1] + [1] * (rank - 1) and begin[0] == -1
               and op.options == o.StridedSliceOptions(begin_mask=(1 << rank) - 2,
                                                       end_mask=(1 << rank) - 1))
    inner = _batch_major(ctx, op.inputs[0]) if reverse else None
    return None if inner is None else slice_axis(ctx, inner, 1, -1, None, "reversed", stride=-1)


def _emit(ctx: TFContext, cell: Cell, source: Tensor, roles: _Roles,
          returns_sequence: bool) -> None:
    """The fused op and what the loop's outputs become."""
    node = ctx.node
    x = _batch_major(ctx, source)
    time_major = x is None
    x = source if time_major else x
    steps, batch = (source.shape[0], source.shape[1])
    units = cell.recurrent.shape[1]
    dtype = np.dtype(np.float32)

    def state(name: str) -> Tensor:  # a dynamic batch: batch 1, shape_signature −1
        return Tensor(f"{ctx.name}/{name}", dtype, (batch, units), is_variable=True)

    shape = (steps, batch, units) if time_major else (batch, steps, units)
    out = ctx.new_tensor("sequence", dtype, shape)
    if cell.kind is FusedCell.LSTM:
        gates = [ctx.constant(f"{part}_{gate}", array[k * units:(k + 1) * units])
                 for part, array in (("kernel", cell.weights), ("recurrent_kernel",
                                                                 cell.recurrent))
                 for k, gate in enumerate("ifco")]
        biases = [ctx.constant(f"bias_{gate}", cell.bias[k * units:(k + 1) * units])
                  for k, gate in enumerate("ifco")]
        inputs = [x, *gates, None, None, None, *biases, None, None,
                  state("output_state"), state("cell_state"), None, None, None, None]
        ctx.emit(OpType.UNIDIRECTIONAL_SEQUENCE_LSTM, inputs,
                 o.UnidirectionalSequenceLSTMOptions(time_major=time_major), out=out)
    else:
        inputs = [x, ctx.constant("kernel", cell.weights),
                  ctx.constant("recurrent_kernel", cell.recurrent),
                  ctx.constant("bias", cell.bias), state("hidden_state")]
        ctx.emit(OpType.UNIDIRECTIONAL_SEQUENCE_RNN, inputs,
                 o.SequenceRNNOptions(time_major=time_major), out=out)
    time_axis = 0 if time_major else 1
    last = slice_axis(ctx, out, time_axis, steps - 1, steps, "last", shrink=True)
    if returns_sequence:
        stacked = out if time_major else ctx.emit(
            OpType.TRANSPOSE, [out, ctx.constant("time_major", [1, 0, 2], np.int32)],
            out=ctx.new_tensor("time_major", dtype, (steps, batch, units)))
        outputs = TensorList((None,) * steps, stacked=stacked)
    else:
        outputs = TensorList((last,))
    ctx.tensors[node.outputs[roles.outputs].name] = outputs
    ctx.tensors[node.outputs[roles.states[0]].name] = last
