"""The IR operations the MYRIAD plugin (NCS2) of OpenVINO 2022.3 LTS, its last release, runs.

Source: `src/plugins/intel_myriad/graph_transformer/src/frontend/frontend.cpp` of
openvinotoolkit/openvino at 2022.3 — the `parsers` table, keyed by the legacy layer types an IR
becomes after `ConvertOpSet1ToLegacy` (`Convolution`, `Pooling`, `Eltwise`, `Permute`, ...).
`NATIVE` lists the IR (opset1…opset10) operations that reach one of those parsers: an
element-wise `Add`/`Multiply`/`Maximum`/... becomes `Eltwise`, `Power` or `ScaleShift`;
`MaxPool`/`AvgPool` become `Pooling`; `Transpose` becomes `Permute`; `MatMul` becomes
`FullyConnected` or `GEMM`; `Squeeze`/`Unsqueeze` become `Reshape`. `DECOMPOSED` are operations
that OpenVINO's common transformations rewrite into native ones before the plugin sees them
(the plugin disables only the decompositions of what it runs natively: `Gelu`, `SoftPlus`,
`HSwish`, `MVN`...). Anything else has no parser: the NCS2 refuses the network when it loads it.

Example:
    >>> unsupported(["Convolution", "ReLU", "CumSum"])
    ['CumSum']
"""

from __future__ import annotations

NATIVE = frozenset(name.lower() for name in """
    Parameter Result Const Convert ShapeOf
    Convolution GroupConvolution ConvolutionBackpropData GroupConvolutionBackpropData
    MaxPool AvgPool MatMul BatchNormInference
    ReLU Clamp Sigmoid Tanh Elu PReLU Exp Log Floor Ceiling Round Abs Erf
    Swish HSwish Mish Gelu SoftPlus SoftMax GRN MVN LRN NormalizeL2
    Add Subtract Multiply Divide Maximum Minimum SquaredDifference Power Sqrt Negative
    Equal NotEqual Less LessEqual Greater GreaterEqual LogicalAnd LogicalOr LogicalXor LogicalNot
    Select Concat Split VariadicSplit StridedSlice Reshape Squeeze Unsqueeze Tile Transpose
    Pad Gather GatherND GatherElements Interpolate TopK OneHot Broadcast NonZero
    ReduceMean ReduceMax ReduceMin ReduceSum ReduceLogicalAnd ReverseSequence
    ScatterUpdate ScatterElementsUpdate ROIAlign ROIPooling PSROIPooling NonMaxSuppression
    PriorBox PriorBoxClustered DetectionOutput RegionYolo ReorgYolo Proposal
    CTCGreedyDecoder CTCGreedyDecoderSeqLen LSTMCell LSTMSequence TensorIterator
""".split())

DECOMPOSED = frozenset(name.lower() for name in """
    HSigmoid LogSoftmax ReduceL1 ReduceL2 DepthToSpace SpaceToDepth BatchToSpace
    SpaceToBatch FloorMod Mod
""".split())


def unsupported(op_types) -> list[str]:
    """The IR operation types among `op_types` that the NCS2's MYRIAD plugin cannot run."""
    return sorted({t for t in op_types if t.lower() not in NATIVE | DECOMPOSED})
