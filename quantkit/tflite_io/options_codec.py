"""Operator options: IR dataclass ↔ schema table, by name.

An options dataclass in ``quantkit.ir.options`` is named after its schema table and its fields
after the table's fields, so one generic routine serializes all of them through the generated
builder functions (``Conv2DOptions.stride_w`` → ``tflite.Conv2DOptions.Conv2DOptionsAddStrideW``)
and one reads them back through the generated accessors (``StrideW()``). ``check_options``
refuses options LiteRT would misread (missing where it needs them, or another op's table),
as the op table (``quantkit.ops``) says.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import typing
from typing import Any

import flatbuffers
import numpy as np

from quantkit.ir import options as ir_options
from quantkit.ir.graph import Graph
from quantkit.ops import OPS
from quantkit.tflite_io import checked, schema
from quantkit.types import ConversionError, OpType, Phase


def options_table(op_type: OpType) -> str | None:
    """The schema options table LiteRT reads for ``op_type`` (its spec's options class)."""
    spec = OPS.get(op_type)
    return spec.options_table if spec is not None else None


def check_options(op_type: OpType, options: Any, where: str) -> None:
    """Refuse options LiteRT would misread: missing where required, or of another op's table.

    Raises:
        ConversionError: naming ``where`` and the table the op type reads.
    """
    expected = options_table(op_type)
    if options is None:
        if op_type in OPS and OPS[op_type].options_required:
            raise ConversionError(
                Phase.WRITING, f"{where} has no options; LiteRT needs its {expected}"
            )
        return
    if expected is not None and type(options).__name__ != expected:
        raise ConversionError(
            Phase.WRITING,
            f"{where} has {type(options).__name__}; {op_type.name} reads {expected}",
        )


def _scalar(value: Any) -> Any:
    """A Python scalar the generated ``Prepend*Slot`` accepts (enums as their int value)."""
    if isinstance(value, enum.Enum):
        return int(value.value)
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return value


def write_options(builder: flatbuffers.Builder, options: Any, where: str,
                  subgraph_index: dict[Graph, int] | None = None) -> tuple[int, int]:
    """Serialize an options dataclass as its schema table.

    Args:
        builder: the flatbuffer builder; no table may be open.
        options: a frozen dataclass from ``quantkit.ir.options`` (or any dataclass named after a
            schema options table, with the table's field names).
        where: names the op in error messages.
        subgraph_index: the writer's subgraph index of each graph; a field holding a
            ``Graph`` (``WhileOptions.body_subgraph``) is written as the schema's
            ``<field>_index`` with it.

    Returns:
        ``(union type code, table offset)`` for ``Operator.builtin_options{_type}``.

    Raises:
        ConversionError: the class has no schema table, or a field has no schema field.
    """
    table = type(options).__name__
    module = schema.module(table)
    code = schema.OPTIONS_CODES.get(table)
    if module is None or code is None or not dataclasses.is_dataclass(options):
        raise ConversionError(
            Phase.WRITING, f"{where}: options class {table} is not a TFLite schema options table"
        )

    def schema_fn(name: str) -> Any:
        fn = getattr(module, f"{table}{name}", None)
        if fn is None:
            raise ConversionError(
                Phase.WRITING, f"{where}: {table} has no schema function {table}{name}"
            )
        return fn

    # Vectors first: flatbuffers cannot build a vector while the table is open.
    values: list[tuple[Any, Any]] = []
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        camel = schema.camel(f.name)
        if _holds_graph(type(options), f.name):
            camel = schema.camel(f"{f.name}_index")
            if isinstance(value, Graph):
                if value not in (subgraph_index or {}):
                    raise ConversionError(Phase.WRITING, f"{where}: {f.name} {value.name!r} "
                                          "is not among the subgraphs written")
                value = subgraph_index[value]
            values.append((schema_fn(f"Add{camel}"), int(value)))
            continue
        if isinstance(value, (tuple, list)):
            schema_fn(f"Start{camel}Vector")(builder, len(value))
            for item in reversed(value):
                builder.PrependInt32(int(item))
            value = builder.EndVector()
        else:
            value = _scalar(value)
        values.append((schema_fn(f"Add{camel}"), value))
    schema_fn("Start")(builder)
    for add, value in values:
        add(builder, value)
    return code, schema_fn("End")(builder)


@functools.cache
def _ir_options_class(table: str) -> type | None:
    cls = getattr(ir_options, table, None)
    return cls if isinstance(cls, type) and dataclasses.is_dataclass(cls) else None


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _holds_graph(cls: type, name: str) -> bool:
    """Whether field ``name`` of options class ``cls`` references a subgraph."""
    return Graph in typing.get_args(_field_types(cls).get(name))


def subgraph_fields(options: Any) -> tuple[str, ...]:
    """The fields of an options dataclass that reference subgraphs (``WhileOptions``'
    condition and body): read back, they hold subgraph indices; written, their graphs'."""
    if options is None or not dataclasses.is_dataclass(options):
        return ()
    return tuple(f.name for f in dataclasses.fields(options) if _holds_graph(type(options),
                                                                              f.name))


def _convert(hint: Any, raw: Any, table: checked.Table, name: str) -> Any:
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(raw)
        except ValueError:
            raise table.fail(name, f"{raw} is not a {hint.__name__}") from None
    if hint is bool:
        return bool(raw)
    if hint is float:
        return float(raw)
    return int(raw)


def read_options(code: int, table: checked.Table | flatbuffers.table.Table | None) -> Any:
    """The IR options dataclass for a serialized options union; None when there is none.

    Args:
        code: ``Operator.builtin_options_type``.
        table: ``Operator.builtin_options`` (the union's table): the reader's checked table,
            or the binding's (``Operator.BuiltinOptions()``), which is checked here.

    Returns:
        An instance of the ``quantkit.ir.options`` class named like the table, built from the
        table's fields (absent fields read as schema defaults), or None when the op has no
        options or quantkit has no class for that table. Floats come back as stored (float32).

    Raises:
        MalformedModelError: a field lies outside the table or the file, or holds a value
            its enum lacks.
    """
    name = schema.OPTIONS_NAMES.get(code)
    cls = _ir_options_class(name) if name else None
    if cls is None or table is None:
        return None
    if not isinstance(table, checked.Table):
        table = checked.Table(table.Bytes, table.Pos, name, "builtin_options")
    kwargs = {}
    for f in dataclasses.fields(cls):
        hint = _field_types(cls)[f.name]
        if _holds_graph(cls, f.name):  # read back as the subgraph's index
            kwargs[f.name] = int(table.scalar(f"{f.name}_index"))
        elif typing.get_origin(hint) is tuple:
            values = table.array(f.name, np.int32)  # write_options writes int32 items
            kwargs[f.name] = () if values is None else tuple(int(v) for v in values)
        else:
            kwargs[f.name] = _convert(hint, table.scalar(f.name), table, f.name)
    return cls(**kwargs)
