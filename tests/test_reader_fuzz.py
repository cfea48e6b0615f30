"""The reader on corrupt files: every malformed TFLite file raises ``MalformedModelError`` (a
ValueError) naming the field and the byte where it lies, never ``struct.error``,
``IndexError`` or ``UnicodeDecodeError``, and never parses into something inspect chokes on.

No model runs here (the reader only reads), so the mutation plugin has nothing to perturb.
The long fuzz run is ``python -m tests.fuzz_reader --files 50000``.
"""

from __future__ import annotations

import re
import struct
from typing import Callable

import numpy as np
import pytest

from quantkit.tflite_io import schema
from quantkit.tflite_io.checked import MalformedModelError, Table, root
from quantkit.tflite_io.reader import read_model
from quantkit.types import OpType
from tests.fuzz_reader import check, fuzz, seed_models

FUZZED_FILES = 5000  # ≈ 4 s; the seeds take ≈ 6 s to convert


@pytest.fixture(scope="module")
def seeds() -> dict[str, bytes]:
    return seed_models()


def test_seed_models_parse_and_inspect(seeds):
    for name, data in seeds.items():
        assert check(data) == ("parsed", ""), name
        info = read_model(data)
        assert {len(sg.inputs) for sg in info.subgraphs} == {2}, name


def test_fuzzed_models_parse_or_name_the_field(seeds):
    report = fuzz(seeds, FUZZED_FILES, seed=0)
    assert report.others == [], "\n".join(report.others[:20])
    # Both outcomes occur: the mutations reach the structure and the values alike.
    assert report.counts["rejected"] > FUZZED_FILES // 2
    assert report.counts["parsed"] > FUZZED_FILES // 50


# --- hand-made corruptions: each names its field and the byte patched -------------------------


def _subgraph(data: bytes) -> Table:
    return root(data, "Model").tables("subgraphs", "SubGraph")[0]


def _op(data: bytes, op_type: OpType) -> Table:
    info = read_model(data).subgraphs[0]
    index = next(i for i, op in enumerate(info.ops) if op.type == op_type)
    return _subgraph(data).tables("operators", "Operator")[index]


def _per_channel_quant(data: bytes) -> Table:
    info = read_model(data).subgraphs[0]
    index = next(i for i, t in enumerate(info.tensors) if t.quant and len(t.quant.scales) > 1)
    tensor = _subgraph(data).tables("tensors", "Tensor")[index]
    return tensor.table("quantization", "QuantizationParameters")


def _put(data: bytes, pos: int, fmt: str, value: int) -> bytes:
    d = bytearray(data)
    struct.pack_into(fmt, d, pos, value)
    return bytes(d)


# name → (seed, patch: bytes → (patched bytes, byte position expected in the message), regex)
Patch = Callable[[bytes], tuple[bytes, int]]


def _at(table: Callable[[bytes], Table], name: str, fmt: str, value: int,
        item: int | None = None, item_size: int = 4) -> Patch:
    def patch(data: bytes) -> tuple[bytes, int]:
        pos = table(data).position(name, item, item_size)
        return _put(data, pos, fmt, value), pos
    return patch


def _tensor(data: bytes, wanted: Callable[..., bool]) -> tuple[int, Table]:
    """The first tensor whose TensorInfo is ``wanted``, and its index (fields that hold their
    default value are not stored, so a patch needs a tensor that stores it)."""
    info = read_model(data).subgraphs[0]
    index = next(i for i, t in enumerate(info.tensors) if wanted(t))
    return index, _subgraph(data).tables("tensors", "Tensor")[index]


def _constant(data: bytes) -> Table:
    return _tensor(data, lambda t: t.buffer > 0)[1]


def _int8_tensor(data: bytes) -> Table:
    return _tensor(data, lambda t: t.dtype == np.int8)[1]


def _named_tensor(data: bytes) -> Table:
    return _tensor(data, lambda t: t.name)[1]


def _vector_length(table: Callable[[bytes], Table], name: str, delta: int) -> Patch:
    def patch(data: bytes) -> tuple[bytes, int]:
        t = table(data)
        length_pos = t.position(name, 0, 1) - 4
        (n,) = struct.unpack_from("<I", data, length_pos)
        return _put(data, length_pos, "<I", n + delta), length_pos
    return patch


def _largest_buffer(data: bytes) -> Table:
    buffers = root(data, "Model").tables("buffers", "Buffer")
    return max(buffers, key=lambda b: getattr(b.array("data", np.uint8), "size", 0))


