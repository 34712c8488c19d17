"""Every code block of the README runs as written.

The Python blocks run in order as one script; the command-line block runs line by line in bash, with
``chipnet-zoo`` taken from this checkout and ``hf://<owner>/<repo>`` pointing at the loopback fake Hub.
The block under "Two commands" is the exception: ``./run.sh test`` is the command that runs this file,
and ``./run.sh demo`` is ``chipnet-zoo demo`` after the install (tests/test_demo.py runs the demo).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README, flags=re.S | re.M)


def _env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "CHIPNET_ZOO_HOME": str(tmp_path / "home"),
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("CHIPNET_ZOO_REGISTRY", None)
    return env


def test_readme_has_the_blocks_this_test_runs():
    assert len(_blocks("python")) >= 3
    bash = _blocks("bash")
    assert len(bash) == 2 and "./run.sh demo" in bash[0] and "chipnet-zoo prune" in bash[1]


@pytest.mark.slow
def test_readme_python_blocks_run(tmp_path):
    script = "\n\n".join(_blocks("python"))
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(t for t in proc.stdout.splitlines() if t.startswith("flops "))
    flops, acc = (float(v) for v in re.findall(r"\d\.\d+", line))
    assert flops <= 0.25 and acc > 0.5, line  # a trained model pruned, not one at chance (0.1)
    assert (tmp_path / "m.safetensors").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.hub
def test_readme_command_line_block_runs(tmp_path, hub_repo):
    block = _blocks("bash")[1].replace("<owner>/<repo>", hub_repo).replace("\\\n", " ")
    shim = tmp_path / "bin" / "chipnet-zoo"
    shim.parent.mkdir()
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m chipnet_zoo \"$@\"\n")
    shim.chmod(0o755)
    env = _env(tmp_path)
    env["PATH"] = f"{shim.parent}{os.pathsep}{env['PATH']}"
    for line in filter(None, (t.split("#", 1)[0].strip() for t in block.splitlines())):
        proc = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, f"{line}\n{proc.stderr[-3000:]}"
    assert (tmp_path / "runs" / "slim").is_dir() and (tmp_path / "runs" / "transfer").is_dir()
    from chipnet_zoo.registry import MaskRegistry

    assert [e.key for e in MaskRegistry(f"hf://{hub_repo}").list()] == ["resnet8/mnist5k/flops-0.25"]
