"""bench/gpu.py runs without a GPU: CPU HNSW measured, GPU types reported as unavailable."""

from __future__ import annotations

import json

from bench import gpu


def test_cpu_only_dry_run(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    report = gpu.main(
        ["--cpu-only", "--rows", "3000", "--nq", "50", "--nq1-queries", "20", "--out", str(out)]
    )
    assert json.loads(out.read_text()) == report
    hnsw, *gpu_rows = report["results"]
    assert hnsw["index"] == "HNSW (CPU)" and hnsw["searched_on"] == "cpu"
    assert hnsw["reached_target"] and hnsw["recall"] >= 0.95
    assert hnsw["qps_nq1"] > 0 and hnsw["qps_nq100"] > 0 and hnsw["build_s"] >= 0
    assert [r["index"] for r in gpu_rows] == ["GPU_IVF_FLAT", "GPU_IVF_PQ", "GPU_CAGRA", "GPU_BRUTE_FORCE"]
    assert all(r == {"index": r["index"], "status": "unavailable", "reason": "--cpu-only"} for r in gpu_rows)
    assert "GPU_CAGRA        -    unavailable: --cpu-only" in capsys.readouterr().out
    gpu.main(["--table", str(out)])
    table = capsys.readouterr().out
    assert "| HNSW (CPU) | cpu |" in table
    assert "| GPU_CAGRA | unavailable: --cpu-only |" in table
