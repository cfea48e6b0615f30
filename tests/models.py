"""Small models only the tests use (seeded, no downloads). The builders benchmarks share
(``application``, ``batchnorm_from_data``, ``digits``, the trained MNIST CNN) live in
``benchmarks.zoo``."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from benchmarks.zoo.applications import batchnorm_from_data, randomize_batchnorm
from benchmarks.zoo.mnist import digits

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
