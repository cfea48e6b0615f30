"""The runner: streams a representative dataset through executors in batches into observers.

``calibrate`` reads samples one by one (``dataset.iter_samples``), buffers their rows per
signature into batches of exactly ``batch_size`` rows (a sample may be split between two
batches; the last batch may be short), calls the signature's executor once per batch and
hands every returned tensor to its observer. Memory is bounded by one batch per signature
plus the observers' statistics, whatever the number of samples.

A signature with a static batch dim (or a scalar input) is fed one sample per call, as
given: ``InputSpec`` validation has already checked that each sample has exactly that
many rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Collection, Iterator, Mapping, Sequence

import numpy as np
import tqdm

from calibration.dataset import Sample, Specs, normalize_specs, open_dataset, to_numpy
from calibration.dataset import validate_samples
from calibration.observers import ChannelMeanObserver, Observer, make_observer
from calibration.stats import CalibrationStats, SignatureStats
from calibration.types import CalibrationError, Executor, InputSpec, ObserverKind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Batch:
    inputs: dict[str, np.ndarray]
    sample_of_row: np.ndarray  # the global sample index of each row

    def samples(self) -> str:
        first, last = int(self.sample_of_row[0]), int(self.sample_of_row[-1])
        return f"sample {first}" if first == last else f"samples {first}–{last}"


class _Batcher:
    """Buffers one signature's rows into batches of ``size`` rows (None: one per sample)."""

    def __init__(self, size: int | None):
        self.size = size
        self._parts: list[tuple[int, int, dict[str, np.ndarray]]] = []  # index, rows, inputs
        self._rows = 0

    def add(self, sample: Sample) -> Iterator[_Batch]:
        """The batches completed by ``sample`` (split across batches when it must be)."""
        if self.size is None:
            yield _Batch(sample.inputs, np.full(max(sample.rows, 1), sample.index))
            return
        start = 0
        while start < sample.rows:
            take = min(self.size - self._rows, sample.rows - start)
            part = {name: array[start:start + take] for name, array in sample.inputs.items()}
            self._parts.append((sample.index, take, part))
            self._rows += take
            start += take
            if self._rows == self.size:
                yield self.flush()

    def flush(self) -> _Batch | None:
        """The buffered rows as one batch (None when empty); the buffer is emptied."""
        parts, self._parts, self._rows = self._parts, [], 0
        if not parts:
            return None
        inputs = parts[0][2] if len(parts) == 1 else {
            name: np.concatenate([p[2][name] for p in parts]) for name in parts[0][2]}
        rows = np.repeat([p[0] for p in parts], [p[1] for p in parts])
        return _Batch(inputs, rows)


def _check_finite(name: str, array: np.ndarray, batch: _Batch, signature: str | None) -> None:
    if not np.issubdtype(array.dtype, np.inexact):
        return
    finite = np.isfinite(array)
    if finite.all():
        return
    rows = batch.sample_of_row
    if array.ndim and array.shape[0] == len(rows):
        row = int(np.argmin(finite.reshape(len(rows), -1).all(axis=1)))
        raise CalibrationError("the model's output contains NaN or Inf for this sample",
                               sample=int(rows[row]), tensor=name, signature=signature)
    raise CalibrationError(f"the model's output contains NaN or Inf for the batch of "
                           f"{batch.samples()}", tensor=name, signature=signature)


class _Collector:
    """Runs batches through the executors and feeds the observers."""

    def __init__(self, executors: Mapping[str, Executor], kind: ObserverKind,
                 tensors: Collection[str] | None, channel_means: Collection[str],
                 multi_signature: bool):
        self.executors = executors
        self.kind = kind
        self.wanted = None if tensors is None else set(tensors)
        self.mean_wanted = set(channel_means)
        self.multi_signature = multi_signature
        self.observers: dict[str, dict[str, Observer]] = {}
        self.mean_observers: dict[str, dict[str, ChannelMeanObserver]] = {}
        self.returned: set[str] = set()
        self.calls = 0

    def run(self, key: str, batch: _Batch | None) -> None:
        if batch is None:
            return
        signature = key if self.multi_signature else None
        try:
            outputs = self.executors[key](batch.inputs)
        except Exception as error:  # the model's own error, with where it happened
            if hasattr(error, "add_note"):
                error.add_note(f"[calibration] while running {batch.samples()}")
            raise
        if not isinstance(outputs, Mapping):
            raise CalibrationError(f"the executor returned a {type(outputs).__name__} for "
                                   f"{batch.samples()}; it must return a mapping tensor "
                                   f"name → array", signature=signature)
        self.calls += 1
        observers = self.observers.setdefault(key, {})
        mean_observers = self.mean_observers.setdefault(key, {})
        for name, value in outputs.items():
            self.returned.add(name)
            array = to_numpy(value)  # once: a tf.Tensor's .numpy() copies
            if name in self.mean_wanted:
                if name not in mean_observers:
                    mean_observers[name] = ChannelMeanObserver()
                mean_observers[name].observe(array)
            if self.wanted is not None and name not in self.wanted:
                continue
            if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
                raise CalibrationError(f"dtype {array.dtype} cannot be observed; only "
                                       f"numeric tensors can", tensor=name, signature=signature)
            if name not in observers:
                observers[name] = make_observer(self.kind)
            observers[name].observe(array)
            if not observers[name].finite:  # only then scan the batch, to name the sample
                _check_finite(name, array, batch, signature)

    def stats(self, num_samples: Mapping[str, int]) -> CalibrationStats:
        never = sorted(((self.wanted or set()) | self.mean_wanted) - self.returned)
        if never:
            raise CalibrationError(f"tensor(s) {never} were requested but the executor never "
                                   f"returned them; it returned {sorted(self.returned)}")
        return CalibrationStats(self.kind, {
            key: SignatureStats(count, {name: observer.result() for name, observer in
                                        self.observers.get(key, {}).items()},
                                {name: observer.result() for name, observer in
                                 self.mean_observers.get(key, {}).items()})
            for key, count in num_samples.items()})


