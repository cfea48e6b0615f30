"""Fuzz the TFLite reader with mutated models: each must parse, or fail with the reader's
``MalformedModelError`` (a ValueError) naming the field and its byte; nothing else.

    .venv/bin/python -m tests.fuzz_reader --files 5000 [--seed 0] [--show 5]

The seed models are written by quantkit (float32, int8) and by TF's converter (float32,
int8, float16) from one small Keras model with two inputs (convolution, pooling, dense,
concatenation, softmax: a dozen options tables). Each mutated file gets one to three seeded
mutations: a byte xor-ed, a 4-byte word or 2-byte vtable entry set to a boundary value (0,
±1, the file length, 2³¹−1, ...), the file cut short, a chunk copied over another, bytes
inserted or deleted. A file that parses also goes through ``quantkit inspect``'s summary and
rendering (a reader that accepts too much makes those fail).

Prints the counts (parsed, rejected) and every other outcome with its traceback's last line;
exits 1 when there is any. ``tests/test_reader_fuzz.py`` runs a bounded share in the suite.

``--litert`` also hands every file the reader parsed to LiteRT (each in a child process a
crash cannot take down) and counts its verdicts: a file that fails LiteRT's flatbuffer
verifier ("not a valid Flatbuffer") but parses here is a check the reader lacks; kernel
errors (a stride of 0, a wrong input count) are semantics the reader does not judge.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from quantkit.cli.inspect import render, summary
from quantkit.tflite_io.checked import MalformedModelError
from quantkit.tflite_io.reader import read_model

SHAPE = (8, 8, 3)


def seed_models() -> dict[str, bytes]:
    """The seed files, by writer and mode (imports TF: a few seconds)."""
    import keras
    import tensorflow as tf

    import quantkit

    keras.utils.set_random_seed(0)
    image = keras.Input(SHAPE, name="image")
    extra = keras.Input((4,), name="extra")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(image)
    x = keras.layers.DepthwiseConv2D(3, activation="relu6")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Concatenate()([x, keras.layers.Dense(4, activation="tanh")(extra)])
    logits = keras.layers.Dense(5, name="logits")(x)
    model = keras.Model([image, extra], [keras.layers.Softmax(name="probs")(logits), logits])
    rng = np.random.default_rng(0)

    def rep():
        for _ in range(8):
            yield {"image": rng.uniform(0, 1, (1, *SHAPE)).astype(np.float32),
                   "extra": rng.normal(0, 1, (1, 4)).astype(np.float32)}

    def convert(make: Callable[[keras.Model], object], **settings: object) -> bytes:
        converter = make(model)
        for key, value in settings.items():
            if key == "supported_types":
                converter.target_spec.supported_types = value
            else:
                setattr(converter, key, value)
        return converter.convert()

    int8 = {"optimizations": [tf.lite.Optimize.DEFAULT], "representative_dataset": rep}
    ours = quantkit.TFLiteConverter.from_keras_model
    theirs = tf.lite.TFLiteConverter.from_keras_model
    return {
        "quantkit_float32": convert(ours),
        "quantkit_int8": convert(ours, **int8),
        "tf_float32": convert(theirs),
        "tf_int8": convert(theirs, **int8),
        "tf_float16": convert(theirs, optimizations=[tf.lite.Optimize.DEFAULT],
                              supported_types=[tf.float16]),
    }


def _boundary_words(n: int, rng: np.random.Generator) -> list[int]:
    return [0, 1, 2, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, n, n - 4, n + 4,
            int(rng.integers(0, 256)), int(rng.integers(0, 2**32))]


def _xor_byte(d: bytearray, rng: np.random.Generator) -> None:
    d[int(rng.integers(len(d)))] ^= int(rng.integers(1, 256))


def _set_word(d: bytearray, rng: np.random.Generator) -> None:
    pos = int(rng.integers(len(d) // 4)) * 4
    words = _boundary_words(len(d), rng)
    d[pos:pos + 4] = struct.pack("<I", words[int(rng.integers(len(words)))] % 2**32)


def _set_short(d: bytearray, rng: np.random.Generator) -> None:
    pos = int(rng.integers(len(d) // 2)) * 2
    shorts = [0, 1, 2, 3, 4, 0xFFFF, 0x8000, int(rng.integers(0, 64))]
    d[pos:pos + 2] = struct.pack("<H", shorts[int(rng.integers(len(shorts)))])


def _truncate(d: bytearray, rng: np.random.Generator) -> None:
    del d[int(rng.integers(len(d))):]


def _splice(d: bytearray, rng: np.random.Generator) -> None:
    size = int(rng.integers(1, 64))
    src, dst = (int(p) for p in rng.integers(0, max(len(d) - size, 1), 2))
    d[dst:dst + size] = d[src:src + size]


def _insert_or_delete(d: bytearray, rng: np.random.Generator) -> None:
    pos, size = int(rng.integers(len(d))), int(rng.integers(1, 9))
    if rng.random() < 0.5:
        d[pos:pos] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    else:
        del d[pos:pos + size]


MUTATIONS: tuple[Callable[[bytearray, np.random.Generator], None], ...] = (
    _xor_byte, _set_word, _set_short, _truncate, _splice, _insert_or_delete)


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """``data`` with one to three seeded mutations."""
    d = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        if len(d) < 16:
            break
        MUTATIONS[int(rng.integers(len(MUTATIONS)))](d, rng)
    return bytes(d)


def check(data: bytes) -> tuple[str, str]:
    """``("parsed" | "rejected" | "other", detail)`` for one file."""
    try:
        info = read_model(data)
    except MalformedModelError as e:
        text = str(e)
        if text.startswith("invalid TFLite model: ") and (" at byte " in text
                                                         or "file identifier" in text):
            return "rejected", text
        return "other", f"message without field and byte: {text}"
    except Exception as e:  # the point of the fuzzer: anything else is a finding
        return "other", f"{type(e).__name__}: {e} ({traceback.extract_tb(e.__traceback__)[-1]})"
    try:
        s = summary(data, info)
        render("fuzzed.tflite", s)
        json.dumps(s)
    except Exception as e:
        return "other", f"inspect: {type(e).__name__}: {e}"
    return "parsed", ""


@dataclass
class Report:
    counts: dict[str, int] = field(default_factory=lambda: {"parsed": 0, "rejected": 0,
                                                            "other": 0})
    others: list[str] = field(default_factory=list)
    parsed: list[bytes] = field(default_factory=list, repr=False)

    def line(self) -> str:
        total = sum(self.counts.values())
        return (f"{total} mutated files: {self.counts['parsed']} parsed, "
                f"{self.counts['rejected']} rejected with a MalformedModelError naming the "
                f"field, {self.counts['other']} other outcomes")


def fuzz(seeds: dict[str, bytes], files: int, seed: int = 0) -> Report:
    """``files`` mutated files, spread evenly over the seeds."""
    rng = np.random.default_rng(seed)
    names = sorted(seeds)
    report = Report()
    for i in range(files):
        name = names[i % len(names)]
        mutated = mutate(seeds[name], rng)
        outcome, detail = check(mutated)
        report.counts[outcome] += 1
        if outcome == "parsed":
            report.parsed.append(mutated)
        if outcome == "other":
            report.others.append(f"file {i} (from {name}): {detail}")
    return report


def litert_verdicts(files: list[bytes]) -> list[str]:
    """LiteRT's verdict on each file: "loads", "not a valid Flatbuffer" (its verifier),
    "kernel or other error", or "crash" (the process died)."""
    verdicts: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        for i, data in enumerate(files):
            with open(os.path.join(folder, f"{i}.tflite"), "wb") as f:
                f.write(data)
        while len(verdicts) < len(files):
            child = subprocess.run([sys.executable, "-m", "tests.fuzz_reader", "--litert-worker",
                                    folder, str(len(verdicts)), str(len(files))],
                                   capture_output=True, text=True)
            verdicts += [line.split(" ", 1)[1] for line in child.stdout.splitlines()
                         if " " in line]
            if child.returncode != 0:
                verdicts.append("crash")
    return verdicts


def _litert_worker(folder: str, start: int, stop: int) -> None:
    from ai_edge_litert.interpreter import Interpreter

    for i in range(start, stop):
        with open(os.path.join(folder, f"{i}.tflite"), "rb") as f:
            data = f.read()
        try:
            Interpreter(model_content=data).allocate_tensors()
            verdict = "loads"
        except Exception as e:
            verdict = ("not a valid Flatbuffer" if "not a valid Flatbuffer" in str(e)
                       else "kernel or other error")
        print(i, verdict, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=10, help="other outcomes to print")
    parser.add_argument("--litert", action="store_true",
                        help="also count LiteRT's verdicts on the files that parsed")
    parser.add_argument("--litert-worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.litert_worker:
        folder, start, stop = args.litert_worker
        _litert_worker(folder, int(start), int(stop))
        return 0
    with contextlib.redirect_stdout(io.StringIO()):  # TF's export prints its signatures
        seeds = seed_models()
    for name, data in seeds.items():
        assert check(data)[0] == "parsed", name
    start = time.perf_counter()
    report = fuzz(seeds, args.files, args.seed)
    print(f"{report.line()} ({time.perf_counter() - start:.1f} s; seeds: "
          f"{', '.join(f'{k} {len(v):,} B' for k, v in seeds.items())})")
    for other in report.others[:args.show]:
        print("  " + other)
    if args.litert:
        verdicts = collections.Counter(litert_verdicts(report.parsed))
        print(f"LiteRT on the {len(report.parsed)} parsed files: "
              + ", ".join(f"{n} {verdict}" for verdict, n in verdicts.most_common()))
    return 1 if report.others else 0


if __name__ == "__main__":
    sys.exit(main())
