"""Operator options as frozen dataclasses.

Each class is named after its table in the TFLite schema and its fields carry the schema's
field names, so the writer can serialize any of them through the schema binding generically
(``Conv2DOptions.stride_w`` → ``tflite.Conv2DOptions.AddStrideW``).
"""

from __future__ import annotations

from dataclasses import dataclass

from quantkit.ir import graph as ir_graph
from quantkit.types import Activation, Padding, TensorType


@dataclass(frozen=True)
class Conv2DOptions:
    padding: Padding
    stride_w: int = 1
    stride_h: int = 1
    fused_activation_function: Activation = Activation.NONE
    dilation_w_factor: int = 1
    dilation_h_factor: int = 1
    quantized_bias_type: TensorType = TensorType.FLOAT32  # int16x8: INT64 or INT32


@dataclass(frozen=True)
class DepthwiseConv2DOptions:
    padding: Padding
    stride_w: int = 1
    stride_h: int = 1
    depth_multiplier: int = 1
    fused_activation_function: Activation = Activation.NONE
    dilation_w_factor: int = 1
    dilation_h_factor: int = 1


@dataclass(frozen=True)
class FullyConnectedOptions:
    fused_activation_function: Activation = Activation.NONE
    keep_num_dims: bool = False
    asymmetric_quantize_inputs: bool = False  # dynamic-range (hybrid) kernels only
    quantized_bias_type: TensorType = TensorType.FLOAT32


@dataclass(frozen=True)
class TransposeConvOptions:
    padding: Padding
    stride_w: int = 1
    stride_h: int = 1
    fused_activation_function: Activation = Activation.NONE
    quantized_bias_type: TensorType = TensorType.FLOAT32


@dataclass(frozen=True)
class Pool2DOptions:
    padding: Padding
    stride_w: int
    stride_h: int
    filter_width: int
    filter_height: int
    fused_activation_function: Activation = Activation.NONE


@dataclass(frozen=True)
class AddOptions:
    fused_activation_function: Activation = Activation.NONE
    pot_scale_int16: bool = True  # int16: the schema's default assumes power-of-two scales


@dataclass(frozen=True)
class SubOptions:
    fused_activation_function: Activation = Activation.NONE
    pot_scale_int16: bool = True


@dataclass(frozen=True)
class MulOptions:
    fused_activation_function: Activation = Activation.NONE


@dataclass(frozen=True)
class DivOptions:
    fused_activation_function: Activation = Activation.NONE


@dataclass(frozen=True)
class ConcatenationOptions:
    axis: int
    fused_activation_function: Activation = Activation.NONE


@dataclass(frozen=True)
class ReducerOptions:
    keep_dims: bool = False


@dataclass(frozen=True)
class SqueezeOptions:
    squeeze_dims: tuple[int, ...] = ()


@dataclass(frozen=True)
class StridedSliceOptions:
    begin_mask: int = 0
    end_mask: int = 0
    ellipsis_mask: int = 0
    new_axis_mask: int = 0
    shrink_axis_mask: int = 0


@dataclass(frozen=True)
class SoftmaxOptions:
    beta: float = 1.0


@dataclass(frozen=True)
class LeakyReluOptions:
    alpha: float


@dataclass(frozen=True)
class ResizeBilinearOptions:
    align_corners: bool = False
    half_pixel_centers: bool = False


@dataclass(frozen=True)
class ResizeNearestNeighborOptions:
    align_corners: bool = False
    half_pixel_centers: bool = False


@dataclass(frozen=True)
class PackOptions:
    values_count: int
    axis: int = 0


@dataclass(frozen=True)
class UnpackOptions:
    num: int
    axis: int = 0


@dataclass(frozen=True)
class CastOptions:
    in_data_type: TensorType
    out_data_type: TensorType


@dataclass(frozen=True)
class ShapeOptions:
    out_type: TensorType = TensorType.INT32


@dataclass(frozen=True)
class GatherOptions:
    axis: int = 0
    batch_dims: int = 0


@dataclass(frozen=True)
class DepthToSpaceOptions:
    block_size: int


@dataclass(frozen=True)
class SplitOptions:
    num_splits: int


@dataclass(frozen=True)
class ArgMaxOptions:
    output_type: TensorType = TensorType.INT64


@dataclass(frozen=True)
class ArgMinOptions:
    output_type: TensorType = TensorType.INT64


@dataclass(frozen=True)
class BatchMatMulOptions:
    adj_x: bool = False
    adj_y: bool = False
    asymmetric_quantize_inputs: bool = False


@dataclass(frozen=True)
class GeluOptions:
    approximate: bool = False


# --- issue #12: Conv3D and SPLIT_V ------------------------------------------------------------
@dataclass(frozen=True)
class Conv3DOptions:
    padding: Padding
    stride_d: int = 1
    stride_w: int = 1
    stride_h: int = 1
    fused_activation_function: Activation = Activation.NONE
    dilation_d_factor: int = 1
    dilation_w_factor: int = 1
    dilation_h_factor: int = 1


@dataclass(frozen=True)
class SplitVOptions:
    num_splits: int


# --- issue #12: fused sequence ops (their states are variable tensors: Tensor.is_variable) ----
@dataclass(frozen=True)
class UnidirectionalSequenceLSTMOptions:
    fused_activation_function: Activation = Activation.TANH  # the cell's and the output's
    cell_clip: float = 0.0  # 0: no clipping
    proj_clip: float = 0.0
    time_major: bool = False
    asymmetric_quantize_inputs: bool = False  # dynamic-range (hybrid) kernel only
    diagonal_recurrent_tensors: bool = False


@dataclass(frozen=True)
class SequenceRNNOptions:
    time_major: bool = False
    fused_activation_function: Activation = Activation.TANH
    asymmetric_quantize_inputs: bool = False  # dynamic-range (hybrid) kernel only


# --- issue #12: loops as subgraphs (the writer gives the graphs their subgraph indices) --------
@dataclass(frozen=True)
class WhileOptions:
    """``cond_subgraph``: computes the bool whether to run ``body_subgraph`` again, from the
    loop variables; both take the loop variables as inputs, the body returns their next values.
    The schema stores ``cond_subgraph_index`` and ``body_subgraph_index``: a field holding a
    ``Graph`` is written as ``<field>_index`` (``tflite_io.options_codec``); read back, the
    fields hold those indices."""

    cond_subgraph: ir_graph.Graph | int
    body_subgraph: ir_graph.Graph | int
