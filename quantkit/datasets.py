"""Calibration data sources for ``representative_dataset`` (the ``calibration`` engine's own).

    converter.representative_dataset = quantkit.datasets.from_tfds(
        "mnist", "train", data_dir="/data/tfds", samples=200, preprocess=lambda x: x / 255.0)

``from_arrays`` (``.npy``/``.npz`` or arrays), ``from_image_folder`` (images resized to the
model's input, float32 pixels 0..255 times ``scale``) and ``from_tfds`` (a prepared
tensorflow-datasets split, never downloaded): see ``calibration/sources.py``.
"""

from calibration.sources import (ArraySource, ImageFolderSource, TfdsSource, from_arrays,
                                 from_image_folder, from_tfds)

__all__ = ["ArraySource", "ImageFolderSource", "TfdsSource", "from_arrays", "from_image_folder",
           "from_tfds"]
