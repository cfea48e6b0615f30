"""The values inside a WHILE's body: its condition and body run step by step in LiteRT.

A float graph run as a whole (``runtime.LiteRTExecutor``) gives the values of its own tensors
only: the tensors of the subgraphs a WHILE runs are LiteRT's inside the op. To observe them
(issue #12: an integer WHILE needs ranges for its body), the loop is replayed here: from the
WHILE op's inputs of a batch (constants, or the values the main graph's run observed), the
condition graph and the body graph run as LiteRT models of their own (every tensor observed)
until the condition is false, each step's body outputs fed back as the next step's inputs, as
LiteRT's WHILE kernel does. A nested WHILE is replayed the same way from its body's values.

``loop_values`` is a ``derive`` of ``runtime.LiteRTExecutor``: the float values of every step,
per tensor name (subgraph tensor names are unique across graphs: the frontend scopes them by
their loop), so the calibration engine's observers see every step as more rows.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from quantkit.ir.graph import Graph, Op, Tensor, while_ops
from quantkit.ir.options import WhileOptions
from quantkit.runtime import ExecutorError, LiteRTExecutor

# More steps than any calibration loop takes: a condition that stays true is an error.
MAX_STEPS = 100_000

Values = dict[str, np.ndarray]


def loop_inputs(graph: Graph) -> list[Tensor]:
    """The WHILE ops' inputs that are neither constants nor float (a trip count read at run
    time): the replay needs their values, so the float run observes them too."""
    return list(dict.fromkeys(t for op in while_ops(graph) for t in op.inputs
                              if not t.is_const and np.dtype(t.dtype) != np.float32))


class LoopStepper:
    """Replays one WHILE op: ``steps(values)`` gives the observed values of every step.

    Args:
        op: the WHILE op (its options hold the condition and body graphs).
        num_threads: LiteRT's threads for the condition and body runs.
    """

    def __init__(self, op: Op, num_threads: int | None = None):
        self.op = op
        options: WhileOptions = op.options
        self.cond = LiteRTExecutor(options.cond_subgraph, num_threads=num_threads)
        body = options.body_subgraph
        self.body = LiteRTExecutor(body, num_threads=num_threads,
                                   derive=loop_values(body, num_threads))
        if not (len(op.inputs) == len(body.inputs) == len(body.outputs)
                == len(options.cond_subgraph.inputs)):
            raise ExecutorError(f"WHILE op {op.name!r}: {len(op.inputs)} inputs, its body "
                                f"takes {len(body.inputs)} and returns {len(body.outputs)}, "
                                f"its condition takes {len(options.cond_subgraph.inputs)}")

    def steps(self, values: Mapping[str, np.ndarray]) -> list[Values]:
        """Each step's body values (condition values too), from the WHILE's input values in
        ``values`` (by name; constants need none). The last step's body outputs are the
        WHILE's outputs."""
        state = [_fit(_value(t, values, self.op), arg)
                 for t, arg in zip(self.op.inputs, self.body.graph.inputs)]
        done: list[Values] = []
        for _ in range(MAX_STEPS):
            cond = self.cond(dict(zip(self.cond.input_names, state)))
            if not bool(np.all(cond[self.cond.graph.outputs[0].name])):
                return done
            body = self.body(dict(zip(self.body.input_names, state)))
            done.append({**cond, **body})
            state = [_fit(_value(t, body, self.op), arg)
                     for t, arg in zip(self.body.graph.outputs, self.body.graph.inputs)]
        raise ExecutorError(f"WHILE op {self.op.name!r}: its condition is still true after "
                            f"{MAX_STEPS} steps")


def _value(t: Tensor, values: Mapping[str, np.ndarray], op: Op) -> np.ndarray:
    if t.is_const:
        return np.asarray(t.data)
    if t.name not in values:
        raise ExecutorError(f"WHILE op {op.name!r}: no value for its loop variable {t.name!r}")
    return np.asarray(values[t.name])


def _fit(x: np.ndarray, arg: Tensor) -> np.ndarray:
    """``x`` in the shape the subgraph declares for it when that is static and holds as many
    values (a constant ``[1]`` counter for a scalar argument: LiteRT's WHILE resizes it)."""
    shape = arg.shape
    if shape is not None and None not in shape and x.size == int(np.prod(shape)):
        return x.reshape(shape)
    return x


def merged(steps: list[Values]) -> Values:
    """One array per float tensor name over all ``steps``: each step's values as rows of their
    last axis (the channels), the steps one after another (a state's batch may grow after the
    first step, so the steps' values need not have one shape)."""
    names = [n for n, v in steps[0].items() if np.asarray(v).dtype == np.float32] if steps else []
    return {n: np.concatenate([np.asarray(s[n]).reshape(-1, *np.shape(s[n])[-1:])
                               for s in steps]) for n in names}


def loop_values(graph: Graph, num_threads: int | None = None
                ) -> Callable[[Values], Values] | None:
    """A ``derive`` giving the float values of every step of each of ``graph``'s WHILE ops
    (``merged``), from a batch's observed values; None when it has none."""
    steppers = [LoopStepper(op, num_threads) for op in while_ops(graph)]
    if not steppers:
        return None
    return lambda values: {k: v for s in steppers for k, v in merged(s.steps(values)).items()}