def _executors(executor: Executor | Mapping[str, Executor],
               specs: Mapping[str, Any]) -> Mapping[str, Executor]:
    if not isinstance(executor, Mapping):
        if len(specs) != 1:
            raise CalibrationError(f"the model has {len(specs)} signatures {sorted(specs)}; "
                                   f"give one executor per signature (a dict by key)")
        return {next(iter(specs)): executor}
    missing = sorted(set(specs) - set(executor))
    if missing:
        raise CalibrationError(f"no executor for signature(s) {missing}")
    return executor


def _length(iterable: Any) -> int | None:
    try:
        return len(iterable)  # a tf.data.Dataset of unknown/infinite size raises TypeError
    except TypeError:
        return None


def calibrate(executor: Executor | Mapping[str, Executor], dataset: Any,
              specs: Specs | Sequence[InputSpec], *,
              observer: ObserverKind = ObserverKind.MIN_MAX, batch_size: int = 32,
              progress: bool | None = None,
              tensors: Collection[str] | None = None,
              channel_means: Collection[str] = ()) -> CalibrationStats:
    """Runs ``dataset`` through the model and collects statistics of its tensors.

    Args:
        executor: runs one batch (input name → array, batch on axis 0) and returns the
            observed tensors (name → array, batch on axis 0); one per signature (a dict
            by signature key) when the model has several.
        dataset: a ``representative_dataset`` (see ``dataset.py``).
        specs: the model's inputs: signature key → ``InputSpec``s in positional order,
            or just the list for a single-signature model.
        observer: which statistics to collect.
        batch_size: rows per executor call (the last batch may be short).
        progress: a tqdm bar on stderr: None shows it on a TTY for runs over 2 s,
            True always, False never.
        tensors: observe only these tensor names (default: every returned tensor).
        channel_means: also collect the per-channel (last axis) means of these tensors
            (``SignatureStats.channel_means``), in the same pass.

    Returns:
        The statistics, keyed by signature then tensor name.

    Raises:
        CalibrationError: a malformed dataset or sample, NaN/Inf in an input or output
            (naming the sample and input or tensor), or a requested tensor never returned.
    """
    specs = normalize_specs(specs)
    executors = _executors(executor, specs)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise CalibrationError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(observer, ObserverKind):
        raise CalibrationError(f"observer must be an ObserverKind "
                               f"({', '.join(k.name for k in ObserverKind)}), got {observer!r}")
    source = open_dataset(dataset)
    batchers = {key: _Batcher(None if any(s.fixed_batch for s in inputs) or not inputs
                              else batch_size) for key, inputs in specs.items()}
    collector = _Collector(executors, observer, tensors, channel_means, len(specs) > 1)
    num_samples = dict.fromkeys(specs, 0)
    bar = tqdm.tqdm(total=_length(source), desc="calibration", unit="sample",
                    disable=None if progress is None else not progress,
                    delay=2.0 if progress is None else 0.0)
    with bar:
        for sample in validate_samples(source, specs):
            num_samples[sample.signature_key] += 1
            for batch in batchers[sample.signature_key].add(sample):
                collector.run(sample.signature_key, batch)
            bar.update(1)
        for key, batcher in batchers.items():
            collector.run(key, batcher.flush())
    log.info("calibrated %d samples in %d executor calls (%s)", sum(num_samples.values()),
             collector.calls, observer.value)
    return collector.stats({key: n for key, n in num_samples.items() if n})
