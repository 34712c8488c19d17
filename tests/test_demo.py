"""``chipnet-zoo demo --quick`` end to end in a subprocess (offline, CPU): table, plot and registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chipnet_zoo.mask import Mask


@pytest.mark.slow  # ~16 s: the whole demo end to end; CI runs it
def test_demo_quick(tmp_path):
    home = tmp_path / "home"
    repo = str(Path(__file__).resolve().parents[1])  # this checkout's chipnet_zoo, not an installed one
    env = {**os.environ, "CHIPNET_ZOO_HOME": str(home), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
           "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("CHIPNET_ZOO_REGISTRY", None)
    proc = subprocess.run([sys.executable, "-m", "chipnet_zoo", "demo", "--quick", "--out", str(tmp_path / "demo")],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for method in ("dense", "chipnet-direct", "transfer-scratch (animal-mnist)", "random"):
        assert f"| {method} |" in out, out
    assert "flops 0.125" in out and "settings:" in out and "wall time:" in out
    assert (tmp_path / "demo" / "plot-mnist5k.png").stat().st_size > 1000
    rows = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert {r["method"] for r in rows} == {"dense", "chipnet-direct", "transfer-scratch", "random"}
    for r in rows:
        assert 0.0 <= r["test_accuracy"] <= 1.0
        if r["method"] != "dense":
            assert r["ratios"]["flops"] <= 0.125 + 1e-12
    # the teacher mask went through the demo's own registry (inside --out) and was pulled by key;
    # the default registry is never created, so the shipped zoo stays what MaskRegistry() pulls
    index = json.loads((tmp_path / "demo" / "registry" / "index.json").read_text())
    keys = [e["key"] for e in index["entries"]]
    assert keys == ["resnet8/animal-mnist/flops-0.125"]
    assert not (home / "registry").exists()
    assert "pushed and pulled resnet8/animal-mnist/flops-0.125" in proc.stderr
    assert f"teacher masks in the registry {tmp_path / 'demo' / 'registry'}" in proc.stderr
    transferred = next(r for r in rows if r["method"] == "transfer-scratch")
    student_mask = Mask.load(os.path.join(transferred["run_dir"], "mask.safetensors"))
    assert student_mask.metadata["method"] == "transfer:resnet8/animal-mnist/flops-0.125"
    assert student_mask.metadata["dataset"] == "mnist5k"
    # every run folder records the full command that made it (transfer runs included)
    command = ["chipnet-zoo", "demo", "--quick", "--out", str(tmp_path / "demo")]
    for r in rows:
        assert json.loads((Path(r["run_dir"]) / "config.json").read_text())["command"] == command, r["method"]
