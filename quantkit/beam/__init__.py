"""quantkit on Apache Beam (the ``beam`` extra: ``pip install quantkit[beam]``).

Calibration statistics are exact, order-free mergeable data, so they map onto a Beam
``CombineFn``; the benchmark sweep is one element per (model, mode, converter) row.

    job = CalibrationJob.from_converter(converter)          # the launcher captures the model
    stats = samples | Calibrate(job, indexed=True)          # → one CalibrationStats
    stats | beam.Map(save_stats, "gs://bucket/stats.json")

The same pipeline runs on the DirectRunner, Prism, Dataflow, Flink or Spark (only the
pipeline options differ).
"""

from quantkit.beam.calibrate import (Calibrate, CalibrateDoFn, CalibrateShards, CalibrationJob,
                                     MergeStats, save_stats)

__all__ = ["Calibrate", "CalibrateDoFn", "CalibrateShards", "CalibrationJob", "MergeStats",
           "save_stats"]
