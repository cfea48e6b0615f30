"""Run TFLite models in LiteRT (``ai-edge-litert``): the runtime quantkit's output is for.

Used by the demo, the tests and the benchmarks to check converted models against their source.
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
