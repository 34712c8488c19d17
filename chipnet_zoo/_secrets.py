"""Secrets never printed: every token the process knows and any URL userinfo are scrubbed from messages
and reprs (docs/reliability.md). Tokens are registered where they enter (``MaskRegistry(token=...)``, a Hub
endpoint with ``user:password@``); ``HF_TOKEN`` and the token huggingface_hub would use are always known."""

from __future__ import annotations

import base64
import os
import re
import sys
from urllib.parse import unquote

_MIN_SECRET = 6  # shorter strings would scrub ordinary words
_KNOWN: set[str] = set()
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]{0,30}://)(?P<userinfo>[^/\s@?#]{1,512})@")
_TOKEN_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_TOKEN")


def register_secret(value: str | None) -> None:
    """Remember ``value`` (and its base64, as in a Basic auth header) as a secret to scrub."""
    if value and isinstance(value, str) and len(value) >= _MIN_SECRET:
        _KNOWN.add(value)
        _KNOWN.add(base64.b64encode(value.encode()).decode().rstrip("="))


def register_url(url: str | None) -> None:
    """Register the userinfo of ``url`` (``user:password@``) as secrets."""
    for m in _USERINFO.finditer(url or ""):
        info = unquote(m.group("userinfo"))
        register_secret(info)
        register_secret(m.group("userinfo"))
        user, _, password = info.partition(":")
        register_secret(password)


def _known() -> set[str]:
    found = set(_KNOWN)
    for name in _TOKEN_ENV:
        value = os.environ.get(name)
        if value and len(value) >= _MIN_SECRET:
            found.add(value)
    if "huggingface_hub" in sys.modules:  # never import it just to scrub
        try:
            from huggingface_hub import get_token

            token = get_token()
        except Exception:  # noqa: BLE001 - scrubbing must never fail
            token = None
        if token and len(token) >= _MIN_SECRET:
            found.add(token)
    for endpoint in (os.environ.get("HF_ENDPOINT"),):
        if endpoint:
            register_url(endpoint)
    return found | _KNOWN


def scrub(text: object) -> str:
    """``text`` with URL userinfo replaced by ``***@`` and every known secret by ``***``."""
    out = _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", str(text))
    for secret in sorted(_known(), key=len, reverse=True):
        out = out.replace(secret, "***")
    return out
