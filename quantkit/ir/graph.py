"""The IR: tensors and ops linked by object references.

Ops are TFLite builtins (``OpType``) with their options as frozen dataclasses
(``quantkit.ir.options``). Nothing here knows flatbuffer indices: the writer assigns them.
A ``None`` dimension is dynamic (written as -1 in ``shape_signature``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from quantkit.types import OpType, QuantParams, TrainedRange


@dataclass(eq=False)
class Tensor:
    """A value in the graph: an activation, a graph input, or a constant (``data`` set)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...] | None  # None: rank unknown
    data: np.ndarray | None = None
    quant: QuantParams | None = None
    trained_range: TrainedRange | None = None  # from a FakeQuant op the frontend dropped
    # A state the runtime keeps from one invoke to the next (a fused RNN's hidden/cell state):
    # written with ``is_variable``, no buffer, zeros after ``AllocateTensors`` and
    # ``reset_all_variables()``.
    is_variable: bool = False

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def static_shape(self) -> bool:
        return self.shape is not None and all(d is not None for d in self.shape)

    def __repr__(self) -> str:
        kind = "const" if self.is_const else "tensor"
        return f"<{kind} {self.name!r} {np.dtype(self.dtype).name}{list(self.shape or [])}>"


def const(name: str, value: Any, dtype: Any = None) -> Tensor:
    """A constant tensor holding ``value`` (a numpy array or anything ``np.asarray`` takes)."""
    data = np.asarray(value, dtype=dtype, order="C")  # (ascontiguousarray makes 0-d arrays 1-d)
    return Tensor(name, data.dtype, tuple(data.shape), data)


@dataclass(eq=False)
class Op:
    """One TFLite operator. ``inputs`` may hold ``None`` for an absent optional input."""

    type: OpType
    inputs: list[Tensor | None]
    outputs: list[Tensor]
    options: Any = None
    name: str = ""  # the TF node it came from, for error messages
    custom_code: str | None = None  # for OpType.CUSTOM
    custom_options: bytes | None = None  # a CUSTOM op's options (flexbuffer), written as is
    # Tensors a kernel reads only their quantization from (the integer LSTM's gate and hidden
    # scales): the schema's ``Operator.intermediates``.
    intermediates: list[Tensor] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"<{self.type.name} {self.name!r}>"


@dataclass(eq=False)
class Graph:
    """A subgraph: ops in topological order, its inputs and outputs, and signature names."""

    ops: list[Op] = field(default_factory=list)
    inputs: list[Tensor] = field(default_factory=list)
    outputs: list[Tensor] = field(default_factory=list)
    input_names: list[str] = field(default_factory=list)  # signature names, one per input
    output_names: list[str] = field(default_factory=list)
    signature_key: str = "serving_default"
    name: str = "main"

    # --- queries -------------------------------------------------------------------------
    def producers(self) -> dict[Tensor, Op]:
        return {t: op for op in self.ops for t in op.outputs}

    def consumers(self) -> dict[Tensor, list[Op]]:
        uses: dict[Tensor, list[Op]] = {}
        for op in self.ops:
            for t in op.inputs:
                if t is not None:
                    uses.setdefault(t, []).append(op)
        return uses

    def tensors(self) -> list[Tensor]:
        """Every tensor the graph uses, in first-use order (inputs first)."""
        seen: dict[Tensor, None] = dict.fromkeys(self.inputs)
        for op in self.ops:
            for t in [*op.inputs, *op.outputs, *op.intermediates]:
                if t is not None:
                    seen.setdefault(t, None)
        for t in self.outputs:
            seen.setdefault(t, None)
        return list(seen)

    # --- edits ---------------------------------------------------------------------------
    def replace_uses(self, old: Tensor, new: Tensor) -> None:
        """Make every reader of ``old`` (ops and graph outputs) read ``new`` instead."""
        for op in self.ops:
            op.inputs = [new if t is old else t for t in op.inputs]
        self.outputs = [new if t is old else t for t in self.outputs]

    def repeated_activation_names(self) -> list[str]:
        """Names two non-constant tensors share (none, in a graph after lowering)."""
        seen: set[str] = set()
        repeated = []
        for t in self.tensors():
            if not t.is_const:
                (repeated.append if t.name in seen else seen.add)(t.name)
        return repeated

    def uniquify_names(self) -> None:
        """Suffix repeated tensor names (``w``, ``w_1``, ...), once, right after lowering: from
        then on a tensor's name is its identity (calibration statistics are keyed by it)."""
        seen: set[str] = set()
        for t in self.tensors():
            name, n = t.name, 0
            while name in seen:
                n += 1
                name = f"{t.name}_{n}"
            t.name = name
            seen.add(name)

    def remove_ops(self, dead: Iterable[Op]) -> None:
        dead_ids = {id(op) for op in dead}
        self.ops = [op for op in self.ops if id(op) not in dead_ids]

    def remove_dead_ops(self) -> int:
        """Drop ops none of whose outputs reach a graph output. Returns how many went."""
        live: set[Tensor] = set(self.outputs)
        kept: list[Op] = []
        for op in reversed(self.ops):
            if any(t in live for t in op.outputs):
                kept.append(op)
                live.update(t for t in op.inputs if t is not None)
        removed = len(self.ops) - len(kept)
        self.ops = kept[::-1]
        return removed


def subgraphs(graphs: Iterable[Graph]) -> list[Graph]:
    """``graphs`` then every graph their ops' options reference (a WHILE's condition and
    body), recursively, each once, in first-reference order: the order the writer gives them
    subgraph indices in."""
    found: dict[Graph, None] = dict.fromkeys(graphs)
    pending = list(found)
    while pending:
        for op in pending.pop(0).ops:
            for value in vars(op.options).values() if op.options is not None else ():
                if isinstance(value, Graph) and value not in found:
                    found[value] = None
                    pending.append(value)
    return list(found)


def while_ops(graph: Graph) -> list[Op]:
    """The graph's WHILE ops whose options hold their condition and body graphs (as lowered,
    not as read back from a .tflite, whose options hold subgraph indices)."""
    return [op for op in graph.ops if op.type == OpType.WHILE
            and isinstance(getattr(op.options, "body_subgraph", None), Graph)]


def variable_slots(loop: Op) -> tuple[list[Tensor], ...]:
    """The five lists loop variable ``k`` of a WHILE (``while_ops``) has entry ``k`` in: the
    op's inputs and outputs, its condition's inputs, its body's inputs and outputs."""
    cond, body = loop.options.cond_subgraph, loop.options.body_subgraph
    return loop.inputs, loop.outputs, cond.inputs, body.inputs, body.outputs


# --- unrolled loops ---------------------------------------------------------------------------
_STEP = re.compile(r"/step_\d+/")


def loop_step_scope(loop: str, step: int) -> str:
    """The name scope of step ``step`` of the unrolled loop ``loop``: the ops lowered from the
    loop's body are named inside it (``in_unrolled_loop``)."""
    return f"{loop}/step_{step}"


def in_unrolled_loop(op: Op) -> bool:
    """Whether ``op`` was lowered from the body of an unrolled loop (an RNN cell's step)."""
    return _STEP.search(op.name + "/") is not None
