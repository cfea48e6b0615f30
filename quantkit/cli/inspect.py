"""``quantkit inspect MODEL.tflite``: what a TFLite model holds, as text or JSON.

Description and schema version; per subgraph its inputs/outputs, op table and tensor table
(dtype, shape, quantization parameters, buffer bytes); the size split between weights
(constant tensors' buffers), metadata and the rest; the signatures.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from quantkit.cli._data import CliError, one_line


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("inspect", help="ops, tensors, quantization and size of a .tflite",
                              description="Describe a TFLite model.")
    p.add_argument("model", help="a .tflite file")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(run=run)


def read(path: str) -> tuple[bytes, Any]:
    """The file's bytes and its checked ``ModelInfo``; a ``CliError`` naming the file (and
    for a corrupt one, the field and byte) for anything unreadable."""
    from quantkit.tflite_io.reader import read_model

    if not os.path.isfile(path):
        raise CliError(f"model not found: {path}")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CliError(f"{path}: cannot read it ({e.strerror or e})") from None
    try:
        return data, read_model(data)
    except ValueError as e:  # the reader's MalformedModelError: field and byte
        raise CliError(f"{path}: {one_line(e)}") from None


def quant_text(q: dict[str, Any] | None) -> str:
    """``scale 0.0123 zp -128``; per channel: the count, axis and range of the scales."""
    if q is None:
        return "-"
    zps = sorted(set(q["zero_points"]))
    zp = "-" if not zps else str(zps[0]) if len(zps) == 1 else f"{zps[0]}..{zps[-1]}"
    scales = q["scales"]
    if len(scales) == 1 and q["axis"] is None:
        return f"scale {scales[0]:.6g} zp {zp}"
    return f"{len(scales)} scales (axis {q['axis']}) {min(scales):.4g}..{max(scales):.4g} zp {zp}"


def dtype_text(tensor: Any) -> str:
    """numpy's name, else the schema's (``string``, ``int4``, ``resource``)."""
    from quantkit.tflite_io.schema import TENSOR_TYPE_NAMES

    if tensor.dtype is not None:
        return str(tensor.dtype)
    return TENSOR_TYPE_NAMES.get(tensor.tflite_type, f"type{tensor.tflite_type}").lower()


def shape_list(tensor: Any) -> list[int | None] | None:
    """The shape with None for a dynamic dim (the signature's -1); None for unknown rank."""
    shape = tensor.shape_signature or tensor.shape
    return None if shape is None else [None if d < 0 else d for d in shape]


def shape_text(shape: list[int | None] | None) -> str:
    return "?" if shape is None else "(" + ", ".join(str(d) for d in shape) + ")"


def nbytes(tensor: Any) -> int:
    return 0 if tensor.data is None else int(tensor.data.nbytes)


def sizes(data: bytes, info: Any) -> dict[str, int]:
    """Total file bytes; constant buffers (each counted once); metadata; the rest."""
    weights = {t.buffer: nbytes(t) for sg in info.subgraphs for t in sg.tensors if t.is_const}
    metadata = sum(len(v) for v in info.metadata.values())
    total = len(data)
    return {"total": total, "weights": sum(weights.values()), "metadata": metadata,
            "rest": total - sum(weights.values()) - metadata}


def summary(data: bytes, info: Any) -> dict[str, Any]:
    def tensor(t: Any, index: int) -> dict[str, Any]:
        q = t.quant
        return {"index": index, "name": t.name, "dtype": dtype_text(t), "shape": shape_list(t),
                "quantization": None if q is None else {
                    "scales": list(q.scales), "zero_points": list(q.zero_points),
                    "axis": q.axis},
                "bytes": nbytes(t)}

    return {
        "description": info.description, "version": info.version,
        "min_runtime_version": info.min_runtime_version,
        "subgraphs": [{
            "name": sg.name,
            "inputs": [tensor(sg.tensors[i], i) for i in sg.inputs],
            "outputs": [tensor(sg.tensors[i], i) for i in sg.outputs],
            "ops": [{"index": n, "type": op.custom_code or op.type.name, "version": op.version,
                     "inputs": list(op.inputs), "outputs": list(op.outputs)}
                    for n, op in enumerate(sg.ops)],
            "tensors": [tensor(t, i) for i, t in enumerate(sg.tensors)],
        } for sg in info.subgraphs],
        "signatures": [{"key": s.key, "subgraph": s.subgraph_index, "inputs": s.inputs,
                        "outputs": s.outputs} for s in info.signatures],
        "metadata": sorted(info.metadata),
        "size": sizes(data, info),
    }


def table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return ["  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
            for r in [header, *rows]]


def render(path: str, s: dict[str, Any]) -> str:
    lines = [f"{path}: TFLite schema v{s['version']}, {s['description'] or 'no description'}",
             f"min runtime version {s['min_runtime_version'] or '-'}; metadata: "
             f"{', '.join(s['metadata']) or '-'}"]
    for n, sg in enumerate(s["subgraphs"]):
        lines += ["", f"subgraph {n} {sg['name']!r}: {len(sg['ops'])} ops, "
                      f"{len(sg['tensors'])} tensors"]
        for kind in ("inputs", "outputs"):
            for t in sg[kind]:
                lines.append(f"  {kind[:-1]} {t['name']!r}: {t['dtype']} {shape_text(t['shape'])} "
                             f"{quant_text(t['quantization'])}")
        lines += ["", "  ops:"] + table(
            [[o["index"], o["type"], o["version"], _ids(o["inputs"]), _ids(o["outputs"])]
             for o in sg["ops"]], ["#", "op", "v", "inputs", "outputs"])
        lines += ["", "  tensors:"] + table(
            [[t["index"], t["name"], t["dtype"], shape_text(t["shape"]),
              quant_text(t["quantization"]), t["bytes"] or ""]
             for t in sg["tensors"]], ["#", "name", "dtype", "shape", "quantization", "bytes"])
    size = s["size"]
    lines += ["", f"size: {size['total']:,} bytes = weights {size['weights']:,} "
                  f"({100 * size['weights'] / max(size['total'], 1):.1f} %) + metadata "
                  f"{size['metadata']:,} + rest {size['rest']:,} (graph, names, shapes)", ""]
    for sig in s["signatures"]:
        lines.append(f"signature {sig['key']!r} (subgraph {sig['subgraph']}): inputs "
                     f"{_named(sig['inputs'])} → outputs {_named(sig['outputs'])}")
    if not s["signatures"]:
        lines.append("signatures: none")
    return "\n".join(lines)


def _ids(ids: list[int]) -> str:
    return ",".join("-" if i < 0 else str(i) for i in ids)


def _named(mapping: dict[str, int]) -> str:
    return ", ".join(f"{name}→{index}" for name, index in mapping.items()) or "-"


def run(args: argparse.Namespace) -> int:
    data, info = read(args.model)
    s = summary(data, info)
    print(json.dumps(s, indent=1) if args.json else render(args.model, s))
    return 0
