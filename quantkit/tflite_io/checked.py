"""Bounds-checked reading of a flatbuffer, for files quantkit did not write.

The generated ``tflite`` accessors follow every offset they find: a corrupt file makes them
raise ``struct.error``, ``IndexError`` or ``UnicodeDecodeError`` with raw offsets, or read
garbage without complaint. ``Table`` checks what the flatbuffers verifier checks before it
follows anything, and raises ``MalformedModelError`` (a ``ValueError``) naming the field by its
path (``subgraphs[0].tensors[3].buffer``) and its byte position:

- a table starts 4-aligned inside the bytes; its vtable (``pos − soffset``) is 2-aligned,
  inside the bytes, has an even size ≥ 4, and the table's inline size fits in the bytes;
- every field the vtable lists (read or not) lies inside its table's inline size, aligned to
  its own size; an offset field is nonzero, below 2³¹ and points into the bytes;
- a vector or string: a 4-aligned length word inside the bytes, its elements inside the bytes;
  a string ends with a NUL and is UTF-8.

Where each field lives (its vtable slot, scalar type, default, vector item size) is not
written down here: ``fields`` asks the binding's builder functions (``TensorAddBuffer`` writes
slot 2, uint32), so the schema has one source. Tables the reader never opens (a tensor's
sparsity, custom quantization details) get the shallow check only: their offset is followed,
their own fields are not.
"""

from __future__ import annotations

import functools
import re
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from quantkit.tflite_io import schema

_U16, _U32, _I32 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<i")

# Scalar kind (the name in the builder's ``Prepend<Kind>Slot``) → its struct format.
_SCALARS: dict[str, str] = {
    "Bool": "<?", "Int8": "<b", "Uint8": "<B", "Int16": "<h", "Uint16": "<H", "Int32": "<i",
    "Uint32": "<I", "Int64": "<q", "Uint64": "<Q", "Float32": "<f", "Float64": "<d",
    "UOffsetTRelative": "<I",
}


class MalformedModelError(ValueError):
    """A TFLite file that breaks the flatbuffer format or the schema; names field and byte."""

    def __init__(self, where: str, position: int | None, problem: str):
        at = "" if position is None else f" at byte {position}"
        super().__init__(f"invalid TFLite model: {where or 'root'}{at}: {problem}")
        self.where, self.position, self.problem = where, position, problem


@dataclass(frozen=True)
class Field:
    """A table field as the binding writes it: vtable slot, scalar kind, default, and for a
    vector the size of its items."""

    name: str  # snake case, as the schema
    slot: int
    kind: str  # of Prepend<kind>Slot: Int8 ... Float64, or UOffsetTRelative (table, vector)
    default: Any
    item_size: int | None = None

    @property
    def size(self) -> int:
        """Bytes in the table (1 for a kind the reader does not know)."""
        return struct.calcsize(_SCALARS[self.kind]) if self.kind in _SCALARS else 1


