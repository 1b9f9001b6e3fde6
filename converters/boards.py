"""The Jetson boards as they are: each one's last JetPack, its TensorRT, the ONNX opset that
TensorRT parses, and whether its GPU runs INT8.

Sources: NVIDIA's JetPack archive (JetPack 4.6.x: TensorRT 8.2.1, the last release for the
Nano and TX2; JetPack 5.1.x: TensorRT 8.5.2 for Xavier; JetPack 6.x: TensorRT 8.6.2 for Orin);
onnx-tensorrt's `docs/operators.md` of each release ("TensorRT 8.2 supports operators up to
Opset 13", release/8.2-GA; "TensorRT 8.5 supports operators up to Opset 17", release/8.5-GA;
8.6-GA likewise 17); TensorRT's support matrix, "Hardware and precision": INT8 needs compute
capability ≥ 6.1 with tensor cores or DP4A — the Nano (Maxwell, 5.3) and TX2 (Pascal, 6.2)
have none, Xavier (Volta, 7.2) and Orin (Ampere, 8.7) do.

Example:
    >>> board = jetson_board("jetson-nano")
    >>> board.tensorrt, board.max_opset, board.int8
    ('8.2', 13, False)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tfm_fuse.errors import ConfigError


@dataclass(frozen=True)
class JetsonBoard:
    """One Jetson board: what its software reads and what its GPU computes fast.

    Args:
        name: the profile's name, e.g. `"jetson-nano"`.
        jetpack: the board's last JetPack.
        tensorrt: that JetPack's TensorRT.
        max_opset: the highest ONNX opset that TensorRT parses.
        int8: the GPU runs INT8 (an explicit Q/DQ ONNX is written and checked); otherwise the
            engine is FP16, built from the FP32 ONNX.
        gpu: the GPU generation and compute capability, for the report.
    """

    name: str
    jetpack: str
    tensorrt: str
    max_opset: int
    int8: bool
    gpu: str

    def as_dict(self) -> dict:
        return asdict(self)


JETSON_BOARDS = {b.name: b for b in (
    JetsonBoard("jetson-nano", "4.6.x", "8.2", 13, False, "Maxwell, compute 5.3: no INT8"),
    JetsonBoard("jetson-tx2", "4.6.x", "8.2", 13, False, "Pascal, compute 6.2: no fast INT8"),
    JetsonBoard("jetson-xavier", "5.1.x", "8.5", 17, True, "Volta, compute 7.2: INT8 tensor cores"),
    JetsonBoard("jetson-orin", "6.x", "8.6", 17, True, "Ampere, compute 8.7: INT8 tensor cores"),
)}
DEFAULT_JETSON = "jetson-orin"


def jetson_board(name: str) -> JetsonBoard:
    """The profile called `name`.

    Raises:
        ConfigError: no such board.
    """
    if name not in JETSON_BOARDS:
        raise ConfigError(f"Unknown Jetson board {name!r}. Accepted: {sorted(JETSON_BOARDS)}.")
    return JETSON_BOARDS[name]
