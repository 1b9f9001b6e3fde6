"""Report round trip, atomic staging, and the compiler-log parser."""

import json

import pytest
from conv_helpers import assert_nothing_left

from tfm_fuse.converters import Report
from tfm_fuse.converters._edgetpu_ops import parse_compiler_log
from tfm_fuse.converters._staging import Staging
from tfm_fuse.errors import ConfigError, ConversionError


def _report(ok: bool = True) -> Report:
    return Report(target="onnx", ok=ok, artefacts={"onnx_fp32": "/x/model.onnx"},
                  fidelity={"onnx_fp32": {"max_abs_error_rel": 1.5e-7, "top1_agreement": 1.0}},
                  issues=[] if ok else ["Layer 'up' is Interpolate-opset11"],
                  notes=["batch fixed to 1"], next_steps=["trtexec --onnx=/x/model.onnx"],
                  details={"ops": [{"op": "CONV_2D", "reasons": []}]})


def test_report_json_round_trip(tmp_path):
    r = _report()
    assert Report.from_json(r.to_json()) == r
    r.write(tmp_path)
    assert Report.load(tmp_path) == r
    assert json.loads((tmp_path / "report.json").read_text())["target"] == "onnx"


def test_report_str_is_readable():
    text = str(_report(ok=False))
    assert text.startswith("tfm_fuse conversion report: onnx — FAILED")
    for expected in ("Artefacts:", "max_abs_error_rel=1.5e-07", "Issues", "Interpolate",
                     "Next steps:", "trtexec"):
        assert expected in text


def test_staging_commit_moves_into_place(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    with Staging(out) as stage:
        (stage.path / "model.bin").write_bytes(b"x")
        stage.commit(_report())
    assert sorted(p.name for p in out.iterdir()) == ["model.bin", "report.json", "report.txt"]
    assert_nothing_left(tmp_path / "a" / "b" / "other")


def test_staging_failure_leaves_nothing_including_created_parents(tmp_path):
    out = tmp_path / "new" / "out"
    with pytest.raises(RuntimeError, match="boom"):
        with Staging(out) as stage:
            (stage.path / "half.bin").write_bytes(b"x")
            raise RuntimeError("boom")
    assert not (tmp_path / "new").exists()


def test_failed_report_raises_and_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ConversionError, match="Interpolate-opset11") as info:
        with Staging(out) as stage:
            stage.commit(_report(ok=False))
    assert "keep_failed=True" in str(info.value)
    assert_nothing_left(out)


def test_keep_failed_keeps_artefact(tmp_path):
    out = tmp_path / "out"
    with Staging(out, keep_failed=True) as stage:
        stage.commit(_report(ok=False))
    assert Report.load(out).ok is False


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    with pytest.raises(ConfigError, match=r"already exists.*overwrite=True"):
        Staging(out)
    assert (out / "old.txt").read_text() == "keep me"
    with Staging(out, overwrite=True) as stage:
        stage.commit(_report())
    assert not (out / "old.txt").exists() and (out / "report.json").exists()


def test_overwrite_keeps_old_output_when_conversion_fails(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    with pytest.raises(ConversionError):
        with Staging(out, overwrite=True) as stage:
            stage.commit(_report(ok=False))
    assert (out / "old.txt").read_text() == "keep me"


COMPILER_LOG = """Edge TPU Compiler version 16.0.384591198
Input: model_int8.tflite
Output: model_int8_edgetpu.tflite

Operator                       Count      Status

CONV_2D                        11         Mapped to Edge TPU
RESIZE_NEAREST_NEIGHBOR        1          Operation version not supported
QUANTIZE                       2          Mapped to Edge TPU
MAX_POOL_2D                    6          Mapped to Edge TPU
"""


def test_parse_compiler_log():
    parsed = parse_compiler_log(COMPILER_LOG)
    assert parsed["mapped"] == 19 and parsed["not_mapped"] == 1
    assert {"op": "RESIZE_NEAREST_NEIGHBOR", "count": 1,
            "status": "Operation version not supported"} in parsed["ops"]
