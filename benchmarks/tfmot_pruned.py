"""A tensorflow-model-optimization pruned model through ``from_tflite``, in every mode.

tensorflow-model-optimization 0.8.1 prunes only tf_keras (Keras 2) models: given a Keras 3
model, ``prune_low_magnitude`` refuses it. ``make install`` puts both in ``.venv`` (with
--no-deps, for tests/test_qat.py); run with the legacy Keras switched on for this process only::

    TF_USE_LEGACY_KERAS=1 .venv/bin/python -m benchmarks.tfmot_pruned

A two-layer MLP is pruned to 80 % sparsity while it trains (a few steps on random data), the
pruning wrappers are stripped, and TF's converter writes it with
``Optimize.EXPERIMENTAL_SPARSITY`` (DENSIFY ops before each FULLY_CONNECTED). Each mode's
model is run in LiteRT against the pruned model's own outputs on held-out rows.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np


def main() -> None:
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    import quantkit
    from quantkit.litert import Runner
    from quantkit.metrics import sqnr_db
    from quantkit.tflite_io.reader import op_types

    sparsity = tfmot.sparsity.keras
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.Input((16,)),
                                 tf_keras.layers.Dense(64, activation="relu"),
                                 tf_keras.layers.Dense(8)])
    pruned = sparsity.prune_low_magnitude(
        model, pruning_schedule=sparsity.ConstantSparsity(0.8, 0, frequency=1))
    pruned.compile("adam", "mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 16)).astype(np.float32)
    pruned.fit(x, rng.normal(size=(64, 8)), epochs=2, verbose=0,
               callbacks=[sparsity.UpdatePruningStep()])
    stripped = sparsity.strip_pruning(pruned)
    converter = tf.lite.TFLiteConverter.from_keras_model(stripped)
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    with contextlib.redirect_stdout(io.StringIO()):
        source = converter.convert()
    print("source:", op_types(source))
    reference = stripped.predict(x[32:], verbose=0)
    for preset in quantkit.Preset:
        conv = quantkit.TFLiteConverter.from_tflite(source)
        preset.configure(conv, representative_dataset=lambda: ([r[None]] for r in x[:32]))
        conv.calibration = quantkit.CalibrationOptions(progress=False)
        blob = conv.convert()
        (out,) = Runner(blob).run_all([x[32:]])
        print(f"{preset.value:16s} {sqnr_db(reference, out):7.2f} dB  {op_types(blob)}")


if __name__ == "__main__":
    main()
