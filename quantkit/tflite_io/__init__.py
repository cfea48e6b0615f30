"""TFLite flatbuffer I/O: the writer (the pipeline's last stage), operator versions, a reader."""

from quantkit.tflite_io.reader import ModelInfo, read_model
from quantkit.tflite_io.writer import write_model

__all__ = ["ModelInfo", "read_model", "write_model"]
