"""The float runtime: runs a float IR graph in LiteRT and returns the tensors calibration observes.

Calibration runs the graph quantkit will write (after lowering and passes), not the source
model, so every tensor it observes is one the quantized model will have, and its float
semantics are LiteRT's own (no second implementation of the ops to drift from it). As
onnxruntime's calibrator augments its graph, ``LiteRTExecutor`` writes a copy of the graph with
quantkit's writer in which every observed tensor is a graph output: LiteRT then keeps them
(outputs are never reused by its memory planner) and its default XNNPACK delegate stays on.
(``experimental_preserve_all_tensors`` would keep them too, but it turns XNNPACK off: on
MobileNetV2 at 224, 36 samples in batches of 9, 3.2 s against 2.3 s, same ranges.)

The interpreter is kept between batches; it is resized and re-allocated only when the batch
size changes. A graph whose batch dim is fixed is fed batches of exactly that size (the
calibration runner feeds such a graph one sample at a time). A graph with variable tensors (a
fused RNN's states, whose batch dim is fixed) has them reset to zeros before each batch, so
each batch is run as a fresh call of the model, not as the continuation of the previous one.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from typing import Callable, Mapping, Sequence

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from quantkit.litert import batch_states, resize_batch
from quantkit.ir.graph import Graph, Tensor
from quantkit.tflite_io import write_model
from quantkit.types import ConversionError, OpType, Phase

# The description of the models written here. tests/mutation.py feeds noise to every model
# whose description starts with "quantkit"; it skips this marker, since a calibration model
# fed noise would only move the ranges, not break a test that can see a broken model.
CALIBRATION_DESCRIPTION = "quantkit-calibration float graph"

# LiteRT names the failing node by its index and kind: "Node number 3 (CONV_2D) failed ...";
# inside the XNNPACK delegate the node is the delegate, so the graph is rerun without it.
_NODE = re.compile(r"[Nn]ode number (\d+) \((\w+)\)")


class ExecutorError(ConversionError):
    """A graph the runtime cannot run, or inputs that do not fit it (a calibration error)."""

    def __init__(self, message: str):
        super().__init__(Phase.CALIBRATION, message)


def calibration_graph(graph: Graph, observe: Sequence[Tensor]) -> Graph:
    """A copy of ``graph`` whose outputs are the ``observe`` tensors (``graph`` is unchanged).

    The copy shares the ops and tensors (nothing is written to them) but has its own lists, so
    the quantizer later reads the graph exactly as the passes left it.
    """
    return dataclasses.replace(
        graph, ops=list(graph.ops), inputs=list(graph.inputs), outputs=list(observe),
        input_names=list(graph.input_names) or [t.name for t in graph.inputs],
        output_names=[t.name for t in observe])


class LiteRTExecutor:
    """Runs a float IR graph in LiteRT on batches; returns the observed tensors' values by name.

    Args:
        graph: the float graph, after lowering and passes; its tensor names must be unique.
            It is not modified.
        observe: the tensors whose values to return; by default every non-constant tensor
            the graph uses (its inputs included), in first-use order, but variables (states)
            and op intermediates.
        num_threads: LiteRT's threads (None: its default).
        copy: return copies (True) or read-only views of LiteRT's buffers (False: no copy of
            the batch's activations, which calibration reads once; a view is valid until the
            next call, and holding one through it is an error).
        description: the written model's description (the debugger's quantized graphs are
            quantkit models, not calibration graphs: tests/mutation.py tells them apart by it).
        derive: values computed from each batch's observed ones, returned with them (values
            a fused op keeps inside: an LSTM's cell state, ``quantize.lstm.hidden_values``).

    Raises:
        ExecutorError: repeated tensor names, an observed tensor the graph does not use, or a
            graph LiteRT cannot load or prepare (the op named: a custom op, a kernel that
            refuses its shapes).
    """

    def __init__(self, graph: Graph, observe: Sequence[Tensor] | None = None,
                 num_threads: int | None = None, copy: bool = True,
                 description: str = CALIBRATION_DESCRIPTION,
                 derive: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None):
        self.graph = graph
        self.copy = copy
        self.derive = derive
        used = graph.tensors()
        _check_names(used)
        self._variables = any(t.is_variable for t in used)
        if observe is None:  # values: not states, nor the parameter holders of intermediates
            inner = {t for op in graph.ops for t in op.intermediates}
            observe = [t for t in used if not t.is_const and not t.is_variable
                       and t not in inner]
        unknown = [t.name for t in observe if t not in set(used)]
        if unknown:
            raise ExecutorError(f"graph {graph.name!r} does not use the observed tensors "
                                f"{unknown}")
        self.observed: list[Tensor] = list(dict.fromkeys(observe))
        self.input_names = list(graph.input_names) or [t.name for t in graph.inputs]
        inputs = set(graph.inputs)
        # Graph inputs are returned as fed; the others become outputs of the written copy.
        self._outputs = [t for t in self.observed if t not in inputs]
        self._model = write_model([calibration_graph(graph, self._outputs)],
                                  description=description)
        self._in_index: list[int] = []
        self._states = batch_states(self._model) if self._variables else []
        self._shapes: list[tuple[int, ...]] | None = None  # the inputs' shapes allocated for
        self._interpreter = self._guarded("loading", lambda: Interpreter(
            model_content=self._model, num_threads=num_threads))
        self._in_index = [d["index"] for d in self._interpreter.get_input_details()]
        self._out_index = [d["index"] for d in self._interpreter.get_output_details()]
        self._guarded("preparing", self._interpreter.allocate_tensors)

    @property
    def batch_size(self) -> int | None:
        """The batch every call must have when the graph fixes it, else None (any batch)."""
        dims = {t.shape[0] for t in self.graph.inputs if t.shape}
        return dims.pop() if len(dims) == 1 and None not in dims else None

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch.

        Args:
            inputs: one array per graph input, keyed by its signature name, the batch on axis 0.

        Returns:
            ``{tensor name: value}`` for the observed tensors, the batch on axis 0, in
            ``observe`` order (copies, or views valid until the next call: ``copy``).
        """
        arrays = [self._checked(name, t, inputs)
                  for name, t in zip(self.input_names, self.graph.inputs)]
        extra = sorted(set(inputs) - set(self.input_names))
        if extra:
            raise ExecutorError(f"unknown inputs {extra}; the graph's are {self.input_names}")
        self._resize([x.shape for x in arrays])
        interpreter = self._interpreter
        for index, x in zip(self._in_index, arrays):
            interpreter.set_tensor(index, x)
        if self._variables:  # states start from zeros, as in a fresh call of the model
            interpreter.reset_all_variables()
        self._guarded("running", interpreter.invoke)
        values = {t: x for t, x in zip(self.graph.inputs, arrays)}
        values.update(zip(self._outputs, map(self._read, self._out_index)))
        named = {t.name: values[t] for t in self.observed}
        if self.derive is not None:
            named.update(self.derive(named))
        return named

    def _read(self, index: int) -> np.ndarray:
        if self.copy:
            return self._interpreter.get_tensor(index)
        view = self._interpreter.tensor(index)()
        if not isinstance(view, np.ndarray):  # a 0-d tensor reads as a scalar (a copy)
            return np.asarray(view)
        view.flags.writeable = False
        return view

    def _resize(self, shapes: list[tuple[int, ...]]) -> None:
        """Re-allocate only when the input shapes change (a new batch size)."""
        if shapes == self._shapes:
            return
        for index, shape in zip(self._in_index, shapes):
            self._interpreter.resize_tensor_input(index, list(shape))
        if self._states and shapes and shapes[0]:  # dynamic-batch states follow the input
            resize_batch(self._interpreter, self._states, shapes[0][0])
        self._shapes = shapes
        self._guarded("preparing", self._interpreter.allocate_tensors)

    def _checked(self, name: str, t: Tensor, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        if name not in inputs:
            raise ExecutorError(f"input {name!r} is missing; the graph's inputs are "
                                f"{self.input_names}")
        x = np.asarray(inputs[name], dtype=t.dtype, order="C")  # a scalar stays 0-d
        if t.shape is not None and (x.ndim != len(t.shape) or any(
                d is not None and d != n for d, n in zip(t.shape, x.shape))):
            wanted = [-1 if d is None else d for d in t.shape]
            raise ExecutorError(f"input {name!r} has shape {list(x.shape)}; the graph takes "
                                f"{wanted} (-1: any size)")
        return x

    def _guarded(self, step: str, call):
        """``call()``, with LiteRT's failure turned into an error naming the op at fault."""
        try:
            return call()
        except (RuntimeError, ValueError) as e:
            message = str(e)
        if "reference to internal data" in message:  # LiteRT's guard for views still held
            raise ExecutorError(f"the arrays of the previous call (views, copy=False) are "
                                f"still held while {step} graph {self.graph.name!r}; copy them "
                                f"or use copy=True")
        culprit = self._culprit(message)
        if not culprit:  # inside a delegate: the builtin kernels name the op and say why
            plain = self._without_delegates()
            culprit, message = self._culprit(plain), plain or message
        raise ExecutorError(f"LiteRT failed {step} graph {self.graph.name!r}{culprit}: "
                            f"{_first_line(message)}")

    def _without_delegates(self) -> str:
        """LiteRT's error on the same inputs with its builtin kernels only ('' if none)."""
        try:
            interpreter = Interpreter(model_content=self._model, experimental_op_resolver_type=
                                      OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            for index, shape in zip(self._in_index, self._shapes or []):
                interpreter.resize_tensor_input(index, list(shape))
            interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as e:
            return str(e)
        return ""

    def _culprit(self, message: str) -> str:
        """`` at OP op 'name' (outputs ...)`` for the op LiteRT's message names, else every
        custom op of the graph, else ''."""
        for index, kind in _NODE.findall(message):
            if int(index) < len(self.graph.ops) and self.graph.ops[int(index)].type.name == kind:
                return f" at {_describe(self.graph.ops[int(index)])}"
        custom = [_describe(op) for op in self.graph.ops if op.type == OpType.CUSTOM]
        return f" (it has {', '.join(custom)}, which LiteRT cannot run)" if custom else ""


def _describe(op) -> str:
    kind = op.type.name + (f" ({op.custom_code})" if op.custom_code else "")
    return f"{kind} op {op.name!r} (outputs {[t.name for t in op.outputs]})"


def _first_line(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[0] if lines else "(no message)"


def _check_names(tensors: list[Tensor]) -> None:
    repeated = sorted(n for n, k in Counter(t.name for t in tensors).items() if k > 1)
    if repeated:
        raise ExecutorError(f"tensor names must be unique to report values by name; repeated: "
                            f"{repeated}")
