"""Step 4 of planning: the edits that carry the chosen parameters into the graph.

Each tensor a quantized op writes becomes an integer in place, in that op's storage (its
*home*). Every other reader gets the version it needs: a QUANTIZE from float (or from another
integer storage: an int16 op reading an int8 tensor, which LiteRT's QUANTIZE requantizes), a
DEQUANTIZE for float readers. Constants are quantized for their readers; the model's inputs
and outputs get the types the mode asks for. A fused LSTM's other inputs (weights, biases,
states) and its intermediates follow LiteRT's integer LSTM (``quantize.lstm``).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import numpy as np

from quantkit.ir.graph import Graph, Op, Tensor
from quantkit.ops import OPS, BiasCorrection, FusedKernel, OutputRule, QuantRule
from quantkit.quantize import lstm
from quantkit.quantize import math as qm
from quantkit.quantize.clipping import mse_weight_params
from quantkit.quantize.edits import (Convert, Edit, Retype, SetGraphOutput, SetInput,
                                     SetOptions)
from quantkit.quantize.params import Node, Params, Ranges, constant_range
from quantkit.quantize.fake_quant import trained_weight_params
from quantkit.quantize.schemes import Scheme, scheme_for, weight_granularity
from quantkit.recipe import OpSettings
from quantkit.types import (NUMPY_TENSOR_TYPES, ConversionError, ConversionMode,
                            Granularity, OpType, Phase, QuantParams, TensorType)

Means = Mapping[str, np.ndarray]  # tensor name → per-channel mean (for bias correction)
# A weighted op's integer weights for its weight params and storage, or None for nearest
# rounding (quantize.adaround.AdaRound is one).
WeightRounder = Callable[[Op, QuantParams, qm.Storage], "np.ndarray | None"]

_FLOAT = np.dtype(np.float32)
_IO_DTYPES = {TensorType.FLOAT32: _FLOAT, TensorType.INT8: np.dtype(np.int8),
              TensorType.UINT8: np.dtype(np.uint8), TensorType.INT16: np.dtype(np.int16)}


class Rewire:
    """Plans the integer versions of tensors (in each reader's storage: int8, int16 or uint8),
    the converted copies at float/integer borders, the quantized constants, and the model's
    typed inputs and outputs."""

    def __init__(self, graph: Graph, rules: dict[Op, QuantRule], schemes: dict[Op, Scheme],
                 params: Params, mode: ConversionMode, float_ops: list[Op], means: Means,
                 settings: OpSettings, rounding: WeightRounder | None = None,
                 ranges: Ranges | None = None):
        self.graph, self.rules, self.schemes, self.mode = graph, rules, schemes, mode
        self.ranges = ranges or {}  # calibrated ranges (a fused LSTM's cell state)
        self.params, self.requantize = params.tensor_params, params.requantize
        self.float_ops, self.settings, self.rounding = float_ops, settings, rounding
        self.means = means if mode.bias_correction else {}
        self.default = scheme_for(mode).activations
        self.edits: list[Edit] = []
        producers = graph.producers()
        io_in = _IO_DTYPES[mode.input_type]
        # Each tensor's home: the storage it becomes an integer in, where it is. Written by a
        # quantized op: that op's storage; a model input of the mode's own integer type: that.
        self.home: dict[Tensor, qm.Storage] = {
            t: storage for t, storage in self.params
            if producers.get(t) in rules and schemes[producers[t]].activations == storage}
        if io_in == self.default.dtype:
            self.home.update({t: self.default for t in graph.inputs
                              if (t, self.default) in self.params and t not in producers})
        # Model inputs of another integer type (uint8 into an int8 model): z shifted by 128.
        shifted = io_in not in (_FLOAT, self.default.dtype)
        self.uint8_inputs = {t for t in graph.inputs
                             if shifted and (t, self.default) in self.params}
        self._versions: dict[Node, Tensor] = {}
        self._float: dict[Tensor, Tensor] = {}
        self._consts: dict[tuple, Tensor] = {}  # (constant, params, how) → quantized copy
        self._names = {t.name for t in graph.tensors()}  # activations keep unique names

    def _fresh(self, name: str) -> str:
        """``name``, suffixed (``_1``, ...) if a tensor has it already."""
        fresh, n = name, 0
        while fresh in self._names:
            n += 1
            fresh = f"{name}_{n}"
        self._names.add(fresh)
        return fresh

    def run(self) -> list[Edit]:
        for t, storage in self.home.items():
            self.edits.append(Retype(t, storage.dtype, self.params[(t, storage)]))
        for t in self.uint8_inputs:
            self.edits.append(Retype(t, np.dtype(np.uint8),
                                     qm.requantized(self.params[(t, self.default)], 128)))
        for op, rule in self.rules.items():
            self._quantized_op(op, rule)
        for op in self.float_ops:
            for i, t in enumerate(op.inputs):
                if t is not None and self.float_version(t) is not t:
                    self.edits.append(SetInput(op, i, self.float_version(t)))
        for position, t in enumerate(self.graph.outputs):
            self._model_output(position, t)
        return self.edits

    # --- versions of a value -------------------------------------------------------------
    def version(self, t: Tensor, storage: qm.Storage) -> Tensor:
        """``t`` in ``storage`` with its planned params (``t`` itself where that is its home,
        else a QUANTIZE of it: from float, uint8, or another integer storage)."""
        if self.home.get(t) == storage:
            return t
        if (t, storage) not in self._versions:
            self._versions[(t, storage)] = self._convert(
                OpType.QUANTIZE, t, storage.dtype, self.params[(t, storage)], storage.dtype.name)
        return self._versions[(t, storage)]

    def float_version(self, t: Tensor) -> Tensor:
        """``t`` as float32 (``t`` itself, or a DEQUANTIZE of its integer version)."""
        if t not in self.home and t not in self.uint8_inputs:
            return t
        if t not in self._float:
            self._float[t] = self._convert(OpType.DEQUANTIZE, t, _FLOAT, None, "float")
        return self._float[t]

    def _convert(self, op_type: OpType, source: Tensor, dtype: np.dtype,
                 params: QuantParams | None, suffix: str) -> Tensor:
        name = self._fresh(f"{source.name}/{suffix}")
        out = Tensor(name, dtype, source.shape, quant=params)
        op = Op(op_type, [source], [out], name=name)
        self.edits.append(Convert(op))
        return out

    # --- ops -----------------------------------------------------------------------------
    def _quantized_op(self, op: Op, rule: QuantRule) -> None:
        scheme = self.schemes[op]
        storage = scheme.activations
        shared = (self.params.get((op.outputs[0], storage))
                  if rule.output is OutputRule.SHARED else None)
        for i in rule.activation_inputs(len(op.inputs)):
            t = op.inputs[i]
            if t is None or np.dtype(t.dtype) != _FLOAT:
                continue
            if t.is_const:
                lo, hi = constant_range(t)
                params = shared or self._paired(op, rule, i, storage) or \
                    qm.activation_params(lo, hi, storage)
                self.edits.append(SetInput(op, i, self._constant(
                    t, params, qm.quantize_activation, storage)))
            elif (op, i) in self.requantize:
                self.edits.append(SetInput(op, i, self._convert(
                    OpType.QUANTIZE, self.version(t, storage), storage.dtype,
                    self.requantize[(op, i)], "requantized")))
            elif self.version(t, storage) is not t:
                self.edits.append(SetInput(op, i, self.version(t, storage)))
        if OPS[op.type].weights is not None:
            self._weights(op, rule, scheme)
        if OPS[op.type].fused is FusedKernel.LSTM_8X8_16:
            self._lstm(op, storage)
        if storage == qm.INT16 and OPS[op.type].int16.general_scaling:
            # the schema's default (power-of-two scales) would misread calibrated int16 scales
            self.edits.append(SetOptions(op, dataclasses.replace(op.options,
                                                                 pot_scale_int16=False)))

    def _paired(self, op: Op, rule: QuantRule, i: int, storage: qm.Storage
                ) -> QuantParams | None:
        """A ``PAIRED`` op's input ``i`` is read at its output ``i``'s parameters."""
        if rule.output is not OutputRule.PAIRED or i >= len(op.outputs):
            return None
        return self.params.get((op.outputs[i], storage))

    def _weights(self, op: Op, rule: QuantRule, scheme: Scheme) -> None:
        spec = OPS[op.type]
        layout, storage = spec.weights, scheme.weights
        w = op.inputs[layout.weights_input]
        per_channel = (scheme.per_channel and weight_granularity(self.mode, op, self.settings)
                       is Granularity.PER_CHANNEL)
        axis = layout.output_axis if per_channel else None
        trained = trained_weight_params(w, axis) if storage == qm.INT8_WEIGHTS else None
        w_params = trained or (mse_weight_params(w.data, axis, storage)
                               if self.mode.accuracy and storage.symmetric
                               else qm.weight_params(w.data, axis, storage))
        w_quantized = self._constant(w, w_params, qm.quantize_weights, storage)
        rounded = (self.rounding(op, w_params, storage)
                   if self.rounding is not None and trained is None else None)
        if rounded is not None:  # learned up/down rounding (quantize.adaround)
            w_quantized = Tensor(w.name, rounded.dtype, w.shape, rounded, w_params)
        self.edits.append(SetInput(op, layout.weights_input, w_quantized))
        bias = op.inputs[layout.bias_input] if layout.bias_input < len(op.inputs) else None
        if bias is None:
            return
        activation = op.inputs[rule.activation_inputs(len(op.inputs))[0]]
        b_params = qm.bias_params(self.params[(activation, scheme.activations)], w_params)
        correction = None
        if activation.name in self.means and spec.bias_correction is not BiasCorrection.NONE:
            correction = qm.weight_error_bias(spec.bias_correction, w.data, w_params,
                                              self.means[activation.name], storage,
                                              quantized=w_quantized.data)
        bias_storage = scheme.bias
        if scheme.activations == qm.INT16 and spec.int16.bias is not None:
            bias_storage = qm.BIAS_STORAGE[spec.int16.bias]  # e.g. int16 depthwise: int64 only
        if correction is None:
            quantized = self._constant(bias, b_params, qm.quantize_bias, bias_storage)
        else:
            data = qm.quantize_bias(bias.data - correction, b_params, bias_storage)
            quantized = Tensor(bias.name, data.dtype, bias.shape, data, b_params)
        self.edits.append(SetInput(op, layout.bias_input, quantized))
        if scheme.activations == qm.INT16 and spec.int16.bias_type_option:
            # as TF: int16 kernels read the bias type from the options
            bias_type = NUMPY_TENSOR_TYPES[bias_storage.dtype]
            self.edits.append(SetOptions(op, dataclasses.replace(
                op.options, quantized_bias_type=bias_type)))

    def _lstm(self, op: Op, storage: qm.Storage) -> None:
        """LiteRT's integer LSTM (``quantize.lstm``): its cell state's range is the one the
        float LSTM gave calibration (else its ``cell_clip``, which bounds it)."""
        name = lstm.cell_state_name(op)
        if name in self.ranges:
            cell_max = max(abs(float(v)) for v in self.ranges[name])
        elif op.options.cell_clip > 0:
            cell_max = float(op.options.cell_clip)
        else:
            raise ConversionError(
                Phase.QUANTIZATION, f"UNIDIRECTIONAL_SEQUENCE_LSTM op {op.name!r}: its cell "
                f"state {name!r} has no range (calibrate with a representative_dataset) and "
                "no cell_clip bounds it")
        params = lstm.lstm_params(op, self.params[(op.inputs[0], storage)],
                                  self.params[(op.outputs[0], storage)], cell_max)
        self.edits.extend(lstm.integer_edits(op, params))

    def _constant(self, t: Tensor, params: QuantParams, quantize, storage: qm.Storage) -> Tensor:
        key = (t, params, quantize, storage)
        if key not in self._consts:
            data = quantize(t.data, params, storage)
            self._consts[key] = Tensor(t.name, data.dtype, t.shape, data, params)
        return self._consts[key]

    # --- the model's outputs -------------------------------------------------------------
    def _model_output(self, position: int, t: Tensor) -> None:
        if np.dtype(t.dtype) != _FLOAT:
            return
        wanted = self.mode.output_type
        if wanted == TensorType.FLOAT32:
            if t in self.home:
                out = self.float_version(t)
                inner = self._fresh(f"{t.name}/int8")
                self.edits.append(SetGraphOutput(position, out, inner))
            return
        integer = self.version(t, self.default)
        if _IO_DTYPES[wanted] == self.default.dtype:
            if integer is not t:
                inner = self._fresh(f"{t.name}/float")
                self.edits.append(SetGraphOutput(position, integer, inner))
            return
        out = self._convert(OpType.QUANTIZE, integer, _IO_DTYPES[wanted],
                            qm.requantized(self.params[(t, self.default)], 128), "uint8")
        inner = self._fresh(f"{t.name}/{'int8' if t in self.home else 'float'}")
        self.edits.append(SetGraphOutput(position, out, inner))
