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


def sequential_cnn(seed: int = 0) -> keras.Model:
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
        keras.layers.Dense(10, activation="softmax"),
    ])
    return randomize_batchnorm(model, seed)


def two_in_two_out(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    image = keras.Input((16, 16, 3), name="image")
    meta = keras.Input((5,), name="meta")
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(image)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Concatenate()([x, keras.layers.Dense(4, activation="relu")(meta)])
    cls = keras.layers.Dense(3, activation="softmax", name="cls")(x)
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
