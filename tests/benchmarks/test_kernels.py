"""benchmarks.kernels: the SkipLayerNormalization micro-benchmark measures the same computation twice."""

from __future__ import annotations

from benchmarks import kernels


def test_layernorm_ops_compare_equal_computations():
    rows = kernels.layernorm_ops(1, shapes=((2, 5, 16), (1, 3, 32)), calls=2, repeats=2)
    assert [r["shape"] for r in rows] == [[2, 5, 16], [1, 3, 32]]
    for r in rows:
        assert r["max_abs_diff"] < 1e-4  # the split form computes what the fused op computes
        for kind in ("fused", "split"):
            assert 0 < r[kind]["min"] <= r[kind]["us"] <= r[kind]["max"]
        assert r["speedup"] == round(r["fused"]["us"] / r["split"]["us"], 2)
