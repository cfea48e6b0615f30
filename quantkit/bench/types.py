"""What a benchmark measures and how: frozen records every bench module shares (leaf module)."""

from __future__ import annotations

import dataclasses
import enum
from typing import Callable

import numpy as np


class Converter(enum.Enum):
    """Where a row's model comes from."""

    QUANTKIT = "quantkit"
    TF_LITE = "tf.lite"
    INPUT = "input"  # a given .tflite itself, unconverted (the float reference)


class SourceKind(enum.Enum):
    KERAS = "keras"              # a keras.Model, or a .keras/.h5 file
    SAVED_MODEL = "saved_model"  # a SavedModel folder, its serving_default signature
    TFLITE = "tflite"            # a float .tflite file


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One model input; ``None`` in ``shape`` is a dim known only at run time (dim 0: batch)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype


@dataclasses.dataclass(frozen=True)
class Reference:
    """What every row is scored against: the test inputs and the float model's outputs (in
    its order, with the names the converted models' signatures give them)."""

    input_names: tuple[str, ...]
    inputs: list[np.ndarray]
    output_names: tuple[str, ...]
    outputs: list[np.ndarray]
    labels: np.ndarray | None = None
    metric: Callable[[np.ndarray, np.ndarray], float] | None = None

    @property
    def classes(self) -> bool:
        """The first output is a vector of class scores (top-1 agreement means something)."""
        first = self.outputs[0]
        return first.ndim == 2 and first.shape[1] > 1


@dataclasses.dataclass(frozen=True)
class Settings:
    """How rows are measured."""

    threads: int = 1                 # LiteRT num_threads for every run
    invokes: int = 200               # timed single-sample invokes per model
    latency_budget_s: float = 10.0   # per mode: stop timing after this long (≥ 5 rounds run)
    warmup_invokes: int = 3          # untimed invokes first (the first one prepares kernels)


@dataclasses.dataclass(frozen=True)
class Row:
    """One (model, mode, converter) measurement; None where not measured or not applicable."""

    model: str
    mode: str                            # a quantkit.Preset value
    converter: str                       # a Converter value
    size_bytes: int | None = None
    op_count: int | None = None
    accuracy: float | None = None        # arg-max of the first output against the labels
    metric: float | None = None          # the user's metric (ModelSummary.metric_name)
    sqnr_db: float | None = None         # LiteRT vs the float model, lowest output; inf: equal
    top1_agreement: float | None = None  # share of samples with the float model's arg-max
    convert_s: float | None = None       # calibration included
    calibrate_s: float | None = None     # quantkit's calibrate(); None for tf.lite
    peak_mem_mb: float | None = None     # peak RSS increase during the conversion
    latency_ms: float | None = None      # median single-sample invoke
    latency_invokes: int = 0
    threads: int = 1
    latency_ratio: float | None = None   # quantkit rows: own / tf.lite's median latency
    latency_ratio_range: tuple[float, float] | None = None  # lowest, highest of 5 rounds
    error: str | None = None             # "conversion: ..." or "LiteRT: ..."

    @property
    def failed(self) -> bool:
        return self.size_bytes is None


@dataclasses.dataclass(frozen=True)
class ModelSummary:
    """A benchmarked model and its float reference."""

    name: str
    description: str
    calibration_samples: int
    test_samples: int
    labelled: bool
    float_accuracy: float | None         # the float model's, for reference
    metric_name: str | None = None
    float_metric: float | None = None
    classes: bool = True                 # the first output is a class score vector


@dataclasses.dataclass(frozen=True)
class Result:
    machine: dict[str, object]
    command: str
    settings: Settings
    models: tuple[ModelSummary, ...]
    rows: tuple[Row, ...]


class BenchError(ValueError):
    """A user error found before any row is measured (model, data, labels, metric)."""
