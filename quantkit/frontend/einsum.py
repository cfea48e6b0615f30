"""TF ``Einsum`` with two operands → TRANSPOSE / RESHAPE around one BATCH_MATMUL or
FULLY_CONNECTED (the attention einsums of Keras ``MultiHeadAttention``, ``EinsumDense``).

The labels of ``a,b->out`` fall into four groups: batch (in a, b and out), contracted (in a
and b only), a's free labels and b's free labels (in one operand and out). Then

    out[batch, free_a, free_b] = Σ_contract a[batch, free_a, contract] · b[batch, contract, free_b]

which is BATCH_MATMUL once a is ``[batch…, Π free_a, Π contract]`` and b ``[batch…,
Π contract, Π free_b]`` (or transposed, read through ``adj_x``/``adj_y`` where that saves a
TRANSPOSE); a constant b without batch labels is a FULLY_CONNECTED weight ``[Π free_b,
Π contract]``. The result is reshaped and transposed to ``out``'s order. The operands are
swapped where that makes the output order need no TRANSPOSE.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantkit.frontend.builder import GraphBuilder, zero_bias
from quantkit.ir import options as o
from quantkit.ir.graph import Tensor
from quantkit.types import OpType


@dataclass(frozen=True)
class Labels:
    """An equation's label groups, each in the order the output lists its labels
    (``contract`` in a's order)."""

    batch: str
    free_a: str
    free_b: str
    contract: str


def parse(equation: str) -> tuple[str, str, str]:
    """``"ab,bc->ac"`` → ("ab", "bc", "ac"); a ValueError for forms this lowering lacks."""
    eq = equation.replace(" ", "")
    if "..." in eq or "->" not in eq or eq.count(",") != 1:
        raise ValueError(f"equation {equation!r}: only two operands with an explicit output "
                         "and no ellipsis")
    lhs, out = eq.split("->")
    a, b = lhs.split(",")
    for labels in (a, b, out):
        if len(set(labels)) != len(labels):
            raise ValueError(f"equation {equation!r}: a label repeats within an operand "
                             "(a diagonal)")
    if set(out) - set(a) - set(b) or (set(a) ^ set(b)) - set(out):
        raise ValueError(f"equation {equation!r}: a label summed within one operand")
    return a, b, out


def groups(a: str, b: str, out: str) -> Labels:
    return Labels("".join(x for x in out if x in a and x in b),
                  "".join(x for x in out if x in a and x not in b),
                  "".join(x for x in out if x in b and x not in a),
                  "".join(x for x in a if x in b and x not in out))


def _dims(ctx: GraphBuilder, tensors: list[tuple[str, Tensor]]) -> dict[str, int | None]:
    dims: dict[str, int | None] = {}
    for labels, t in tensors:
        if t.shape is None or len(t.shape) != len(labels):
            raise ctx.error(f"operand {t.name!r} has shape {t.shape}, the equation names "
                            f"{len(labels)} dims")
        for label, d in zip(labels, t.shape):
            if dims.get(label) is None:
                dims[label] = d
    return dims


class _Lowering:
    def __init__(self, ctx: GraphBuilder, dims: dict[str, int | None]):
        self.ctx, self.dims, self.n = ctx, dims, 0

    def _suffix(self, what: str) -> str:
        self.n += 1
        return f"einsum_{what}_{self.n}"

    def size(self, labels: str) -> int | None:
        sizes = [self.dims[x] for x in labels]
        return None if None in sizes else int(np.prod(sizes, dtype=np.int64))

    def transpose(self, t: Tensor, have: str, want: str) -> Tensor:
        if have == want:
            return t
        perm = tuple(have.index(x) for x in want)
        suffix = self._suffix("transposed")
        out = self.ctx.new_tensor(suffix, t.dtype, tuple(self.dims[x] for x in want))
        return self.ctx.emit(OpType.TRANSPOSE, [t, self.ctx.constant(f"{suffix}/perm", perm,
                                                                    np.int32)], out=out)

    def reshape(self, t: Tensor, shape: list[int | None]) -> Tensor:
        if t.shape is not None and tuple(t.shape) == tuple(shape) and shape.count(None) <= 1:
            return t
        if shape.count(None) > 1:
            raise self.ctx.error("Einsum: a reshape with more than one dynamic dim")
        suffix = self._suffix("reshaped")
        out = self.ctx.new_tensor(suffix, t.dtype, shape)
        target = [-1 if d is None else d for d in shape]
        return self.ctx.emit(OpType.RESHAPE, [t, self.ctx.constant(f"{suffix}/shape", target,
                                                                  np.int32)], out=out)


def lower(ctx: GraphBuilder, equation: str, a: Tensor, b: Tensor) -> None:
    """Emit the ops for ``einsum(equation, a, b)``; they stand for the current op's output."""
    try:
        la, lb, out = parse(equation)
    except ValueError as e:
        raise ctx.error(str(e)) from None
    g = groups(la, lb, out)
    if out != g.batch + g.free_a + g.free_b and out == g.batch + g.free_b + g.free_a:
        (la, a), (lb, b) = (lb, b), (la, a)  # the swapped product needs no output TRANSPOSE
        g = groups(la, lb, out)
    low = _Lowering(ctx, _dims(ctx, [(la, a), (lb, b)]))
    if b.is_const and not g.batch and g.free_a and not a.is_const:
        y, have = _fully_connected(low, g, la, a, lb, b)
    else:
        y, have = _batch_matmul(low, g, la, a, lb, b)
    if have == out:
        ctx.bind_results([y])  # the last intermediate stands for the output
        return
    ctx.emit(OpType.TRANSPOSE, [y, ctx.constant("perm", [have.index(x) for x in out],
                                                np.int32)])


def _fully_connected(low: _Lowering, g: Labels, la: str, a: Tensor, lb: str, b: Tensor
                     ) -> tuple[Tensor, str]:
    """a ``[free_a…, contract…]`` · W ``[Π free_b, Π contract]``ᵀ → ``[free_a…, Π free_b]``."""
    x = low.transpose(a, la, g.free_a + g.contract)
    x = low.reshape(x, [low.dims[c] for c in g.free_a] + [low.size(g.contract)])
    w = np.transpose(b.data, [lb.index(c) for c in g.free_b + g.contract])
    w = w.reshape(low.size(g.free_b), low.size(g.contract))
    weights = low.ctx.constant(low._suffix("weights"), w, b.dtype)
    units = w.shape[0]
    suffix = low._suffix("fc")
    y = low.ctx.new_tensor(suffix, a.dtype, [low.dims[c] for c in g.free_a] + [units])
    keep = len(g.free_a) > 1
    y = low.ctx.emit(OpType.FULLY_CONNECTED, [x, weights, zero_bias(low.ctx, units, b.dtype)],
                     o.FullyConnectedOptions(keep_num_dims=keep), out=y)
    if len(g.free_b) == 1:
        return y, g.free_a + g.free_b
    y = low.reshape(y, [low.dims[c] for c in g.free_a + g.free_b])
    return y, g.free_a + g.free_b


def _operand(low: _Lowering, t: Tensor, have: str, batch: str, rows: str, cols: str
             ) -> tuple[Tensor, bool]:
    """``t`` as ``[batch…, Π rows, Π cols]``, or as ``[batch…, Π cols, Π rows]`` read
    transposed (True) where its order already is that."""
    adjoint = have == batch + cols + rows and have != batch + rows + cols
    order = batch + cols + rows if adjoint else batch + rows + cols
    t = low.transpose(t, have, order)
    first, second = (cols, rows) if adjoint else (rows, cols)
    shape = [low.dims[x] for x in batch] + [low.size(first) if first else 1,
                                            low.size(second) if second else 1]
    if None in shape[len(batch):] and (len(first) != 1 or len(second) != 1):
        raise low.ctx.error("Einsum: a dynamic dim among the contracted or free dims")
    return low.reshape(t, shape), adjoint


def _batch_matmul(low: _Lowering, g: Labels, la: str, a: Tensor, lb: str, b: Tensor
                  ) -> tuple[Tensor, str]:
    x, adj_x = _operand(low, a, la, g.batch, g.free_a, g.contract)
    y, adj_y = _operand(low, b, lb, g.batch, g.contract, g.free_b)
    rows, cols = low.size(g.free_a) if g.free_a else 1, low.size(g.free_b) if g.free_b else 1
    suffix = low._suffix("matmul")
    shape = [low.dims[c] for c in g.batch] + [rows, cols]
    out = low.ctx.new_tensor(suffix, a.dtype, shape)
    out = low.ctx.emit(OpType.BATCH_MATMUL, [x, y], o.BatchMatMulOptions(adj_x, adj_y),
                       out=out)
    if len(g.free_a) == 1 and len(g.free_b) == 1:
        return out, g.batch + g.free_a + g.free_b
    return low.reshape(out, [low.dims[c] for c in g.batch + g.free_a + g.free_b]), \
        g.batch + g.free_a + g.free_b
