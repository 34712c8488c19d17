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
