"""Small seeded RNNs on MNIST rows: each digit, averaged down to 14×14, is a sequence of 14
rows of 14 pixels (0..1); the RNN reads it and a Dense layer gives the 10 logits. Trained for
a few seconds so that the weights and the activation ranges are real ones.

``FAMILIES`` names the RNN layer families the converters are compared on (issue #12).
"""

from __future__ import annotations

import functools
from typing import Callable

import keras
import numpy as np

from benchmarks.zoo.mnist import load_mnist

SEED = 0
STEPS, FEATURES, UNITS = 14, 14, 12

FAMILIES: dict[str, Callable[[], keras.layers.Layer]] = {
    "lstm": lambda: keras.layers.LSTM(UNITS),
    "gru": lambda: keras.layers.GRU(UNITS),
    "simple_rnn": lambda: keras.layers.SimpleRNN(UNITS),
    "bidirectional_lstm": lambda: keras.layers.Bidirectional(keras.layers.LSTM(UNITS // 2)),
    "lstm_sequences": lambda: keras.layers.LSTM(UNITS, return_sequences=True),
}


def as_sequences(x: np.ndarray) -> np.ndarray:
    """(N, 28, 28, 1) pixels 0..255 → (N, 14, 14) rows of 2×2 means in 0..1."""
    x = np.asarray(x, np.float32).reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4))
    return x / 255.0


@functools.lru_cache(maxsize=None)
def sequences() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: MNIST rows as sequences (see ``as_sequences``)."""
    x_train, y_train, x_test, y_test = load_mnist()
    return as_sequences(x_train), y_train, as_sequences(x_test), y_test


def rnn_model(family: str, train_samples: int = 1000, epochs: int = 2,
              seed: int = SEED, eager: bool = False) -> keras.Model:
    """A trained ``family`` RNN + Dense(10) (a sequence output is flattened first).

    ``eager``: train without tracing the train step (faster for a few batches, as in tests).
    """
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((STEPS, FEATURES)), FAMILIES[family]()]
    if family == "lstm_sequences":
        layers.append(keras.layers.Flatten())
    model = keras.Sequential([*layers, keras.layers.Dense(10)])
    if train_samples:
        x, y, _, _ = sequences()
        model.compile(keras.optimizers.Adam(1e-2),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      run_eagerly=eager)
        model.fit(x[:train_samples], y[:train_samples], batch_size=50, epochs=epochs,
                  verbose=0, shuffle=False)
    return model
