"""Everything that talks to the Hugging Face Hub (the only module importing ``huggingface_hub``).

The Hub backend of :class:`~chipnet_zoo.registry.MaskRegistry`: a push is ONE ``create_commit``
(files + ``index.json`` + ``README.md``) with ``parent_commit`` = the commit the index was read at, retried
on a conflict; a pull reads ``index.json`` at a resolved commit and downloads with ``hf_hub_download``
pinned to that commit (HF cache reused, works with ``HF_HUB_OFFLINE=1``), then checks the sha256. Also
the model card (``ModelCard`` + a Jinja template in ``chipnet_zoo/cards/``).
"""

from __future__ import annotations

import os
import random
import re
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import CommitOperationAdd, EvalResult, HfApi, ModelCard, ModelCardData
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

from ._secrets import register_secret, register_url, scrub
from ._version import __version__
from .errors import (
    EntryNotFoundError,
    HubServerError,
    IntegrityError,
    InvalidKeyError,
    RegistryError,
    RegistryNotFoundError,
)
from .registry import INDEX_FILE, dump_index, parse_index, verify_bytes

if TYPE_CHECKING:  # pragma: no cover
    from .registry import Mutator, RegistryEntry

_REPO_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
#: How many times a push re-reads the index and retries after a concurrent commit.
MAX_COMMIT_ATTEMPTS = 25
#: Hub dataset ids of the datasets chipnet-zoo knows by short name (for the card's ``datasets``).
HUB_DATASETS = {"cifar10": "uoft-cs/cifar10", "cifar100": "uoft-cs/cifar100"}


def validate_repo_id(repo_id: str) -> str:
    """``owner/name``, each part ``[A-Za-z0-9._-]`` (starting alphanumeric), no ``..`` or ``--``."""
    parts = repo_id.split("/") if isinstance(repo_id, str) else []
    if len(parts) != 2 or not all(_REPO_PART.fullmatch(p) and ".." not in p and "--" not in p
                                  and not p.endswith((".", "-")) for p in parts):
        raise InvalidKeyError(f"invalid Hub repo id {repo_id!r}: expected '<owner>/<name>' with letters, digits, "
                              "'.', '_' and '-' (no '..' or '--')")
    return repo_id


def parse_hub_url(url: str) -> tuple[str, str]:
    """``hf://owner/name[@revision]`` -> ``(repo_id, revision)`` (revision defaults to ``main``)."""
    if not isinstance(url, str) or not url.startswith("hf://"):
        raise InvalidKeyError(f"a Hub registry location looks like hf://<owner>/<repo>[@<revision>], got {url!r}")
    repo_id, _, revision = url[len("hf://"):].partition("@")
    validate_repo_id(repo_id)
    revision = revision or "main"
    if not _REVISION.fullmatch(revision) or ".." in revision or revision.endswith(("/", ".lock")):
        raise InvalidKeyError(f"invalid revision {revision!r} in {url!r}")
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

    def __init__(self, repo_id: str, revision: str = "main", *, endpoint: str | None = None,
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
        return cls(repo_id, revision, **kwargs)

    def __str__(self) -> str:
        return f"hf://{self.repo_id}" + ("" if self.revision == "main" else f"@{self.revision}")

    def __repr__(self) -> str:  # no token, no userinfo
        return f"HubBackend({str(self)!r}, endpoint={_scrub(self.api.endpoint)!r})"

    # --- errors ----------------------------------------------------------------------------------
    def _error(self, exc: Exception, action: str) -> Exception:
        """The project's error for ``exc``, its message scrubbed of every secret."""
        error = self._translate(exc, action)
        error.args = tuple(_scrub(a) if isinstance(a, str) else a for a in error.args)
        return error

    def _translate(self, exc: Exception, action: str) -> Exception:
        endpoint = _scrub(self.api.endpoint)
        where = f"{self} at {endpoint}"
        answer = _server_answer(exc)
        if answer is not None and answer[0] not in (401, 403, 404):
            return HubServerError(f"cannot {action} {where}: the Hub answered {answer[0]} {answer[1]}",
                                  status=answer[0], answer=answer[1])
        if isinstance(exc, RepositoryNotFoundError):
            return RegistryNotFoundError(f"Hub repo {self.repo_id!r} not found at {endpoint} (or it is "
                                         "private and the token has no access)")
        if isinstance(exc, RevisionNotFoundError):
            return RegistryNotFoundError(f"revision {self.revision!r} not found in {where}")
        if isinstance(exc, RevisionResolutionError):
            return RegistryNotFoundError(f"cannot {action} {self}: the Hub is unreachable or HF_HUB_OFFLINE=1, and "
                                         f"revision {self.revision!r} is not in the local cache")
        if isinstance(exc, (OfflineModeIsEnabled, LocalEntryNotFoundError)):
            return RegistryError(f"cannot {action} {self}: offline (HF_HUB_OFFLINE=1 or no connection) and the "
                                 "needed files are not in the local cache")
        if isinstance(exc, HfHubHTTPError):
            status = exc.response.status_code if exc.response is not None else "?"
            first = _scrub(str(exc)).splitlines()[0] if str(exc) else ""
            return RegistryError(f"cannot {action} {where}: Hub error {status}: {first}")
        return RegistryError(f"cannot {action} {where}: cannot reach the Hub ({type(exc).__name__}: "
                             f"{_scrub(str(exc))})")

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
                                     "cannot be reached (HF_HUB_OFFLINE=1 or no connection)") from None
        except HfEntryNotFoundError:
            raise EntryNotFoundError(f"{rel} is listed in the index of {self} but missing from commit "
                                     f"{self.commit[:10]}") from None
        except (httpx.HTTPError, OfflineModeIsEnabled) as exc:
            raise self._error(exc, f"download {rel} from") from None
        data = Path(local).read_bytes()
        try:
            return verify_bytes(data, sha256, size, f"{self}@{self.commit[:10]}/{rel}")
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
            raise RegistryError(f"cannot push to {self}: HF_HUB_OFFLINE=1")
        if _COMMIT.fullmatch(self.revision):
            raise RegistryError(f"cannot push to {self}: the revision is a commit, not a branch")
        self._ensure_repo()
        for attempt in range(MAX_COMMIT_ATTEMPTS):
            entries, files = mutate(self.read_index())
            parent = self.commit
            files = {**files, INDEX_FILE: dump_index(entries)}
            files["README.md"] = render_card(list(entries.values()), str(self), plots=_plots_of(entries)).encode()
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
        raise RegistryError(f"cannot push to {self}: {MAX_COMMIT_ATTEMPTS} concurrent-commit conflicts in a row")


