"""Sharded calibration on Apache Beam (the DirectRunner) equals one process, byte for byte.

The CLI path: ``quantkit calibrate --runner DirectRunner --num-shards 4`` writes the same JSON
as ``quantkit calibrate``, and ``convert --calibration-stats`` on it the same model as
``convert --calibration`` on the same samples (a model that must also follow its input:
SQNR floor and the shuffled-rows guard). The Python path: ``quantkit.beam.Calibrate`` over
indexed samples, histogram and moving-average observers, in one shared pipeline run. The
merges themselves: random splits merged in random orders give one pass's JSON.
"""

from __future__ import annotations

import json
import random

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

pytest.importorskip("apache_beam")
import apache_beam as beam  # noqa: E402

import quantkit  # noqa: E402
from calibration import (OBSERVERS, ChannelMeanObserver, HistogramObserver,  # noqa: E402
                         MinMaxObserver, MovingAverageObserver, ObserverKind)
from quantkit.beam import Calibrate, CalibrationJob, MergeStats, save_stats  # noqa: E402
from quantkit.beam.calibrate import shard_bounds  # noqa: E402
from quantkit.cli import main  # noqa: E402
from quantkit.types import ConversionError  # noqa: E402
from tests.side_by_side import assert_input_matters, measure  # noqa: E402

SAMPLES = 100  # 4 batches of the single run (32 rows each, the last 4): 4 non-empty shards


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((8, 8, 1), name="pixels"),
        keras.layers.Conv2D(6, 3),
        keras.layers.BatchNormalization(beta_initializer="ones"),
        keras.layers.ReLU(),
        keras.layers.DepthwiseConv2D(3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(5),
    ])


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("beam")
    model = _model()
    model.save(d / "model.keras")
    digits = (load_digits().images[..., None] / 16.0).astype(np.float32)
    np.save(d / "calib.npy", digits[:SAMPLES])
    return {"dir": d, "model": model, "x": digits, "test": digits[1000:1200]}


def _run(*argv) -> int:
    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def cli(work):
    """One process, 4 Beam shards, and the two conversions (each run once for the module)."""
    d = work["dir"]
    common = [d / "model.keras", "--calibration", d / "calib.npy", "--samples", SAMPLES,
              "--no-progress"]
    codes = [_run("calibrate", *common, "-o", d / "one.json"),
             _run("calibrate", *common, "-o", d / "sharded.json", "--runner", "DirectRunner",
                  "--num-shards", 4),
             _run("convert", *common, "-o", d / "from_data.tflite"),
             _run("convert", d / "model.keras", "--calibration-stats", d / "sharded.json",
                  "-o", d / "from_stats.tflite")]
    return codes, d


def test_sharded_statistics_equal_one_process_and_give_the_same_model(work, cli):
    codes, d = cli
    assert codes == [0, 0, 0, 0]
    one, sharded = (d / "one.json").read_bytes(), (d / "sharded.json").read_bytes()
    assert sharded == one
    stats = quantkit.CalibrationStats.load(d / "one.json").for_signature()
    assert stats.num_samples == SAMPLES and stats.tensors and stats.channel_means
    assert len([b for a, b in _bounds(SAMPLES, 32, 4) if b > a]) == 4  # 32: auto rows
    blob = (d / "from_stats.tflite").read_bytes()
    assert blob == (d / "from_data.tflite").read_bytes()
    converted = measure(blob, [work["test"]], [work["model"](work["test"]).numpy()])
    assert converted.sqnr > 25.0, converted
    assert_input_matters(converted)


def _bounds(n: int, rows: int, shards: int) -> list[tuple[int, int]]:
    return shard_bounds(n, rows, shards)


def test_shard_bounds_start_on_batch_boundaries():
    assert _bounds(100, 32, 4) == [(0, 32), (32, 64), (64, 96), (96, 100)]
    assert _bounds(100, 32, 3) == [(0, 32), (32, 64), (64, 100)]
    assert _bounds(40, 32, 4) == [(0, 0), (0, 32), (32, 32), (32, 40)]


