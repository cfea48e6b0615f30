"""How close a converted model's outputs are to the float model's."""

from __future__ import annotations

import numpy as np


def sqnr_db(reference: np.ndarray, actual: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio, ``10·log10(Σ ref² / Σ (ref − actual)²)`` in dB
    (infinite when they are equal)."""
    reference = np.asarray(reference, np.float64)
    noise = float(((reference - np.asarray(actual, np.float64)) ** 2).sum())
    signal = float((reference ** 2).sum())
    return float("inf") if noise == 0.0 else 10.0 * np.log10(signal / noise)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose arg-max class is the label."""
    return float(np.mean(np.argmax(logits, -1) == labels))


def top1_agreement(reference: np.ndarray, actual: np.ndarray) -> float:
    """Share of rows whose arg-max class is the same in both (logits or probabilities)."""
    return float(np.mean(np.argmax(reference, -1) == np.argmax(actual, -1)))
