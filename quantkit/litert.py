"""Run TFLite models in LiteRT (``ai-edge-litert``): the runtime quantkit's output is for.

Used by the demo, the tests, the benchmarks and ``quantkit bench`` to check converted models
against their source. ``run_float`` and ``Runner`` feed float inputs to models of any IO type
(int8/uint8 inputs are quantized with the input's parameters, integer outputs dequantized), so
float and quantized models compare directly.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert.interpreter import Interpreter


def run(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """Run a one-input model on the batch ``x`` (resizing its input); the first output."""
    interpreter = Interpreter(model_content=model_bytes)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def run_signature(model_bytes: bytes, inputs: dict[str, np.ndarray],
                  signature: str = "serving_default") -> dict[str, np.ndarray]:
    """Run one signature by input name; its outputs by name."""
    interpreter = Interpreter(model_content=model_bytes)
    return interpreter.get_signature_runner(signature)(**inputs)


def quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """``q = clamp(round(x / s) + z)`` in the input's integer type (inputs without
    quantization parameters, float ones, are only cast)."""
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if scale == 0.0:
        return np.asarray(x, dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def dequantize_output(y: np.ndarray, detail: dict) -> np.ndarray:
    """``r = s·(q − z)`` for a quantized output; others (float, int32 shapes) unchanged."""
    scale, zero_point = detail["quantization"]
    if scale == 0.0:
        return y
    return (scale * (y.astype(np.float32) - zero_point)).astype(np.float32)


def run_float(model_bytes: bytes, x: np.ndarray, num_threads: int | None = None) -> np.ndarray:
    """Run a one-input model of any IO type on the float batch ``x``; the first output as
    float (integer IO quantized and dequantized with the model's own parameters)."""
    interpreter = Interpreter(model_content=model_bytes, num_threads=num_threads)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], quantize_input(x, detail))
    interpreter.invoke()
    out = interpreter.get_output_details()[0]
    return dequantize_output(interpreter.get_tensor(out["index"]), out)


class Runner:
    """One model in a LiteRT interpreter, fed one float sample at a time.

    Integer inputs are quantized and integer outputs dequantized with the model's own
    parameters (as ``run_float``). ``input_names``/``output_names`` are the signature's names
    where the model has a signature, else the tensors' own names.
    """

    def __init__(self, model_bytes: bytes, num_threads: int | None = None):
        self.model_bytes, self.num_threads = model_bytes, num_threads
        self.interpreter = Interpreter(model_content=model_bytes, num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self.inputs = self.interpreter.get_input_details()
        self.outputs = self.interpreter.get_output_details()
        signatures = self.interpreter.get_signature_list()
        by_index_in: dict[int, str] = {}
        by_index_out: dict[int, str] = {}
        if signatures:
            runner = self.interpreter.get_signature_runner(next(iter(signatures)))
            by_index_in = {d["index"]: n for n, d in runner.get_input_details().items()}
            by_index_out = {d["index"]: n for n, d in runner.get_output_details().items()}
        self.input_names = [by_index_in.get(d["index"], d["name"]) for d in self.inputs]
        self.output_names = [by_index_out.get(d["index"], d["name"]) for d in self.outputs]
        self._shapes = [tuple(d["shape"]) for d in self.inputs]

    def feed(self, values: list[np.ndarray]) -> None:
        """Set the inputs (float values in ``inputs`` order, each with its batch dim)."""
        for i, (detail, x) in enumerate(zip(self.inputs, values)):
            x = np.asarray(x)
            if self._shapes[i] != x.shape:
                self.interpreter.resize_tensor_input(detail["index"], list(x.shape))
                self.interpreter.allocate_tensors()
                self._shapes[i] = x.shape
            self.interpreter.set_tensor(detail["index"], quantize_input(x, detail))

    def __call__(self, values: list[np.ndarray]) -> list[np.ndarray]:
        """The float outputs for one sample."""
        self.feed(values)
        self.interpreter.invoke()
        return [dequantize_output(self.interpreter.get_tensor(d["index"]), d)
                for d in self.outputs]

    def run_all(self, inputs: list[np.ndarray], batch: int = 64) -> list[np.ndarray]:
        """The float outputs for every sample of ``inputs`` (arrays along axis 0), ``batch``
        samples per invoke; one per invoke for a model that takes no other batch size (a
        RESHAPE to a fixed shape, say)."""
        count = len(inputs[0])
        try:
            chunks = [self([x[s:s + batch] for x in inputs]) for s in range(0, count, batch)]
        except (RuntimeError, ValueError):
            single = Runner(self.model_bytes, self.num_threads)  # this one may be half-resized
            chunks = [single([x[s:s + 1] for x in inputs]) for s in range(count)]
        return [np.concatenate(parts) for parts in zip(*chunks)]