@pytest.fixture(scope="module")
def pipeline(work, tmp_path_factory):
    """One DirectRunner pipeline: indexed samples through Calibrate, histogram and
    moving-average jobs (batches of 8: 13 groups), beside each job's one-process run."""
    d = tmp_path_factory.mktemp("pipeline")
    samples = [[x[None]] for x in work["x"][:SAMPLES]]
    jobs, single = {}, {}
    for kind in (ObserverKind.HISTOGRAM, ObserverKind.MOVING_AVERAGE_MIN_MAX):
        converter = quantkit.TFLiteConverter.from_keras_model(work["model"])
        converter.representative_dataset = lambda: iter(samples)
        converter.calibration = quantkit.CalibrationOptions(observer=kind, batch_size=8)
        jobs[kind] = CalibrationJob.from_converter(converter)
        single[kind] = converter.calibrate().dumps()
    with beam.Pipeline("DirectRunner") as p:
        indexed = p | beam.Create(list(enumerate(samples)))
        for kind, job in jobs.items():
            _ = (indexed | f"Calibrate{kind.name}" >> Calibrate(job, indexed=True)
                 | f"Save{kind.name}" >> beam.Map(save_stats, str(d / f"{kind.name}.json")))
    return {kind: ((d / f"{kind.name}.json").read_text(), single[kind]) for kind in jobs}


@pytest.mark.parametrize("kind", [ObserverKind.HISTOGRAM, ObserverKind.MOVING_AVERAGE_MIN_MAX])
def test_calibrate_transform_equals_one_process(pipeline, kind):
    sharded, single = pipeline[kind]
    assert sharded == single
    data = json.loads(single)["signatures"]["serving_default"]
    assert data["num_samples"] == SAMPLES and len(data["tensors"]) >= 5


@pytest.mark.parametrize("factory", [MinMaxObserver, HistogramObserver, MovingAverageObserver,
                                     ChannelMeanObserver])
def test_merge_is_exact_in_any_order(factory):
    rng = np.random.default_rng(1)
    batches = [(rng.standard_normal((4, 6, 5)) * 10.0 ** rng.uniform(-4, 4)).astype(np.float32)
               for _ in range(12)]
    batches[3][0, 0, :] = -0.0  # a zero extreme of either sign must not depend on the order
    batches[3][1, 1, :] = 0.0

    def result(part):
        observer = factory()
        for batch in part:
            observer.observe(batch)
        return observer.result()

    whole = json.dumps(result(batches).to_json())
    shuffle = random.Random(0)
    for _ in range(6):
        cuts = sorted(shuffle.sample(range(1, 12), 3))
        parts = [result(batches[a:b]) for a, b in zip([0, *cuts], [*cuts, 12])]
        shuffle.shuffle(parts)
        merged = parts[0]
        for part in parts[1:]:
            merged = merged.merge(part) if shuffle.random() < 0.5 else part.merge(merged)
        assert json.dumps(merged.to_json()) == whole


def test_merge_stats_combine_fn_is_order_free():
    observers = [MinMaxObserver() for _ in range(3)]
    for i, observer in enumerate(observers):
        observer.observe(np.arange(i, i + 5, dtype=np.float32) - 2.0)
    stats = [quantkit.CalibrationStats(ObserverKind.MIN_MAX, {"s": _sig(o.result())})
             for o in observers]
    fn = MergeStats()
    left = fn.merge_accumulators([fn.add_input(fn.create_accumulator(), stats[0]),
                                  fn.add_input(fn.add_input(None, stats[2]), stats[1]), None])
    assert left.dumps() == stats[1].merge(stats[0]).merge(stats[2]).dumps()
    assert left.for_signature().tensors["t"].min == -2.0


def _sig(result):
    from calibration import SignatureStats

    return SignatureStats(5, {"t": result})


