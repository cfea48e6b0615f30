"""The calibration engine: runs a representative dataset, collects activation statistics.

Its own top-level package: it never imports quantkit, which plugs into it through a small
protocol, one module per stage:

1. **executor** (supplied by the caller): ``executor(inputs) -> outputs`` runs one batch,
   input name → array (batch on axis 0) in, observed tensor name → array out.
2. **dataset** (``dataset.py``): reads ``representative_dataset`` in TF's forms and checks
   each sample against the model's ``InputSpec``s, lazily.
3. **observers** (``observers.py``): turn a tensor's values into mergeable statistics
   (``ObserverKind``: min/max, moving-average min/max, histogram).
4. **stats** (``stats.py``): ``CalibrationStats``, per signature and tensor; exact merge
   for sharded runs; JSON save/load.
5. **runner** (``runner.py``): ``calibrate`` batches the samples, calls the executor once
   per batch and feeds the observers, with a tqdm progress bar.
6. **sources** (``sources.py``): ready-made representative datasets from ``.npy``/``.npz``
   arrays, an image folder or a tensorflow-datasets split (``from_arrays``,
   ``from_image_folder``, ``from_tfds``).

Example::

    stats = calibrate(executor, representative_dataset,
                      [InputSpec("x", (None, 4), np.float32)], batch_size=32)
    stats.for_signature().tensors["y"].min
"""

from calibration.dataset import Sample, iter_samples, open_dataset, validate_samples
from calibration.observers import (
    OBSERVERS,
    ChannelMeanObserver,
    ChannelMeanStats,
    HistogramObserver,
    HistogramStats,
    MinMaxObserver,
    MinMaxStats,
    MovingAverageObserver,
    MovingAverageStats,
    Observer,
    make_observer,
    percentile_range,
)
from calibration.runner import calibrate
from calibration.sources import from_arrays, from_image_folder, from_tfds
from calibration.stats import CalibrationStats, SignatureStats
from calibration.types import CalibrationError, Executor, InputSpec, ObserverKind

__all__ = [
    "OBSERVERS", "CalibrationError", "CalibrationStats", "ChannelMeanObserver",
    "ChannelMeanStats", "Executor", "HistogramObserver", "HistogramStats", "InputSpec",
    "MinMaxObserver", "MinMaxStats", "MovingAverageObserver", "MovingAverageStats", "Observer",
    "ObserverKind", "Sample", "SignatureStats", "calibrate", "from_arrays", "from_image_folder",
    "from_tfds", "iter_samples", "make_observer", "open_dataset", "percentile_range",
    "validate_samples",
]
