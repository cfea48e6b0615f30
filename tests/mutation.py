"""Mutation check: can the suite tell a quantkit model that ignores its input?

    .venv/bin/python -m pytest -p tests.mutation [--mutation-report out.json] [pytest args]
    make mutation                                   (the whole suite, report in .mutation.json)

With this plugin loaded, every model that quantkit wrote (its description starts with
"quantkit") is fed random noise in LiteRT instead of the input a test gives it: each
interpreter draws its own noise (seeded by the model's bytes and a counter), so two quantkit
models compared with each other see different inputs too. Models from TF's converter run
untouched. At the end the plugin lists the tests that ran a quantkit model and still passed:
each of those either cannot see a broken model (fix it) or says in its docstring why its
input does not matter. The run's exit status is 0 when at most 1 % of the tests that ran a
quantkit model survive (the tests that fail are the point), 1 otherwise.

The noise has the statistics of the input it replaces (float: the same mean and standard
deviation, normal; integer: uniform over the input's own [min, max], so token ids stay valid
indices; bool: fair coin), so a model fed it runs as it would on data, only on the wrong data.

Only this process is patched: notebooks run in their own kernels and are not mutated.

The float graphs calibration runs in LiteRT (``quantkit.runtime``, description
``CALIBRATION_DESCRIPTION``, "quantkit-calibration ...") are not mutated by default: noise
there only moves the calibrated ranges, the converted model is still checked on its real
input, and every test that merely calibrates would be counted as running a quantkit model.
``--mutate-calibration`` feeds them noise too, to check the runtime's own tests
(``tests/test_runtime.py``).
"""

from __future__ import annotations

import itertools
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert import interpreter as _litert

_counter = itertools.count()
_state = {"item": None}
_ran_quantkit: set[str] = set()
_passed: dict[str, bool] = {}
_options = {"mutate_calibration": False}
# quantkit.runtime.CALIBRATION_DESCRIPTION (not imported: this plugin loads before quantkit).
CALIBRATION_MARKER = b"quantkit-calibration"


def _is_quantkit(content: bytes | None, path: str | None) -> bool:
    from tflite.Model import Model

    if content is None and path is not None:
        content = Path(path).read_bytes()
    if not content:
        return False
    try:
        description = Model.GetRootAsModel(content, 0).Description() or b""
    except Exception:  # not a flatbuffer the binding reads: LiteRT will say so itself
        return False
    if description.startswith(CALIBRATION_MARKER):
        return _options["mutate_calibration"]
    return description.startswith(b"quantkit")


def noise_like(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random values with ``x``'s shape, dtype and rough statistics (see the module doc)."""
    x = np.asarray(x)
    if x.dtype == np.bool_:
        return rng.integers(0, 2, x.shape).astype(np.bool_)
    if np.issubdtype(x.dtype, np.integer):
        low, high = (int(x.min()), int(x.max())) if x.size else (0, 0)
        return rng.integers(low, high + 1, x.shape).astype(x.dtype)
    mean, std = (float(x.mean()), float(x.std())) if x.size else (0.0, 1.0)
    return rng.normal(mean, std or 1.0, x.shape).astype(x.dtype)


def _record() -> None:
    item = _state["item"]
    if item is not None:
        _ran_quantkit.add(item)


_original_init = _litert.Interpreter.__init__
_original_set_tensor = _litert.Interpreter.set_tensor
_original_call = _litert.SignatureRunner.__call__


def _init(self, model_path=None, model_content=None, *args, **kwargs):
    _original_init(self, model_path, model_content, *args, **kwargs)
    self._qk_mutate = _is_quantkit(model_content, model_path)
    if self._qk_mutate:
        content = model_content if model_content is not None else Path(model_path).read_bytes()
        self._qk_rng = np.random.default_rng([zlib.crc32(bytes(content)), next(_counter)])
        self._qk_inputs = {d["index"] for d in self.get_input_details()}


def _set_tensor(self, tensor_index, value):
    if getattr(self, "_qk_mutate", False) and tensor_index in self._qk_inputs:
        _record()
        value = noise_like(value, self._qk_rng)
    return _original_set_tensor(self, tensor_index, value)


def _call(self, **kwargs):
    interpreter = self._interpreter
    if getattr(interpreter, "_qk_mutate", False):
        _record()
        kwargs = {k: noise_like(v, interpreter._qk_rng) for k, v in kwargs.items()}
    return _original_call(self, **kwargs)


def pytest_addoption(parser):
    parser.addoption("--mutation-report", default=None, metavar="PATH",
                     help="write the tests that ran a quantkit model and the survivors as JSON")
    parser.addoption("--mutate-calibration", action="store_true",
                     help="also feed noise to the float graphs calibration runs")


def pytest_configure(config):
    _options["mutate_calibration"] = config.getoption("mutate_calibration")
    _litert.Interpreter.__init__ = _init
    _litert.Interpreter.set_tensor = _set_tensor
    _litert.SignatureRunner.__call__ = _call


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _state["item"] = item.nodeid


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed or report.skipped:
        _passed[item.nodeid] = False
    elif call.when == "call":
        _passed.setdefault(item.nodeid, True)


def pytest_runtest_teardown(item):
    _state["item"] = None


def survivors() -> list[str]:
    return sorted(t for t in _ran_quantkit if _passed.get(t, False))


# The most survivors (a share of the tests that ran a quantkit model) the check passes with.
MAX_SURVIVOR_SHARE = 0.01


def _share() -> float:
    return len(survivors()) / len(_ran_quantkit) if _ran_quantkit else 0.0


def pytest_sessionfinish(session, exitstatus):
    """The run passes when few enough tests survive; failing tests are the point here."""
    if exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        session.exitstatus = (pytest.ExitCode.OK if _share() <= MAX_SURVIVOR_SHARE
                              else pytest.ExitCode.TESTS_FAILED)


def pytest_terminal_summary(terminalreporter):
    alive = survivors()
    write = terminalreporter.write_line
    terminalreporter.section("mutation: quantkit models fed noise instead of their input")
    write(f"{len(_ran_quantkit)} tests ran a quantkit model; {len(alive)} still passed "
          f"({100 * _share():.1f} %; the check passes at ≤ {100 * MAX_SURVIVOR_SHARE:g} %)")
    for nodeid in alive:
        write(f"  survived: {nodeid}")
    path = terminalreporter.config.getoption("mutation_report")
    if path:
        Path(path).write_text(json.dumps(
            {"ran_quantkit_model": sorted(_ran_quantkit), "survived": alive}, indent=1))