CASES = {
    "subgraph input index": ("tf_float32", _at(_subgraph, "inputs", "<i", 99, item=0),
                             r"subgraphs\[0\]\.inputs\[0\] at byte (\d+): tensor index 99 is out "
                             r"of range \(the subgraph has \d+ tensors\)"),
    "operator input index": ("quantkit_float32",
                             _at(lambda d: _op(d, OpType.CONV_2D), "inputs", "<i", -7, item=1),
                             r"subgraphs\[0\]\.operators\[\d+\]\.inputs\[1\] at byte (\d+): "
                             r"tensor index -7"),
    "operator code index": ("tf_int8", _at(lambda d: _op(d, OpType.CONV_2D), "opcode_index",
                                           "<I", 500),
                            r"operators\[\d+\]\.opcode_index at byte (\d+): index 500 is out "
                            r"of range \(the model has \d+ operator codes\)"),
    "tensor buffer index": ("quantkit_int8", _at(_constant, "buffer", "<I", 10**6),
                            r"subgraphs\[0\]\.tensors\[\d+\]\.buffer at byte (\d+): index "
                            r"1000000 is out of range \(the model has \d+ buffers\)"),
    "tensor type": ("tf_int8", _at(_int8_tensor, "type", "<b", 99),
                    r"tensors\[\d+\]\.type at byte (\d+): 99 is not a tensor type"),
    "tensor name UTF-8": ("tf_float32", _at(_named_tensor, "name", "<B", 0xFF, item=0,
                                            item_size=1),
                          r"tensors\[\d+\]\.name at byte (\d+): not UTF-8"),
    "schema version": ("quantkit_int8", _at(lambda d: root(d, "Model"), "version", "<I", 4),
                       r"^invalid TFLite model: version at byte (\d+): schema version 4; "
                       r"quantkit reads version 3"),
    "buffer past the file": ("tf_int8", _vector_length(_largest_buffer, "data", 10**6),
                             r"buffers\[\d+\]\.data at byte (\d+): vector of \d+ items .* lies "
                             r"outside the file"),
    "zero points for scales": ("quantkit_int8", _vector_length(_per_channel_quant, "zero_point",
                                                               -1),
                               r"quantization\.zero_point at byte \d+: (\d+) zero points for "
                               r"\d+ scales"),
    "options enum": ("quantkit_float32", _at(lambda d: _op(d, OpType.DEPTHWISE_CONV_2D).table(
                         "builtin_options", "DepthwiseConv2DOptions"), "padding", "<b", 7),
                     r"builtin_options\.padding at byte (\d+): 7 is not a Padding"),
    "options of another op": ("tf_float32", _at(lambda d: _op(d, OpType.CONV_2D),
                                                "builtin_options_type", "<B",
                                                schema.OPTIONS_CODES["Pool2DOptions"]),
                              r"builtin_options_type at byte (\d+): Pool2DOptions for a CONV_2D "
                              r"operator, which reads Conv2DOptions"),
    "root offset": ("tf_float32", lambda d: (_put(d, 0, "<I", len(d) + 64), 0),
                    r"^invalid TFLite model: root at byte (\d+): table \(4 bytes at byte \d+\) "
                    r"lies outside the file"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_corruption_names_field_and_byte(seeds, case):
    seed, patch, pattern = CASES[case]
    data, pos = patch(seeds[seed])
    with pytest.raises(MalformedModelError) as info:
        read_model(data)
    match = re.search(pattern, str(info.value))
    assert match, str(info.value)
    if case != "zero points for scales":  # (its number is a count, not a byte)
        assert int(match.group(1)) == pos, str(info.value)


@pytest.mark.parametrize("data, pattern", [
    (b"", r"file identifier at byte 4: b'', expected b'TFL3'"),
    (b"\x00" * 4 + b"TFL2" + b"\x00" * 8, r"file identifier at byte 4: b'TFL2'"),
])
def test_not_a_tflite_file(data, pattern):
    with pytest.raises(MalformedModelError, match=pattern):
        read_model(data)


@pytest.mark.parametrize("keep", [0.25, 0.5, 0.9, 0.999])
def test_truncated_files_are_refused(seeds, keep):
    data = seeds["tf_int8"]
    with pytest.raises(MalformedModelError, match=r" at byte \d+: .*outside the file"):
        read_model(data[:int(len(data) * keep)])
