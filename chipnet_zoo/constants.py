"""Environment-driven configuration. Read as ``constants.X`` at call time so tests can patch it."""

from __future__ import annotations

import os
from pathlib import Path

#: Version of the mask file format written by this library (readers accept the same major version).
MASK_FORMAT_VERSION = "1.0"
#: Namespace of the safetensors metadata keys.
METADATA_NAMESPACE = "chipnet_zoo."


def _default_home() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "chipnet-zoo"


#: Root folder of chipnet-zoo's user-level state (default registry, dataset cache).
CHIPNET_ZOO_HOME = Path(os.environ.get("CHIPNET_ZOO_HOME", _default_home()))
#: The default local mask registry (``MaskRegistry()`` with no location).
CHIPNET_ZOO_REGISTRY = os.environ.get("CHIPNET_ZOO_REGISTRY", str(CHIPNET_ZOO_HOME / "registry"))
#: Print full tracebacks from the CLI.
CHIPNET_DEBUG = os.environ.get("CHIPNET_DEBUG", "") not in ("", "0", "false", "False")
