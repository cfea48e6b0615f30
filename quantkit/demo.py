"""`make demo`: train a small CNN on the digits that ship with scikit-learn, convert it with
quantkit (and with ``tf.lite.TFLiteConverter`` as the yardstick), run both in LiteRT and
print what happened: ops, size, agreement with the Keras model.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import os
import tempfile
import time

import numpy as np


def train_digits_cnn(seed: int = 0, epochs: int = 8):
    """A small Conv/BatchNorm/Dense model on sklearn's 8×8 digits; (model, x_test, y_test)."""
    import keras
    from sklearn.datasets import load_digits

    keras.utils.set_random_seed(seed)
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    split = int(0.8 * len(x))
    model = keras.Sequential([
        keras.Input((8, 8, 1), name="digit"),
        keras.layers.Rescaling(2.0, offset=-1.0),
        keras.layers.Conv2D(16, 3, padding="same"),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.MaxPooling2D(),
        keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6"),
        keras.layers.Conv2D(32, 1, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:split], y[:split], epochs=epochs, batch_size=32, verbose=0)
    return model, x[split:], y[split:]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", help="also write quantkit's .tflite here")
    args = parser.parse_args(argv)

    import tensorflow as tf
    import quantkit
    from quantkit import litert
    from quantkit.tflite_io.reader import op_types

    print("Training a digits CNN (sklearn load_digits, seeded) ...")
    model, x_test, y_test = train_digits_cnn()
    reference = model.predict(x_test, verbose=0)

    start = time.perf_counter()
    ours = quantkit.TFLiteConverter.from_keras_model(model).convert()
    our_seconds = time.perf_counter() - start
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # TF's converter prints its SavedModel export
        theirs = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    tf_seconds = time.perf_counter() - start

    for label, blob, seconds in (("quantkit", ours, our_seconds), ("tf.lite", theirs, tf_seconds)):
        ops = op_types(blob)
        out = litert.run(blob, x_test)
        err = np.abs(out - reference).max() / np.abs(reference).max()
        acc = (out.argmax(1) == y_test).mean()
        print(f"\n{label}: {len(blob):,} bytes, {len(ops)} ops, converted in {seconds:.2f} s")
        print("  ops:", dict(collections.Counter(ops)))
        print(f"  max |LiteRT − Keras| / max|Keras| = {err:.2e}; "
              f"accuracy {acc:.3f} on {len(y_test)} held-out digits")
    print(f"\nKeras model accuracy: {(reference.argmax(1) == y_test).mean():.3f}")
    if args.output:
        _write_atomically(args.output, ours)
        print(f"wrote {args.output}")


def _write_atomically(path: str, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename: never a half-written model."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


if __name__ == "__main__":
    main()
