"""A digits MLP whose hidden layer's activation range one channel dominates (same function).

``digits_mlps()`` trains a 64→32→16→10 MLP on scikit-learn's digits (seeded, about a second)
and returns it with its twin: one hidden channel's weights and bias ×``dominance``, the next
layer's weights from that channel ÷``dominance``. ReLU commutes with a positive factor, so the
twin computes the same function; but a per-tensor int8 grid for its hidden activations is set
by that one channel, and every other channel rounds to a few levels. The quantization
debugger's tests and benchmark use it: the hidden layer must rank first, and accuracy control
must repair it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DOMINANCE = 300.0


@dataclass
class DominatedMlps:
    plain: object  # keras.Model
    dominated: object
    channel: int
    x: np.ndarray  # digits / 16, shuffled (seed 0)
    y: np.ndarray


def digits_mlps(dominance: float = DOMINANCE, epochs: int = 10) -> DominatedMlps:
    import keras  # deferred: loads TF
    from sklearn.datasets import load_digits  # deferred: the test extra

    digits = load_digits()
    x, y = (digits.data / 16.0).astype(np.float32), digits.target
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    keras.utils.set_random_seed(0)

    def build():
        return keras.Sequential([keras.Input((64,), name="pixels"),
                                 keras.layers.Dense(32, activation="relu", name="hidden"),
                                 keras.layers.Dense(16, activation="relu", name="mid"),
                                 keras.layers.Dense(10, name="logits")])
    plain = build()
    plain.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    plain.fit(x[:1200], y[:1200], epochs=epochs, batch_size=32, verbose=0)
    dominated = build()
    (w1, b1), (w2, b2), last = [layer.get_weights() for layer in plain.layers]
    j = int(np.argmax(np.abs(w1).sum(0)))  # a channel that carries signal
    w1, b1, w2 = w1.copy(), b1.copy(), w2.copy()
    w1[:, j] *= dominance
    b1[j] *= dominance
    w2[j] /= dominance
    for layer, weights in zip(dominated.layers, [(w1, b1), (w2, b2), last]):
        layer.set_weights(weights)
    return DominatedMlps(plain, dominated, j, x, y)


def samples(x: np.ndarray):
    """A representative dataset over ``x``'s rows: one batch-1 sample each."""
    return lambda: ([s[None]] for s in x)


def int8_converter(model, calib: np.ndarray, **attributes):
    """quantkit's int8 converter of ``model`` calibrated on ``calib`` (no progress bar), with
    ``attributes`` set on it (``bias_correction=False``, ``recipe=...``)."""
    import quantkit  # deferred: the zoo builds models without importing quantkit

    converter = quantkit.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [quantkit.Optimize.DEFAULT]
    converter.representative_dataset = samples(calib)
    converter.calibration = quantkit.CalibrationOptions(progress=False)
    for name, value in attributes.items():
        setattr(converter, name, value)
    return converter
