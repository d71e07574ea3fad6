"""bench/gpu.py runs without a GPU: CPU HNSW measured, GPU types reported as unavailable."""

from __future__ import annotations

import json

from bench import gpu

SMALL = ["--rows", "1000", "--nq", "20", "--nq1-queries", "5"]


def test_cpu_only_dry_run(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    report = gpu.main(["--cpu-only", *SMALL, "--out", str(out)])
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


def test_a_failing_index_is_reported_and_the_run_goes_on(tmp_path, monkeypatch):
    exact = gpu.ground_truth
    monkeypatch.setattr(gpu, "gpu_available", lambda: True)  # faiss-cpu will refuse every GPU_* build
    monkeypatch.setattr(gpu, "ground_truth", lambda base, queries, on_gpu: exact(base, queries, False))
    report = gpu.main([*SMALL, "--types", "GPU_CAGRA,gpu_brute_force", "--out", str(tmp_path / "g.json")])
    hnsw, cagra, brute = report["results"]
    assert hnsw["searched_on"] == "cpu"
    assert cagra["status"] == brute["status"] == "failed"
    assert cagra["reason"] == (
        "GpuUnavailableError: index type GPU_CAGRA needs a GPU build of faiss: "
        "pip install 'walvus[gpu]' on a machine with CUDA"
    )
