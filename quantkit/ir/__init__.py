"""quantkit's intermediate representation: an object graph of tensors and TFLite-level ops."""

from quantkit.ir.graph import Graph, Op, Tensor

__all__ = ["Graph", "Op", "Tensor"]
