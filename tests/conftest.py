"""Test-session isolation: every cache, registry and token lives in a temp dir.

The environment is set at import time, before anything imports huggingface_hub or datasets
(they read HF_ENDPOINT & co. when first imported).
"""

from __future__ import annotations

import os
import tempfile

_SESSION_HOME = tempfile.mkdtemp(prefix="chipnet-zoo-tests-")
os.environ["HF_HOME"] = os.path.join(_SESSION_HOME, "hf")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["HF_HUB_DISABLE_UPDATE_CHECK"] = "1"
os.environ["HF_TOKEN"] = "hf_dummy_test_token_never_real"
os.environ["CHIPNET_ZOO_HOME"] = os.path.join(_SESSION_HOME, "zoo")
os.environ.pop("CHIPNET_ZOO_REGISTRY", None)
os.environ.pop("HF_HUB_OFFLINE", None)
os.environ.setdefault("OMP_NUM_THREADS", "2")

# --- loopback fake Hugging Face Hub (tests/fakehub.py) ------------------------------------------------
# Started at import time so HF_ENDPOINT is set before huggingface_hub / datasets are first imported
# (they freeze the endpoint at import). Child processes inherit HF_ENDPOINT and reach the same server.
import atexit  # noqa: E402

import pytest  # noqa: E402
from fakehub import FakeHub  # noqa: E402

FAKE_HUB = FakeHub().start()
atexit.register(FAKE_HUB.stop)
os.environ["HF_ENDPOINT"] = FAKE_HUB.endpoint


@pytest.fixture(scope="session")
def fake_hub() -> FakeHub:
    """The session's fake Hub (``.endpoint``, ``.unique_repo_id()``, ``.lfs()``, ``.tamper()``, ...).
    State is shared across tests: use a fresh repo id per test (``hub_repo``) rather than ``reset()``."""
    return FAKE_HUB


@pytest.fixture
def hub_repo(fake_hub: FakeHub) -> str:
    """A repo id no other test uses, e.g. ``acme/repo-1a2b3c4d5e`` (not created yet)."""
    return fake_hub.unique_repo_id("acme")


@pytest.fixture
def fresh_hf_cache(tmp_path, monkeypatch) -> str:
    """An empty Hugging Face hub cache for this test (patches ``huggingface_hub.constants`` and the env
    var, so subprocesses use it too)."""
    from huggingface_hub import constants as hf_constants

    cache = str(tmp_path / "hf-hub-cache")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", cache)
    monkeypatch.setenv("HF_HUB_CACHE", cache)
    return cache


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module (timing- and tracing-heavy tests behave the same on any core count)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
