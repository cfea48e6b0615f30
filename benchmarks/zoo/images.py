"""Natural images that ship with scikit-learn (no downloads), cut into random crops."""

from __future__ import annotations

import functools

import keras
import numpy as np
import tensorflow as tf

# The input preprocessing keras.applications architectures expect from 0..255 pixels (those
# not listed have it inside the model).
PREPROCESS = {
    "MobileNetV2": keras.applications.mobilenet_v2.preprocess_input,
    "ResNet50": keras.applications.resnet50.preprocess_input,
    "NASNetMobile": keras.applications.nasnet.preprocess_input,
}


@functools.lru_cache(maxsize=None)
def _photos() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_sample_images  # the test extra: benchmarks and tests

    return tuple(np.asarray(img, np.float32) for img in load_sample_images().images)


def natural_crops(n: int, size: int, seed: int = 0) -> np.ndarray:
    """``n`` random crops (side 160–427 px, resized to ``size``, random flips) of the two
    sample photos, float32 pixels 0..255, shape ``(n, size, size, 3)``."""
    rng = np.random.default_rng(seed)
    photos = _photos()
    crops = []
    for _ in range(n):
        photo = photos[rng.integers(len(photos))]
        side = int(rng.integers(160, min(photo.shape[:2]) + 1))
        top = int(rng.integers(photo.shape[0] - side + 1))
        left = int(rng.integers(photo.shape[1] - side + 1))
        crop = photo[top:top + side, left:left + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crops.append(tf.image.resize(crop, (size, size)).numpy())
    return np.clip(np.stack(crops), 0, 255).astype(np.float32)


def application_inputs(name: str, n: int, size: int, seed: int = 0) -> np.ndarray:
    """``natural_crops`` preprocessed as the keras.applications architecture ``name`` expects."""
    return PREPROCESS.get(name, lambda x: x)(natural_crops(n, size, seed))
