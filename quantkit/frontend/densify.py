"""A sparse TFLite constant (``SparsityParameters``) → its dense numpy array.

TFLite stores a sparse tensor of rank ``n`` as a traversal over ``n + k`` levels: the tensor's
dims in ``traversal_order[:n]``, then ``k`` block dims that split the dims ``block_map`` names
(dim ``d = block_map[j]`` of size ``D`` becomes ``D / B`` blocks of ``B = dense_size`` each).
A DENSE level visits every index ``0 … dense_size − 1``; a SPARSE_CSR level visits, below the
parent position ``p``, the indices ``indices[segments[p] : segments[p + 1]]``. The stored
values are the traversal's leaves, in order: ``dense[orig(leaf)] = values[leaf]`` with
``orig(d) = outer_d · B + inner_d`` for a blocked dim.
"""

from __future__ import annotations

import numpy as np

from quantkit.tflite_io.reader import SparsityInfo


def densify(values: np.ndarray, shape: tuple[int, ...], sparsity: SparsityInfo) -> np.ndarray:
    """The dense tensor of ``shape`` whose stored (nonzero) ``values`` ``sparsity`` lays out.

    Raises:
        ValueError: the layout does not fit the shape or the number of values.
    """
    rank, order, block_map = len(shape), sparsity.traversal_order, sparsity.block_map
    levels = rank + len(block_map)
    if len(order) != levels or len(sparsity.dims) != levels or sorted(order) != list(
            range(levels)):
        raise ValueError(f"traversal order {list(order)} and {len(sparsity.dims)} dimension "
                         f"levels do not fit rank {rank} with {len(block_map)} block dims")
    positions = np.zeros(1, np.int64)  # position of each partial path in its level
    index_columns = []  # per level, the index every path takes there
    for level, dim in enumerate(sparsity.dims):
        if dim.sparse:
            segments, indices = dim.segments, dim.indices
            if segments is None or indices is None or positions.size and (
                    positions.max() + 1 >= segments.size or segments[-1] > indices.size):
                raise ValueError(f"level {level}: segments and indices do not cover the "
                                 "parent level")
            counts = segments[positions + 1] - segments[positions]
            starts = np.repeat(segments[positions], counts)
            offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            new_positions = starts + offsets
            index_columns = [np.repeat(c, counts) for c in index_columns]
            index_columns.append(indices[new_positions])
            positions = new_positions
        else:
            size = dim.dense_size
            index_columns = [np.repeat(c, size) for c in index_columns]
            index_columns.append(np.tile(np.arange(size), positions.size))
            positions = (positions[:, None] * size + np.arange(size)).ravel()
    if positions.size != values.size:
        raise ValueError(f"the layout has {positions.size} stored values, the buffer "
                         f"{values.size}")
    orig = [None] * rank
    for level in range(rank):
        orig[order[level]] = index_columns[level]
    for level in range(rank, levels):
        block = order[level] - rank
        d = block_map[block]
        orig[d] = orig[d] * sparsity.dims[level].dense_size + index_columns[level]
    dense = np.zeros(shape, values.dtype)
    if values.size:
        if any(np.any(orig[d] >= shape[d]) for d in range(rank)):
            raise ValueError(f"an index lies outside the shape {list(shape)}")
        dense[tuple(orig)] = values
    return dense