def test_an_observer_without_exact_merge_is_refused(monkeypatch):
    import dataclasses

    entry = OBSERVERS[ObserverKind.MOVING_AVERAGE_MIN_MAX]
    monkeypatch.setitem(OBSERVERS, ObserverKind.MOVING_AVERAGE_MIN_MAX,
                        dataclasses.replace(entry, exact_merge=False))
    with pytest.raises(ConversionError, match="does not merge exactly"):
        CalibrationJob((), quantkit.CalibrationOptions(
            observer=ObserverKind.MOVING_AVERAGE_MIN_MAX, batch_size=8))


@pytest.mark.parametrize("argv, message", [
    (["calibrate", "M", "--calibration", "D", "-o", "s.json", "--num-shards", "4"],
     "--num-shards: only with --runner"),
    (["calibrate", "M", "--calibration", "D", "-o", "s.json", "--project", "p"],
     "--project p: only with --runner"),
    (["convert", "M", "--calibration", "D", "--calibration-stats", "s.json"],
     "not both"),
    (["convert", "model.keras", "--calibration-stats", "missing.json"],
     "calibration statistics not found"),
])
def test_one_line_errors(work, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(work["dir"])
    assert _run(*argv) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_unknown_options_are_refused_by_other_commands(capsys):
    assert _run("inspect", "x.tflite", "--runner", "DirectRunner") == 2
    assert "unrecognized arguments" in capsys.readouterr().err


# ------------------------------------------------------------------ the benchmark sweep

def prepare_tiny(name: str):
    """The sweep's model (pickled by reference to the pipeline): a small seeded CNN (untrained:
    training costs seconds, and the columns compared need none) on scikit-learn's digits."""
    from quantkit.beam.sweep import Prepared
    from quantkit.bench.source import load

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    data = load_digits()
    x = (data.images[..., None] / 16.0).astype(np.float32)
    model = keras.Sequential([keras.Input((8, 8, 1), name="pixels"),
                              keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    source = load(model, name)
    return Prepared(source, [x[800:900]], source.reference([x[1000:1300]],
                                                           data.target[1000:1300]))


def test_sweep_pipeline_gives_the_serial_table(tmp_path):
    """Rows (one element each, then timed per mode) equal the serial run's in every column a
    conversion determines, in the same order; the outputs are written; int8 still scores."""
    from quantkit.beam.sweep import deterministic, prepared, run_sweep
    from quantkit.bench import Settings
    from quantkit.bench.run import measure_source

    settings = Settings(invokes=10, latency_budget_s=0.5)
    modes = [quantkit.Preset.INT8]  # × quantkit and tf.lite: two rows, timed side by side
    ready, _ = prepared(prepare_tiny, "tiny")
    _, serial = measure_source(ready.source, ready.calibration, ready.ref, modes, True,
                               settings, progress=lambda line: None)
    run_sweep(prepare_tiny, ["tiny"], modes, settings, str(tmp_path), "test")
    result = json.loads((tmp_path / "results.json").read_text())
    assert [deterministic(r) for r in result["rows"]] == [deterministic(r) for r in serial]
    assert len(serial) == 2 and all(r["latency_ms"] for r in result["rows"])
    assert result["rows"][0]["latency_ratio"] is not None
    int8 = result["rows"][0]
    assert (int8["mode"], int8["converter"]) == ("int8", "quantkit")
    assert int8["sqnr_db"] > 25.0 and int8["top1_agreement"] > 0.95, int8
    assert (tmp_path / "results.md").read_text().count("| tiny |") == 2
    assert (tmp_path / "accuracy_vs_size.png").stat().st_size > 0


def test_channel_means_saved_before_exact_sums_still_load():
    from calibration import ChannelMeanStats

    old = ChannelMeanStats.from_json({"sums": [1.5, -2.0, 0.0], "count": 2})
    assert old.sums == ((1.5,), (-2.0,), ())
    np.testing.assert_array_equal(old.mean, [0.75, -1.0, 0.0])
    assert ChannelMeanStats.from_json(old.to_json()) == old