def _plots_of(entries: dict[str, RegistryEntry]) -> set[str]:
    from .registry import plot_path

    return {plot_path(k) for k in entries}


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


# --- model card ------------------------------------------------------------------------------------
def _md(value: Any) -> str:
    """A value safe inside a Markdown table cell."""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace("\n", " ")


def _accuracy(metrics: dict[str, Any]) -> tuple[str, str, float] | None:
    """``(metric key, split, value)`` of the most relevant accuracy in ``metrics``."""
    numeric = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for split, words in (("test", ("test",)), ("validation", ("val",)), ("test", ("",))):
        for key in sorted(numeric):
            low = key.lower()
            if "acc" in low and any(w in low for w in words):
                return key, split, float(numeric[key])
    return None


def render_card(entries: list[RegistryEntry], location: str, *, plots: set[str] | None = None,
                title: str | None = None) -> str:
    """The registry's model card: YAML metadata (``model-index`` per entry) + a table, usage and plots."""
    from .registry import plot_path

    entries = sorted(entries, key=lambda e: e.key)
    plots = plots or set()
    name = title or f"chipnet-zoo masks: {location}"
    datasets = sorted({HUB_DATASETS.get(e.dataset, e.dataset) for e in entries})
    results = []
    for e in entries:
        acc = _accuracy(e.metrics)
        if acc is not None:
            results.append(EvalResult(
                task_type="image-classification", task_name="Image Classification",
                dataset_type=HUB_DATASETS.get(e.dataset, e.dataset), dataset_name=e.dataset,
                dataset_split=acc[1], metric_type="accuracy", metric_name=acc[0], metric_value=acc[2],
                metric_config=e.key))
    card_data = ModelCardData(
        library_name="chipnet-zoo", tags=["pruning", "chipnet", "structured-pruning", "image-classification"],
        datasets=datasets or None, metrics=["accuracy"], pipeline_tag="image-classification",
        model_name=name, eval_results=results or None)
    rows = []
    for e in entries:
        r = e.ratios
        acc = _accuracy(e.metrics)
        rows.append({
            "key": _md(e.key), "arch": _md(e.arch), "dataset": _md(e.dataset),
            "budget": _md(f"{e.budget_type} {format(e.budget, 'g')}"),
            **{k: (f"{float(r[k]):.4f}" if k in r else "-") for k in ("channels", "volume", "params", "flops")},
            "accuracy": f"{acc[2]:.4f}" if acc else "-", "method": _md(e.method or "-"),
            "weights": _md(e.weights["kind"]) if e.weights else "-",
            "plot": plot_path(e.key) if plot_path(e.key) in plots else None,
        })
    example = entries[0] if entries else None
    template = resources.files("chipnet_zoo").joinpath("cards/registry.md.j2").read_text(encoding="utf-8")
    card = ModelCard.from_template(
        card_data, template_str=template, title=_md(name), location=location, rows=rows,
        example_key=example.key if example else "<arch>/<dataset>/<budget_type>-<budget>",
        example_arch=example.arch if example else "<arch>",
        example_classes=(example.num_classes or 10) if example else 10, n_entries=len(entries))
    return str(card)
