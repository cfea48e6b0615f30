"""``CalibrationStats``: what a calibration run produced, mergeable and saved as JSON.

Statistics are keyed by signature, then by tensor name (tensor names are only unique
within a signature). The JSON file (``FORMAT``, version ``VERSION``)::

    {"format": "calibration-stats", "version": 1, "observer": "MIN_MAX",
     "signatures": {"serving_default": {"num_samples": 100,
                                        "tensors": {"x": {"min": -1.5, "max": 2.0,
                                                          "count": 400}}}}}

with each tensor's fields as its stats type's ``to_json``. Floats are written by ``repr``
(Python's ``json``), so a save/load round trip is exact; an empty min/max is written as
``Infinity``/``-Infinity`` (Python's JSON extension).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from calibration.observers import OBSERVERS, ChannelMeanStats, Stats
from calibration.types import CalibrationError, ObserverKind

FORMAT = "calibration-stats"
VERSION = 1


@dataclass(frozen=True)
class SignatureStats:
    """Statistics of one signature: samples seen, tensor name → stats, and the per-channel
    means of the tensors they were asked for (``calibrate(channel_means=...)``)."""

    num_samples: int
    tensors: Mapping[str, Stats] = field(default_factory=dict)
    channel_means: Mapping[str, ChannelMeanStats] = field(default_factory=dict)

    def merge(self, other: SignatureStats) -> SignatureStats:
        """Tensors on both sides are merged; a tensor on one side is kept as it is."""
        return SignatureStats(self.num_samples + other.num_samples,
                              _merged(self.tensors, other.tensors),
                              _merged(self.channel_means, other.channel_means))


def _merged(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(a)
    for name, stats in b.items():
        merged[name] = merged[name].merge(stats) if name in merged else stats
    return merged


@dataclass(frozen=True)
class CalibrationStats:
    """The statistics of one calibration run (or several merged), per signature."""

    observer: ObserverKind
    signatures: Mapping[str, SignatureStats]

    @property
    def num_samples(self) -> int:
        """Samples seen, over every signature."""
        return sum(s.num_samples for s in self.signatures.values())

    def for_signature(self, signature_key: str | None = None) -> SignatureStats:
        """One signature's statistics; the key may be left out when there is only one."""
        if signature_key is None:
            if len(self.signatures) != 1:
                raise CalibrationError(
                    f"the stats have {len(self.signatures)} signatures "
                    f"{sorted(self.signatures)}; name one")
            return next(iter(self.signatures.values()))
        if signature_key not in self.signatures:
            raise CalibrationError(f"no statistics for this signature; there are "
                                   f"{sorted(self.signatures)}", signature=signature_key)
        return self.signatures[signature_key]

    def merge(self, other: CalibrationStats) -> CalibrationStats:
        """The statistics of both runs together (sharded calibration); exact."""
        if other.observer is not self.observer:
            raise CalibrationError(f"cannot merge {self.observer.value} statistics with "
                                   f"{other.observer.value} statistics")
        signatures = dict(self.signatures)
        for key, stats in other.signatures.items():
            signatures[key] = signatures[key].merge(stats) if key in signatures else stats
        return CalibrationStats(self.observer, signatures)

    def to_json(self) -> dict[str, Any]:
        """Signatures and tensors sorted by name: equal statistics give equal JSON, however
        they were merged."""
        return {"format": FORMAT, "version": VERSION, "observer": self.observer.value,
                "signatures": {
                    key: {"num_samples": s.num_samples,
                          "tensors": {name: s.tensors[name].to_json()
                                      for name in sorted(s.tensors)},
                          "channel_means": {name: s.channel_means[name].to_json()
                                            for name in sorted(s.channel_means)}}
                    for key, s in sorted(self.signatures.items())}}

    @classmethod
    def from_json(cls, data: Any) -> CalibrationStats:
        """Raises: CalibrationError if ``data`` is not a version-``VERSION`` stats object."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CalibrationError(f"not a calibration stats object (no \"format\": "
                                   f"\"{FORMAT}\" field)")
        if data.get("version") != VERSION:
            raise CalibrationError(f"unsupported calibration stats version "
                                   f"{data.get('version')!r}; this version reads {VERSION}")
        try:
            observer = ObserverKind(data["observer"])
            stats_type = OBSERVERS[observer].stats_type
            signatures = {
                str(key): SignatureStats(int(s["num_samples"]), {
                    str(name): stats_type.from_json(t) for name, t in s["tensors"].items()}, {
                    str(name): ChannelMeanStats.from_json(m)
                    for name, m in s.get("channel_means", {}).items()})
                for key, s in data["signatures"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            detail = f"missing field {error}" if isinstance(error, KeyError) else str(error)
            raise CalibrationError(f"malformed calibration stats: {detail}") from None
        return cls(observer, signatures)

    def dumps(self) -> str:
        """The JSON text ``save`` writes (equal statistics give equal text)."""
        return json.dumps(self.to_json(), indent=1) + "\n"

    def save(self, path: str | os.PathLike) -> None:
        """Writes the statistics to ``path`` as JSON."""
        with open(path, "w", encoding="utf-8") as file:
            file.write(self.dumps())

    @classmethod
    def load(cls, path: str | os.PathLike) -> CalibrationStats:
        """Reads statistics saved by ``save``.

        Raises:
            CalibrationError: the file is not JSON, or not calibration statistics of a
                version this code reads (the message names the file).
        """
        try:
            with open(path, encoding="utf-8") as file:
                data = json.load(file)
            return cls.from_json(data)
        except json.JSONDecodeError as error:
            raise CalibrationError(f"{os.fspath(path)}: not valid JSON ({error})") from None
        except CalibrationError as error:
            message = str(error).removeprefix("[calibration] ")
            raise CalibrationError(f"{os.fspath(path)}: {message}") from None
