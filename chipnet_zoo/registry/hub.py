"""Everything that talks to the Hugging Face Hub (with ``card.py``, the only modules importing ``huggingface_hub``).

The Hub backend of :class:`~chipnet_zoo.registry.MaskRegistry`: a push is ONE ``create_commit``
(files + ``index.json`` + ``README.md``) with ``parent_commit`` = the commit the index was read at, retried
on a conflict; a pull reads ``index.json`` at a resolved commit and downloads with ``hf_hub_download``
pinned to that commit (HF cache reused, works with ``HF_HUB_OFFLINE=1``), then checks the sha256. Every push
also writes the model card (``card.py``).
"""

from __future__ import annotations

import os
import random
import re
import time
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import (
    EntryNotFoundError as HfEntryNotFoundError,
)
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
    RevisionResolutionError,
)
from huggingface_hub.utils import httpx  # httpx2 in huggingface_hub 2.x

from .._secrets import register_secret, register_url, scrub
from .._version import __version__
from ..errors import (
    EntryNotFoundError,
    HubServerError,
    IntegrityError,
    InvalidRepoIdError,
    RegistryError,
    RegistryNotFoundError,
)
from .card import render_card
from .index import INDEX_FILE, Mutator, RegistryEntry, dump_index, parse_index
from .integrity import verify_bytes
from .keys import plot_path

_REPO_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
#: How many times a push re-reads the index and retries after a concurrent commit.
MAX_COMMIT_ATTEMPTS = 25


def validate_repo_id(repo_id: str) -> str:
    """``owner/name``, each part ``[A-Za-z0-9._-]`` (starting alphanumeric), no ``..`` or ``--``."""
    parts = repo_id.split("/") if isinstance(repo_id, str) else []
    if len(parts) != 2 or not all(_REPO_PART.fullmatch(p) and ".." not in p and "--" not in p
                                  and not p.endswith((".", "-")) for p in parts):
        raise InvalidRepoIdError(f"invalid Hub repo id {repo_id!r}: expected '<owner>/<name>' with letters, digits, "
                                 "'.', '_' and '-' (no '..' or '--')", repo_id=str(repo_id))
    return repo_id


def parse_hub_url(url: str) -> tuple[str, str]:
    """``hf://owner/name[@revision]`` -> ``(repo_id, revision)`` (revision defaults to ``main``)."""
    if not isinstance(url, str) or not url.startswith("hf://"):
        raise InvalidRepoIdError(f"a Hub registry location looks like hf://<owner>/<repo>[@<revision>], got {url!r}",
                                 repo_id=str(url))
    repo_id, _, revision = url[len("hf://"):].partition("@")
    validate_repo_id(repo_id)
    revision = revision or "main"
    if not _REVISION.fullmatch(revision) or ".." in revision or revision.endswith(("/", ".lock")):
        raise InvalidRepoIdError(f"invalid revision {revision!r} in {url!r}", repo_id=repo_id, revision=revision)
    return repo_id, revision


def _scrub(text: object) -> str:
    """Remove every known token and URL userinfo from a message (chipnet_zoo/_secrets.py)."""
    return scrub(text)


