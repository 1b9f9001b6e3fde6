"""`tfm-fuse demo` end to end on tiny settings: every stage runs and writes what it promises."""

import json

import pytest

from tfm_fuse.app.demo import run_demo


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    rows = run_demo(tmp_path, epochs=3, n_train=768, runs=10)
    base, pruned = rows
    assert pruned["macs"] < base["macs"] and pruned["params"] < base["params"]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["strip_fuse_max_diff"] < 1e-3
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    assert (tmp_path / "fupruner_log.csv").read_text().count("\n") == 4  # header + 3 epochs
    for name in ("baseline", "pruned"):
        assert (tmp_path / f"{name}.keras").exists()
        for target in ("edgetpu", "jetson", "openvino", "onnx"):
            assert (tmp_path / name / target / "report.json").exists()
        assert set(results["rows"][0]["latency_ms"]) == {
            "litert_fp32", "litert_int8", "openvino_cpu", "onnxruntime"}
