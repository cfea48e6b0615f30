"""`make demo`: train a small CNN on the digits that ship with scikit-learn, convert it to
float32 and to int8 with quantkit (and with ``tf.lite.TFLiteConverter`` as the yardstick), run
each in LiteRT and print what happened: ops, size, agreement with the Keras model, accuracy.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import time

import numpy as np


def train_digits_cnn(seed: int = 0, epochs: int = 8):
    """A small Conv/BatchNorm/Dense model on sklearn's 8×8 digits;
    (model, x_test, y_test, x_train)."""
    import keras  # deferred: loads TF, which starts only when used
    from sklearn.datasets import load_digits  # deferred: the test extra, only the demo's data

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
    return model, x[split:], y[split:], x[:split]


def _converter(module, model, mode: str, calibration: np.ndarray):
    """``module``: quantkit or tf.lite, configured the same way through the shared API."""
    import tensorflow as tf  # deferred: TF starts only when used (`quantkit --help` stays TF-free)

    converter = module.TFLiteConverter.from_keras_model(model)
    if mode == "int8":
        converter.optimizations = [module.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x[None]] for x in calibration)
        converter.target_spec.supported_ops = [module.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.uint8
    return converter


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", help="also write quantkit's int8 .tflite here")
    args = parser.parse_args(argv)

    import tensorflow as tf  # deferred: TF starts only when used (`quantkit --help` stays TF-free)
    import quantkit
    from quantkit import litert
    from quantkit.metrics import sqnr_db
    from quantkit.tflite_io.reader import op_types

    print("Training a digits CNN (sklearn load_digits, seeded) ...")
    model, x_test, y_test, x_train = train_digits_cnn()
    reference = model.predict(x_test, verbose=0)
    calibration = x_train[:200]
    print(f"Keras model accuracy: {(reference.argmax(1) == y_test).mean():.3f} on "
          f"{len(y_test)} held-out digits")

    converted = {}
    for mode, title in (("float32", "float32 conversion"),
                        ("int8", "int8 (uint8 model IO, 200 calibration digits)")):
        print(f"\n== {title}")
        for module, label in ((quantkit, "quantkit"), (tf.lite, "tf.lite")):
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # TF prints its SavedModel export
                blob = _converter(module, model, mode, calibration).convert()
            seconds = time.perf_counter() - start
            converted[mode, label] = blob
            ops = op_types(blob)
            out = litert.run_float(blob, x_test)
            acc = (out.argmax(1) == y_test).mean()
            print(f"{label:>9}: {len(blob):,} bytes, {len(ops)} ops, converted in "
                  f"{seconds:.2f} s; SQNR vs Keras {sqnr_db(reference, out):.1f} dB, "
                  f"accuracy {acc:.3f}")
            print("           ops:", dict(collections.Counter(ops)))
    if args.output:
        from quantkit.fileio import write_atomically

        write_atomically(args.output, converted["int8", "quantkit"])
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