def _server_answer(exc: BaseException) -> tuple[int, str] | None:
    """``(status, first line of the answer)`` of the first HTTP error response in ``exc``'s chain."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        response = getattr(cur, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int) and status >= 400:
            try:
                answer = response.headers.get("X-Error-Message") or response.text
            except Exception:  # noqa: BLE001 - a streamed or closed body
                answer = ""
            line = next((ln.strip() for ln in str(answer).splitlines() if ln.strip()), "")
            reason = getattr(response, "reason_phrase", "") or ""
            return status, f"{reason}: {line[:300]}" if line else str(reason)
        cur = cur.__cause__ or cur.__context__
    return None


class HubBackend:
    """A registry in a Hub model repo (see the module docstring)."""

    writes_card = True

    def __init__(self, repo_id: str, *, revision: str = "main", endpoint: str | None = None,
                 token: str | None = None, private: bool = False):
        self.repo_id, self.revision, self.private = validate_repo_id(repo_id), revision, private
        register_secret(token)
        register_url(endpoint)
        self.api = HfApi(endpoint=endpoint, token=token, library_name="chipnet-zoo", library_version=__version__)
        register_url(self.api.endpoint)
        self.commit: str | None = None  # the commit the index was last read at
        self._repo_ready = False

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> HubBackend:
        repo_id, revision = parse_hub_url(url)
        return cls(repo_id, revision=revision, **kwargs)

    @property
    def name(self) -> str:
        """The repo id (the model card's title)."""
        return self.repo_id

    def __str__(self) -> str:
        return f"hf://{self.repo_id}" + ("" if self.revision == "main" else f"@{self.revision}")

    def __repr__(self) -> str:  # no token, no userinfo
        return f"HubBackend({str(self)!r}, endpoint={_scrub(self.api.endpoint)!r})"

    # --- errors ----------------------------------------------------------------------------------
    def _error(self, exc: Exception, action: str) -> Exception:
        """The project's error for ``exc``, its message and fields scrubbed of every secret."""
        error = self._translate(exc, action)
        error.args = tuple(_scrub(a) if isinstance(a, str) else a for a in error.args)
        for name, value in vars(error).items():
            if isinstance(value, str):
                setattr(error, name, _scrub(value))
        return error

    def _translate(self, exc: Exception, action: str) -> Exception:
        endpoint = _scrub(self.api.endpoint)
        where = f"{self} at {endpoint}"
        answer = _server_answer(exc)
        if answer is not None and answer[0] not in (401, 403, 404):
            return HubServerError(f"cannot {action} {where}: the Hub answered {answer[0]} {answer[1]}",
                                  status=answer[0], answer=answer[1], repo_id=self.repo_id, registry=str(self))
        found = {"registry": str(self), "repo_id": self.repo_id, "revision": self.revision}
        if isinstance(exc, RepositoryNotFoundError):
            return RegistryNotFoundError(f"Hub repo {self.repo_id!r} not found at {endpoint} (or it is "
                                         "private and the token has no access)", **found)
        if isinstance(exc, RevisionNotFoundError):
            return RegistryNotFoundError(f"revision {self.revision!r} not found in {where}", **found)
        if isinstance(exc, RevisionResolutionError):
            return RegistryNotFoundError(f"cannot {action} {self}: the Hub is unreachable or HF_HUB_OFFLINE=1, and "
                                         f"revision {self.revision!r} is not in the local cache", **found)
        if isinstance(exc, (OfflineModeIsEnabled, LocalEntryNotFoundError)):
            return RegistryError(f"cannot {action} {self}: offline (HF_HUB_OFFLINE=1 or no connection) and the "
                                 "needed files are not in the local cache", registry=str(self))
        if isinstance(exc, HfHubHTTPError):
            status = exc.response.status_code if exc.response is not None else "?"
            first = _scrub(str(exc)).splitlines()[0] if str(exc) else ""
            return RegistryError(f"cannot {action} {where}: Hub error {status}: {first}", registry=str(self))
        return RegistryError(f"cannot {action} {where}: cannot reach the Hub ({type(exc).__name__}: "
                             f"{_scrub(str(exc))})", registry=str(self))

    # --- reading ---------------------------------------------------------------------------------
    def read_index(self) -> dict[str, RegistryEntry]:
        """The index at the revision's current commit (or the cached one when offline)."""
        try:
            sha = self.api.resolve_revision(self.repo_id, revision=self.revision,
                                            local_files_only=bool(hf_constants.HF_HUB_OFFLINE)).resolved
            try:
                path = self.api.hf_hub_download(self.repo_id, INDEX_FILE, revision=sha)
            except HfEntryNotFoundError as exc:
                if isinstance(exc, LocalEntryNotFoundError):
                    raise
                self.commit = sha
                return {}  # a repo with no index yet: an empty registry
        except (httpx.HTTPError, RevisionResolutionError, OfflineModeIsEnabled, LocalEntryNotFoundError) as exc:
            raise self._error(exc, "read the index of") from None
        self.commit = sha
        return parse_index(Path(path).read_bytes(), f"{self}@{sha[:10]}/{INDEX_FILE}")

    def read_file(self, rel: str, sha256: str, size: int | None) -> bytes:
        """Download ``rel`` at the index's commit and verify it; a mismatching file is evicted from the cache."""
        if self.commit is None:
            self.read_index()
        try:
            local = self.api.hf_hub_download(self.repo_id, rel, revision=self.commit)
        except LocalEntryNotFoundError as exc:
            if _server_answer(exc) is not None:
                raise self._error(exc, f"download {rel} from") from None
            raise EntryNotFoundError(f"{rel} of {self}@{self.commit[:10]} is not in the local cache and the Hub "
                                     "cannot be reached (HF_HUB_OFFLINE=1 or no connection)", path=rel,
                                     registry=str(self)) from None
        except HfEntryNotFoundError:
            raise EntryNotFoundError(f"{rel} is listed in the index of {self} but missing from commit "
                                     f"{self.commit[:10]}", path=rel, registry=str(self)) from None
        except (httpx.HTTPError, OfflineModeIsEnabled) as exc:
            raise self._error(exc, f"download {rel} from") from None
        data = Path(local).read_bytes()
        try:
            return verify_bytes(data, sha256=sha256, size=size, what=f"{self}@{self.commit[:10]}/{rel}")
        except IntegrityError:
            _evict(Path(local))
            raise

    def existing_plots(self, paths: list[str]) -> set[str]:
        return set(paths)  # every Hub push writes its entry's plot

    # --- writing ---------------------------------------------------------------------------------
    def _ensure_repo(self) -> None:
        if self._repo_ready:
            return
        try:
            self.api.create_repo(self.repo_id, private=self.private, exist_ok=True)
        except (httpx.HTTPError, OfflineModeIsEnabled) as exc:
            raise self._error(exc, "create") from None
        self._repo_ready = True

    def update(self, mutate: Mutator, message: str) -> None:
        """Read the index, apply ``mutate``, and commit files + index + card in ONE commit whose parent is
        the commit the index was read at; on a conflict (someone else committed) start over."""
        if hf_constants.HF_HUB_OFFLINE:
            raise RegistryError(f"cannot push to {self}: HF_HUB_OFFLINE=1", registry=str(self))
        if _COMMIT.fullmatch(self.revision):
            raise RegistryError(f"cannot push to {self}: the revision is a commit, not a branch", registry=str(self))
        self._ensure_repo()
        for attempt in range(MAX_COMMIT_ATTEMPTS):
            entries, files = mutate(self.read_index())
            parent = self.commit
            files = {**files, INDEX_FILE: dump_index(entries)}
            files["README.md"] = render_card(list(entries.values()), location=str(self), name=self.repo_id,
                                             plots={plot_path(k) for k in entries}).encode()
            ops = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=d) for p, d in sorted(files.items())]
            try:
                info = self.api.create_commit(self.repo_id, ops, commit_message=message, revision=self.revision,
                                              parent_commit=parent)
            except (httpx.HTTPError, OfflineModeIsEnabled) as exc:
                response = getattr(exc, "response", None) if isinstance(exc, HfHubHTTPError) else None
                status = response.status_code if response is not None else None
                if status in (409, 412) and attempt + 1 < MAX_COMMIT_ATTEMPTS:
                    time.sleep(min(0.25, 0.01 * 2 ** attempt) * (0.5 + random.random()))
                    continue
                raise self._error(exc, "push to") from None
            self.commit = info.oid
            return
        raise RegistryError(f"cannot push to {self}: {MAX_COMMIT_ATTEMPTS} concurrent-commit conflicts in a row",
                            registry=str(self))


def _evict(local: Path) -> None:
    """Remove a cached file (snapshot link and blob) that failed verification, inside the HF cache only."""
    cache = Path(hf_constants.HF_HUB_CACHE).resolve()
    blob = Path(os.path.realpath(local))
    for path in (local, blob):
        try:
            if Path(os.path.abspath(path)).is_relative_to(cache) or path.resolve().is_relative_to(cache):
                path.unlink(missing_ok=True)
        except OSError:
            pass