class _Recorder:
    """Stands in for ``flatbuffers.Builder``: records the ``Prepend*Slot`` or ``StartVector``
    call a generated builder function makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, method: str) -> Any:
        return lambda *args: self.calls.append((method, args))


@functools.cache
def fields(table: str) -> dict[int, Field]:
    """Every field of schema table ``table`` by slot, from the binding's builder functions
    (``TensorAddBuffer`` → ``PrependUint32Slot(2, …)``; ``TensorStartShapeVector`` →
    ``StartVector(4, …)``)."""
    module = schema.module(table)
    result = {}
    for attr in dir(module):
        camel = attr.removeprefix(f"{table}Add")
        if camel == attr:
            continue
        add, start = _Recorder(), _Recorder()
        getattr(module, attr)(add, 0)
        (method, (slot, _, default)), = add.calls
        kind = method.removeprefix("Prepend").removesuffix("Slot")
        vector = getattr(module, f"{table}Start{camel}Vector", None)
        if vector is not None:
            vector(start, 0)
        item_size = start.calls[0][1][0] if start.calls else None
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()
        result[slot] = Field(name, slot, kind, default, item_size)
    return result


@functools.cache
def field(table: str, name: str) -> Field:
    """The field ``name`` (snake case) of schema table ``table``."""
    found = [f for f in fields(table).values() if schema.camel(f.name) == schema.camel(name)]
    if not found:
        raise AttributeError(f"the schema table {table} has no field {name!r}")
    return found[0]


class Table:
    """One table of ``data`` at ``pos``, of schema table ``kind``, reached through ``path``."""

    __slots__ = ("data", "pos", "kind", "path", "_vtable", "_vtable_size", "_size")

    def __init__(self, data: bytes, pos: int, kind: str, path: str):
        self.data, self.pos, self.kind, self.path = data, pos, kind, path
        _check_span(data, pos, 4, path, "table", align=4)
        vtable = pos - _I32.unpack_from(data, pos)[0]
        _check_span(data, vtable, 4, path, "vtable", align=2, origin=pos)
        self._vtable = vtable
        self._vtable_size, self._size = struct.unpack_from("<HH", data, vtable)
        if self._vtable_size < 4 or self._vtable_size % 2:
            raise MalformedModelError(path, vtable, f"vtable size {self._vtable_size} (an "
                                      f"even number ≥ 4 expected)")
        _check_span(data, vtable, self._vtable_size, path, "vtable", origin=pos)
        if self._size < 4:
            raise MalformedModelError(path, vtable, f"table size {self._size} (≥ 4 expected)")
        _check_span(data, pos, self._size, path, "table")
        self._check_fields()

    def _check_fields(self) -> None:
        """Every field the vtable lists, read or not, as the verifier: inside the table and
        aligned; an offset nonzero and pointing into the file; a vector's items too."""
        known = fields(self.kind)
        for slot in range((self._vtable_size - 4) // 2):
            offset = _U16.unpack_from(self.data, self._vtable + 4 + 2 * slot)[0]
            if offset == 0:
                continue
            f = known.get(slot)
            pos, size = self.pos + offset, 1 if f is None else f.size
            where = self._where(f"field {slot}" if f is None else f.name)
            if offset + size > self._size:
                raise MalformedModelError(where, pos, f"field ends past its table "
                                          f"({self._size} bytes)")
            if pos % size:
                raise MalformedModelError(where, pos, f"{size}-byte field is not {size}-byte "
                                          f"aligned")
            if f is not None and f.kind == "UOffsetTRelative":
                target = self._follow(pos, where)
                if f.item_size:
                    self._check_vector(target, f.item_size, where)

    def _where(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def _field_pos(self, name: str) -> tuple[Field, int | None]:
        """The field's description and its absolute position (checked when the table was
        made); None when it is absent."""
        f = field(self.kind, name)
        entry = 4 + 2 * f.slot
        if entry >= self._vtable_size:
            return f, None
        offset = _U16.unpack_from(self.data, self._vtable + entry)[0]
        return f, (self.pos + offset if offset else None)

    def has(self, name: str) -> bool:
        return self._field_pos(name)[1] is not None

    def scalar(self, name: str) -> Any:
        """The field's value, or its schema default when absent."""
        f, pos = self._field_pos(name)
        return f.default if pos is None else struct.unpack_from(_SCALARS[f.kind], self.data,
                                                                pos)[0]

    def _target(self, name: str) -> int | None:
        """Where an offset field points (tables, vectors, strings); None when absent."""
        f, pos = self._field_pos(name)
        if pos is None:
            return None
        if f.kind != "UOffsetTRelative":
            raise TypeError(f"{self.kind}.{name} is a scalar, not an offset")
        return self._follow(pos, self._where(name))

    def _follow(self, pos: int, where: str) -> int:
        """The position the offset stored at ``pos`` points to."""
        offset = _U32.unpack_from(self.data, pos)[0]
        if not 0 < offset < 2**31:  # forward, nonzero and signed-positive, as the verifier
            raise MalformedModelError(where, pos, f"offset {offset} (1..2³¹−1 expected)")
        _check_span(self.data, pos + offset, 4, where, "what it points to", origin=pos)
        return pos + offset

    def table(self, name: str, kind: str) -> Table | None:
        target = self._target(name)
        return None if target is None else Table(self.data, target, kind, self._where(name))

    def _vector(self, name: str, item_size: int) -> tuple[int, int] | None:
        """(first element's position, length) of a vector field; None when absent."""
        target = self._target(name)
        if target is None:
            return None
        return self._check_vector(target, item_size, self._where(name))

    def _check_vector(self, target: int, item_size: int, where: str) -> tuple[int, int]:
        _check_span(self.data, target, 4, where, "vector length", align=4)
        n = _U32.unpack_from(self.data, target)[0]
        _check_span(self.data, target + 4, n * item_size, where, f"vector of {n} items",
                    origin=target)
        return target + 4, n

    def array(self, name: str, dtype: Any) -> np.ndarray | None:
        """A vector of scalars as a read-only numpy view; None when absent."""
        dtype = np.dtype(dtype).newbyteorder("<")
        span = self._vector(name, dtype.itemsize)
        if span is None:
            return None
        return np.frombuffer(self.data, dtype, span[1], span[0])

    def tables(self, name: str, kind: str) -> list[Table]:
        """A vector of tables (absent: empty), each named ``path.name[i]``."""
        span = self._vector(name, 4)
        if span is None:
            return []
        start, n = span
        where = self._where(name)
        result = []
        for i in range(n):
            item = f"{where}[{i}]"
            result.append(Table(self.data, self._follow(start + 4 * i, item), kind, item))
        return result

    def string(self, name: str) -> str | None:
        """A UTF-8 string field; None when absent."""
        span = self._vector(name, 1)
        if span is None:
            return None
        start, n = span
        where = self._where(name)
        if start + n >= len(self.data) or self.data[start + n] != 0:
            raise MalformedModelError(where, start + n, "string without its NUL terminator")
        try:
            return self.data[start:start + n].decode()
        except UnicodeDecodeError as e:
            raise MalformedModelError(where, start + e.start, "not UTF-8") from None

    def position(self, name: str, item: int | None = None, item_size: int = 4) -> int | None:
        """Where field ``name`` (or its vector's ``item``) lies; None when absent."""
        f, pos = self._field_pos(name)
        if item is None or pos is None:
            return pos
        start, _ = self._vector(name, item_size) or (0, 0)
        return start + item * item_size

    def fail(self, name: str, problem: str, item: int | None = None,
             item_size: int = 4) -> MalformedModelError:
        """An error about field ``name`` (or its vector's ``item``), placed at its bytes (at
        the table when the field is absent)."""
        pos = self.position(name, item, item_size)
        where = self._where(name) if item is None else f"{self._where(name)}[{item}]"
        return MalformedModelError(where, self.pos if pos is None else pos, problem)


def _check_span(data: bytes, start: int, size: int, where: str, what: str, *, align: int = 1,
                origin: int | None = None) -> None:
    """``data[start:start + size]`` must exist and ``start`` be ``align``-aligned; the error
    is placed at ``origin`` (the offset field that led here) when given, else at ``start``."""
    at = start if origin is None else origin
    if start < 0 or start + size > len(data):
        raise MalformedModelError(where, at, f"{what} ({size} bytes at byte {start}) lies "
                                  f"outside the file ({len(data)} bytes)")
    if start % align:
        raise MalformedModelError(where, at, f"{what} at byte {start} is not {align}-byte "
                                  f"aligned")


def root(data: bytes, kind: str) -> Table:
    """The root table of ``data`` (its offset is the first 4 bytes)."""
    _check_span(data, 0, 8, "", "file header")
    pos = _U32.unpack_from(data, 0)[0]
    _check_span(data, pos, 4, "", "table", align=4, origin=0)
    return Table(data, pos, kind, "")
