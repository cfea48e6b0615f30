"""Operator versions and minimum runtime versions, read from the op table.

The rows live in each op's spec (``quantkit.ops.table``: ``versions``, ``runtime``,
``int16.min_version``); this module explains them and looks them up.

Facts from TF's ``tensorflow/compiler/mlir/lite/tools/versioning/op_version.cc``
(``GetBuiltinOperatorVersion``) and ``runtime_version.cc`` (``FindMinimumRuntimeVersionForOp``),
checked against what TF 2.21's converter writes for the same ops in each of its modes
(``tests/test_versions_vs_tf.py``, which also lists the rows TF cannot write and why).

An op's ``versions`` are ordered rows ``(version, condition)``: the first row whose
condition holds for the op gives its version, the order in which TF checks its cases. The last
row of every op is unconditional, so an op that has rows always gets a version.

Rules kept on purpose:

* An op type with no row raises ``ConversionError`` naming the op and listing what the table
  covers. TF silently uses version 1 for unlisted ops, but some ops start above 1
  (``BROADCAST_TO`` starts at 2), so a guessed version could make LiteRT refuse the model.
* The table has rows for exactly the op types quantkit's lowerings, passes and quantizer can
  emit (a test reads them from the source): a type nothing emits has no rows until something
  does. ``CUSTOM`` ops have version 1 and no runtime requirement, as in TF's tables.
* Within a type, only rows that something quantkit writes can reach: not TF's int4/int2/
  uint32/string/bfloat16 cases, int16 weights, two-input FULLY_CONNECTED (quantkit always
  writes the bias slot), symmetric hybrid FULLY_CONNECTED (quantkit asks for asymmetric
  inputs, as TF does), per-channel QUANTIZE/DEQUANTIZE, STRIDED_SLICE's ``offset`` (not in
  the IR), nor the int16 rows keyed on ``pot_scale_int16``/``quantized_bias_type``, which only
  int16x8 models set (versioned as below).
* Where TF's converter writes another version than ``op_version.cc`` and LiteRT runs the model
  either way, the table follows the converter: its versions are what LiteRT receives from TF
  (and what selective op resolvers register). int16 integer (unquantized) ADD is 1 and MUL 4,
  where op_version.cc says 5 and 7.

int16x8 models (int16 activations, int8 weights) are versioned as TF's converter writes them:
it quantizes them with its older quantizer (``tensorflow/lite/tools/optimize``), which does not
use op_version.cc. Every op of a type in that quantizer's table keeps the version of its float
form, raised to the type's minimum (its spec's ``int16.min_version``); so int16 LOGISTIC is 2
(op_version.cc: 3), a 16x8 CONV_2D 3 (op_version.cc: 8), and int32 shape arithmetic in the
model is raised too (STRIDED_SLICE 2). QUANTIZE float → int16 is 1, an int16 requantize 2,
DEQUANTIZE int16 → float 2. One difference is kept: TF also raises to 2 a QUANTIZE that
follows an op left float, whose OperatorCode the input's QUANTIZE then shares; quantkit writes
1 there (which QUANTIZE follows a float op is a fact of the graph, not of the op). LiteRT runs
every one of these versions: its kernels check tensor types, not versions. The model's
``min_runtime_version`` follows its versions, so an int16x8 model names as old a runtime as
TF's versions do, older than LiteRT's int16 kernels (TF's own metadata keeps the float model's).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from quantkit.ir.graph import Op, Tensor
from quantkit.ops import OPS
from quantkit.types import ConversionError, OpType, Phase

_FLOAT32 = np.dtype(np.float32)
_INT16 = np.dtype(np.int16)


# --- lookups ---------------------------------------------------------------------------------


def is_int16x8_model(ops: Iterable[Op]) -> bool:
    """Whether a model with these ops is an int16x8 one: some tensor is quantized int16."""
    return any(t is not None and t.quant is not None and np.dtype(t.dtype) == _INT16
               for op in ops for t in (*op.inputs, *op.outputs))


def op_version(op: Op, int16x8: bool = False) -> int:
    """The schema version of ``op``: the first of its spec's ``versions`` rows that holds.

    In an int16x8 model, an op whose spec has ``int16.min_version`` gets
    ``max(version of its float form, minimum)``, as TF's int16x8 quantizer writes it.

    Args:
        op: an IR op; its tensors' dtypes, shapes and quantization and its options are read.
        int16x8: the op is in an int16x8 model (``is_int16x8_model`` of all its ops).

    Returns:
        The operator version to write in the op's ``OperatorCode``.

    Raises:
        ConversionError: the op type has no rows (the message lists the covered op types).
    """
    spec = OPS.get(op.type)
    minimum = spec.int16.min_version if int16x8 and spec is not None else None
    if minimum is not None:
        return max(_first_row(float_form(op)), minimum)
    return _first_row(op)


def float_form(op: Op) -> Op:
    """``op`` before quantization: each quantized tensor as float32."""
    def unquantized(t: Tensor | None) -> Tensor | None:
        return t if t is None or t.quant is None else Tensor(t.name, _FLOAT32, t.shape)

    return Op(op.type, [unquantized(t) for t in op.inputs], [unquantized(t) for t in op.outputs],
              op.options, op.name, op.custom_code)


def _first_row(op: Op) -> int:
    spec = OPS.get(op.type)
    rows = spec.versions if spec is not None else ()
    if not rows:
        covered = ", ".join(sorted(t.name for t, s in OPS.items() if s.versions))
        raise ConversionError(
            Phase.WRITING,
            f"no operator-version rule for {op.type.name} (op {op.name!r}); "
            f"the op table (quantkit/ops/table.py) covers: {covered}",
        )
    for version, condition in rows:
        if condition(op):
            return version
    raise AssertionError(f"the rows of {op.type.name} end without an unconditional row")


def runtime_version(op_type: OpType, version: int) -> str | None:
    """The first runtime that runs ``version`` of ``op_type``; None for ops with no requirement.

    Raises:
        ConversionError: the op table has no runtime for the (op, version) pair.
    """
    spec = OPS.get(op_type)
    row = spec.runtime if spec is not None else ()
    if row is None:
        return None
    found = row[version - 1] if 1 <= version <= len(row) else None
    if found is None:
        raise ConversionError(
            Phase.WRITING, f"no minimum runtime version known for {op_type.name} version {version}"
        )
    return found


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(part) for part in v.split("."))


def min_runtime_version(op_versions: Iterable[tuple[OpType, int]]) -> str:
    """The oldest TFLite runtime that runs every (op type, version) pair given.

    Args:
        op_versions: the (op type, version) pairs a model uses; CUSTOM ops are skipped.

    Returns:
        A version string such as ``"2.3.0"``; ``""`` when no pair has a requirement.

    Raises:
        ConversionError: the op table has no runtime for a pair.
    """
    found = [runtime_version(t, v) for t, v in op_versions]
    known = [v for v in found if v is not None]
    return max(known, key=_version_key) if known else ""
