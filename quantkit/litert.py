"""Run TFLite models in LiteRT (``ai-edge-litert``): the runtime quantkit's output is for.

Used by the demo, the tests, the benchmarks and ``quantkit bench`` to check converted models
against their source. ``run_float`` and ``Runner`` feed float inputs to models of any IO type
(int8/uint8 inputs are quantized with the input's parameters, integer outputs dequantized), so
float and quantized models compare directly.

Every invoke here starts from zero states: a fused RNN op (UNIDIRECTIONAL_SEQUENCE_LSTM/RNN)
keeps its state in variable tensors that LiteRT carries from one invoke to the next, so each
run resets them first (``reset_all_variables``), as a stateless Keras layer computes. Those
states have a batch dim of their own: where it is dynamic (a model converted with batch None),
resizing the input resizes them too (``resize_batch``).
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from quantkit.tflite_io.reader import read_model


def has_states(model_bytes: bytes) -> bool:
    """The model has variable tensors (a fused RNN's states)."""
    return any(t.is_variable for s in read_model(model_bytes).subgraphs for t in s.tensors)


def batch_states(model_bytes: bytes) -> list[int]:
    """The variable tensors of subgraph 0 whose batch (dim 0) is dynamic: a fused RNN's states
    in a model converted with a dynamic batch (written with batch 1)."""
    subgraph = read_model(model_bytes).subgraphs[0]
    return [i for i, t in enumerate(subgraph.tensors)
            if t.is_variable and t.shape_signature and t.shape_signature[0] == -1]


def resize_batch(interpreter: Interpreter, states: list[int], batch: int) -> None:
    """Give the dynamic-batch states (``batch_states``) the input's batch; LiteRT resizes a
    variable tensor as it does an input (call ``allocate_tensors`` after)."""
    for i in states:
        shape = list(interpreter.get_tensor_details()[i]["shape"])
        if shape[0] != batch:
            interpreter.resize_tensor_input(i, [batch, *shape[1:]])


def run(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """Run a one-input model on the batch ``x`` (resizing its input); the first output."""
    interpreter = Interpreter(model_content=model_bytes)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], list(x.shape))
    resize_batch(interpreter, batch_states(model_bytes), len(x))
    interpreter.allocate_tensors()
    interpreter.reset_all_variables()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def run_signature(model_bytes: bytes, inputs: dict[str, np.ndarray],
                  signature: str = "serving_default") -> dict[str, np.ndarray]:
    """Run one signature by input name; its outputs by name."""
    interpreter = Interpreter(model_content=model_bytes)
    if not has_states(model_bytes):
        return interpreter.get_signature_runner(signature)(**inputs)
    # Sized and allocated here (the signature runner would resize the inputs only), so that
    # the states can be reset; a runner holds the interpreter, so it is made after.
    details = interpreter.get_signature_runner(signature).get_input_details()
    for name, x in inputs.items():
        interpreter.resize_tensor_input(details[name]["index"], list(np.shape(x)))
    resize_batch(interpreter, batch_states(model_bytes), len(next(iter(inputs.values()))))
    interpreter.allocate_tensors()
    interpreter.reset_all_variables()
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
    resize_batch(interpreter, batch_states(model_bytes), len(x))
    interpreter.allocate_tensors()
    interpreter.reset_all_variables()
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
        self._states = batch_states(model_bytes)

    def feed(self, values: list[np.ndarray]) -> None:
        """Set the inputs (float values in ``inputs`` order, each with its batch dim)."""
        for i, (detail, x) in enumerate(zip(self.inputs, values)):
            x = np.asarray(x)
            if self._shapes[i] != x.shape:
                self.interpreter.resize_tensor_input(detail["index"], list(x.shape))
                if i == 0:
                    resize_batch(self.interpreter, self._states, len(x))
                self.interpreter.allocate_tensors()
                self._shapes[i] = x.shape
            self.interpreter.set_tensor(detail["index"], quantize_input(x, detail))

    def __call__(self, values: list[np.ndarray]) -> list[np.ndarray]:
        """The float outputs for one sample."""
        self.feed(values)
        self.interpreter.reset_all_variables()  # a fused RNN starts from zero states
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
