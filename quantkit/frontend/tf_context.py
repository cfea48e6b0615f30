"""The TF frontend's builder: what a ``tf_ops`` lowering row sees of the TF node it lowers."""

from __future__ import annotations

from typing import Any

import numpy as np

from quantkit.frontend.builder import GraphBuilder
from quantkit.ir.graph import Graph, Tensor


def ir_tensor(name: str, tf_tensor: Any) -> Tensor:
    """An IR tensor typed and shaped as TF inferred ``tf_tensor`` (None dims stay dynamic)."""
    shape = None if tf_tensor.shape.rank is None else tuple(tf_tensor.shape.as_list())
    return Tensor(name, np.dtype(tf_tensor.dtype.as_numpy_dtype), shape)


class TFContext(GraphBuilder):
    """TF tensors mapped to IR tensors, for the ``tf.Operation`` being lowered (``node``)."""

    def __init__(self, graph: Graph, library: Any = None, prefix: str = "",
                 bodies: dict | None = None, fused_rnns: frozenset = frozenset()):
        super().__init__(graph, prefix)
        self.library = library  # the traced tf.Graph: it holds every function its calls run
        self.tensors: dict[str, Tensor] = {}  # TF tensor name (in this scope) → IR tensor
        self.node: Any = None  # the tf.Operation being lowered, for names and errors
        self.bodies = {} if bodies is None else bodies  # function bodies, by call node
        # the RNN cells (tf_rnn.FusedCell) loops become fused sequence ops for; with
        # FusedCell.LOOP other loops become WHILE ops (tf_while), else they are unrolled
        self.fused_rnns = fused_rnns

    def scope(self, name: str) -> "TFContext":
        return TFContext(self.graph, self.library, f"{self.prefix}{name}/", self.bodies,
                         self.fused_rnns)

    @property
    def name(self) -> str:
        return self.prefix + self.node.name

    @property
    def op_type(self) -> str:
        return self.node.type

    # --- reading TF inputs ----------------------------------------------------------------
    def input(self, index: int) -> Tensor:
        return self.tensors[self.node.inputs[index].name]

    def inputs(self) -> list[Tensor]:
        return [self.tensors[t.name] for t in self.node.inputs]

    def describe_input(self, index: int) -> str:
        return f"input {index} ({self.node.inputs[index].name})"

    def attr(self, name: str) -> Any:
        value = self.node.get_attr(name)
        return value.decode() if isinstance(value, bytes) else value

    # --- the node's outputs ------------------------------------------------------------------
    def output_tensor(self, index: int = 0) -> Tensor:
        """The IR tensor for the node's TF output ``index``, typed and shaped by TF."""
        name = self.name if index == 0 else f"{self.name}:{index}"
        return ir_tensor(name, self.node.outputs[index])

    def result_tensors(self, count: int, shape: Any = None) -> list[Tensor]:
        tensors = [self.output_tensor(i) for i in range(count)]
        if shape is not None:
            tensors[0].shape = tuple(shape)
        return tensors

    def bind_results(self, tensors: list[Tensor]) -> None:
        for i, tensor in enumerate(tensors):
            self.alias(tensor, i)

    def alias(self, tensor: Tensor, index: int = 0) -> None:
        """The node's output ``index`` is ``tensor`` itself (pass-through ops)."""
        self.tensors[self.node.outputs[index].name] = tensor
