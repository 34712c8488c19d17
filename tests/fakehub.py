"""A loopback fake of the Hugging Face Hub HTTP API, for tests (stdlib only).

It serves the routes ``huggingface_hub`` 2.x calls for ``create_repo``, ``create_commit`` (regular files
inline, or LFS basic transfers when ``lfs_patterns`` marks a path as LFS), ``hf_hub_download``,
``repo_info``/``resolve_revision``, ``list_repo_tree``/``list_repo_files``, ``get_paths_info`` and
``list_repo_refs``, for model and dataset repos (enough for ``datasets.load_dataset("acme/x")``).
State is an in-memory, append-only commit store: every commit keeps its full file map, so pinned old
revisions stay downloadable. A commit whose ``parentCommit`` is not the branch head gets a 412, as on
the real Hub.

Usage::

    hub = FakeHub().start()            # binds 127.0.0.1 on a free port
    os.environ["HF_ENDPOINT"] = hub.endpoint   # before huggingface_hub is imported
    ...
    hub.stop()

Test helpers: :meth:`FakeHub.unique_repo_id`, :meth:`FakeHub.put_file`, :meth:`FakeHub.tamper`,
:meth:`FakeHub.files`, :meth:`FakeHub.head`, :meth:`FakeHub.lfs`, ``requests`` (a log of
``(method, path)``), ``stats`` and the one-shot ``before_commit`` hook.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import hashlib
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

_REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX_PREFIX = re.compile(r"^[0-9a-f]{7,40}$")
_DEFAULT_GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.parquet filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob (what the Hub reports as a regular file's oid/etag)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class _Blob:
    data: bytes
    lfs: bool = False

    @property
    def etag(self) -> str:
        return hashlib.sha256(self.data).hexdigest() if self.lfs else git_blob_sha1(self.data)

    def tree_entry(self, path: str) -> dict:
        entry: dict = {"type": "file", "path": path, "size": len(self.data), "oid": git_blob_sha1(self.data)}
        if self.lfs:
            entry["lfs"] = {"oid": hashlib.sha256(self.data).hexdigest(), "size": len(self.data), "pointerSize": 134}
        return entry


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool = False
    commits: dict[str, dict[str, _Blob]] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # branch -> commit sha
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        revision = revision or "main"
        if revision in self.refs:
            return self.refs[revision]
        if revision in self.tags:
            return self.tags[revision]
        if _HEX_PREFIX.match(revision):
            matches = [sha for sha in self.commits if sha.startswith(revision)]
            if len(matches) == 1:
                return matches[0]
        return None


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, error_code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.error_code, self.headers = status, message, error_code, headers or {}


class FakeHub:
    """An in-memory fake Hub served over HTTP on 127.0.0.1 (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._lfs_store: dict[str, bytes] = {}
        self._counter = itertools.count()
        self.lfs_patterns: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.stats: dict[str, int] = {"commits": 0, "commit_conflicts": 0, "lfs_uploads": 0}
        #: One-shot hook run (outside the store lock) when the next commit request arrives.
        self.before_commit: Callable[[], None] | None = None
        #: Injected failures: ``(method, path substring, status, echo request headers, remaining count)``.
        self.failures: list[list] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self, port: int = 0) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "FakeHub not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # --- test helpers ------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every repo, LFS object and logged request."""
        with self._lock:
            self._repos.clear()
            self._lfs_store.clear()
            self.requests.clear()
            self.lfs_patterns = []
            self.before_commit = None
            for key in self.stats:
                self.stats[key] = 0

    @contextlib.contextmanager
    def failing(self, status: int, path_contains: str = "", method: str = "", echo_headers: bool = False,
                times: int = 1_000_000) -> Iterator[None]:
        """Within the block, requests whose path contains ``path_contains`` (and ``method``, if given) are
        answered with ``status`` and a body naming it; ``echo_headers`` puts the request's headers in the
        body, as some proxies and misconfigured servers do."""
        rule = [method.upper(), path_contains, status, echo_headers, times]
        self.failures.append(rule)
        try:
            yield
        finally:
            self.failures.remove(rule)

    @staticmethod
    def unique_repo_id(owner: str = "acme", prefix: str = "repo") -> str:
        return f"{owner}/{prefix}-{uuid.uuid4().hex[:10]}"

    @contextlib.contextmanager
    def lfs(self, *patterns: str) -> Iterator[None]:
        """Within the block, paths matching ``patterns`` (fnmatch on the basename or the path) are LFS."""
        old = self.lfs_patterns
        self.lfs_patterns = list(patterns or ("*.safetensors",))
        try:
            yield
        finally:
            self.lfs_patterns = old

    def create_repo(self, repo_id: str, repo_type: str = "model", private: bool = False) -> _Repo:
        with self._lock:
            key = (repo_type, repo_id)
            if key not in self._repos:
                repo = _Repo(repo_type, repo_id, private)
                self._repos[key] = repo
                self._commit(repo, "main", {".gitattributes": _Blob(_DEFAULT_GITATTRIBUTES)}, "initial commit")
            return self._repos[key]

    def put_file(self, repo_id: str, path: str, data: bytes, repo_type: str = "model", revision: str = "main") -> str:
        """Commit one file directly (creating the repo if needed); returns the new commit sha."""
        with self._lock:
            repo = self.create_repo(repo_id, repo_type)
            files = dict(repo.commits[repo.refs[revision]])
            files[path] = _Blob(data, self._is_lfs(path))
            return self._commit(repo, revision, files, f"put {path}")

    def tamper(self, repo_id: str, path: str, data: bytes, repo_type: str = "model", revision: str = "main") -> None:
        """Replace a file's bytes *in place* at ``revision`` (the commit sha stays the same)."""
        with self._lock:
            repo = self._get(repo_type, repo_id)
            sha = repo.resolve(revision)
            old = repo.commits[sha][path]
            repo.commits[sha][path] = _Blob(data, old.lfs)

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        with self._lock:
            repo = self._get(repo_type, repo_id)
            return {p: b.data for p, b in repo.commits[repo.resolve(revision)].items()}

    def head(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> str:
        with self._lock:
            return self._get(repo_type, repo_id).resolve(revision)

    def blob(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "model") -> _Blob:
        with self._lock:
            repo = self._get(repo_type, repo_id)
            return repo.commits[repo.resolve(revision)][path]

    # --- internals ---------------------------------------------------------------------------------
    def _is_lfs(self, path: str) -> bool:
        name = path.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in self.lfs_patterns)

    def _get(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise _HTTPError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def _commit(self, repo: _Repo, branch: str, files: dict[str, _Blob], message: str) -> str:
        parent = repo.refs.get(branch, "")
        digest = hashlib.sha1(f"{parent}:{next(self._counter)}:{time.time_ns()}".encode())
        for path in sorted(files):
            digest.update(f"{path}:{files[path].etag}".encode())
        sha = digest.hexdigest()
        repo.commits[sha] = files
        repo.messages[sha] = message
        repo.refs[branch] = sha
        self.stats["commits"] += 1
        return sha


def _tree_entries(files: dict[str, _Blob], prefix: str, recursive: bool) -> list[dict]:
    """Tree listing under ``prefix`` ("" = root), files and directories, like the Hub's tree API."""
    base = prefix.strip("/")
    start = base + "/" if base else ""
    entries: dict[str, dict] = {}
    for path in sorted(files):
        if not path.startswith(start):
            continue
        rest = path[len(start):]
        parts = rest.split("/")
        for depth in range(1, len(parts)):  # intermediate directories
            if not recursive and depth > 1:
                break
            d = start + "/".join(parts[:depth])
            entries.setdefault(d, {"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest()})
        if recursive or len(parts) == 1:
            entries[path] = files[path].tree_entry(path)
    return list(entries.values())


def _dirs(files: dict[str, _Blob]) -> set[str]:
    return {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    # --- plumbing ----------------------------------------------------------------------------------
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, ctype: str = "application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        self.fake.requests.append((self.command, url.path))
        query = parse_qs(url.query)
        for rule in list(self.fake.failures):
            method, part, status, echo, times = rule
            if times > 0 and part in url.path and method in ("", self.command):
                rule[4] -= 1
                self._body()
                echoed = "; ".join(f"{k}: {v}" for k, v in self.headers.items()) if echo else ""
                body = f"fake hub: injected {status} for {self.command} {self.path}. {echoed}".strip()
                return self._send(status, body.encode(), {"X-Error-Message": body}, ctype="text/plain")
        try:
            self._route(url.path, query)
        except _HTTPError as err:
            headers = dict(err.headers)
            if err.error_code:
                headers["X-Error-Code"] = err.error_code
            headers["X-Error-Message"] = err.message
            self._json(err.status, {"error": err.message}, headers)

    do_GET = do_HEAD = do_POST = do_PUT = _dispatch

    # --- routing -----------------------------------------------------------------------------------
    def _route(self, path: str, query: dict) -> None:
        m = self.command
        parts = path.strip("/").split("/")
        if m == "POST" and path == "/api/repos/create":
            return self._create_repo()
        if m == "POST" and path == "/api/validate-yaml":
            return self._validate_yaml()
        if m == "PUT" and parts[0] == "_fake_lfs":
            return self._lfs_put(parts[1])
        if parts[0] == "api" and len(parts) >= 4 and parts[1] in _REPO_TYPES:
            repo_type, repo_id = _REPO_TYPES[parts[1]], f"{parts[2]}/{parts[3]}"
            rest = parts[4:]
            if m == "GET" and not rest:
                return self._repo_info(repo_type, repo_id, "main")
            if m == "GET" and rest[0] == "revision" and len(rest) >= 2:
                return self._repo_info(repo_type, repo_id, unquote("/".join(rest[1:])))
            if m == "GET" and rest[0] == "refs":
                return self._refs(repo_type, repo_id)
            if m == "GET" and rest[0] == "tree" and len(rest) >= 2:
                recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
                return self._tree(repo_type, repo_id, unquote(rest[1]), unquote("/".join(rest[2:])), recursive)
            if m == "POST" and rest[0] == "paths-info" and len(rest) >= 2:
                return self._paths_info(repo_type, repo_id, unquote(rest[1]))
            if m == "POST" and rest[0] == "preupload" and len(rest) >= 2:
                return self._preupload(repo_type, repo_id, unquote(rest[1]))
            if m == "POST" and rest[0] == "commit" and len(rest) >= 2:
                return self._commit(repo_type, repo_id, unquote(rest[1]))
            raise _HTTPError(404, f"fake hub: no route {m} {path}")
        repo_type = "model"
        if parts[0] in ("datasets", "spaces"):
            repo_type, parts = _REPO_TYPES[parts[0]], parts[1:]
        if m == "POST" and len(parts) >= 2 and parts[1].endswith(".git") and parts[2:] == ["info", "lfs", "objects", "batch"]:
            return self._lfs_batch(repo_type, f"{parts[0]}/{parts[1][:-4]}")
        if m in ("GET", "HEAD") and len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(repo_type, f"{parts[0]}/{parts[1]}", unquote(parts[3]), unquote("/".join(parts[4:])))
        raise _HTTPError(404, f"fake hub: no route {m} {path}")

    # --- handlers ----------------------------------------------------------------------------------
    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.fake.endpoint}/{_URL_PREFIX[repo_type]}{repo_id}"

    def _create_repo(self) -> None:
        body = json.loads(self._body() or b"{}")
        name, org = body.get("name", ""), body.get("organization")
        repo_id = f"{org}/{name}" if org else str(name)
        repo_type = body.get("type") or "model"
        if repo_id.count("/") != 1 or not all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", s) for s in repo_id.split("/")):
            raise _HTTPError(400, f"invalid repo id {repo_id!r} (a namespace is required in this fake)")
        private = bool(body.get("private")) or body.get("visibility") == "private"
        with self.fake._lock:
            exists = (repo_type, repo_id) in self.fake._repos
            if not exists:
                self.fake.create_repo(repo_id, repo_type, private)
        url = self._repo_url(repo_type, repo_id)
        if exists:
            return self._json(409, {"error": "You already created this repo", "url": url})
        self._json(200, {"url": url, "name": repo_id})

    def _validate_yaml(self) -> None:
        import yaml

        body = json.loads(self._body() or b"{}")
        content = body.get("content", "")
        errors = []
        if content.startswith("---"):
            end = content.find("\n---", 3)
            try:
                meta = yaml.safe_load(content[3:end]) if end > 0 else None
                if end < 0 or (meta is not None and not isinstance(meta, dict)):
                    errors.append({"message": "metadata must be a YAML mapping between '---' lines"})
            except yaml.YAMLError as exc:
                errors.append({"message": f"invalid YAML: {exc}"})
        self._json(400 if errors else 200, {"errors": errors, "warnings": []})

    def _files_at(self, repo_type: str, repo_id: str, revision: str) -> tuple[_Repo, str, dict[str, _Blob]]:
        repo = self.fake._get(repo_type, repo_id)
        sha = repo.resolve(revision)
        if sha is None:
            raise _HTTPError(404, f"Revision {revision} not found", "RevisionNotFound")
        return repo, sha, repo.commits[sha]

    def _repo_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        with self.fake._lock:
            repo, sha, files = self._files_at(repo_type, repo_id, revision)
            files = dict(files)
        info = {
            "id": repo_id, "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24], "author": repo_id.split("/")[0],
            "sha": sha, "private": repo.private, "disabled": False, "gated": False, "tags": [],
            "lastModified": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "siblings": [{"rfilename": p} for p in sorted(files)],
        }
        self._json(200, info)

    def _refs(self, repo_type: str, repo_id: str) -> None:
        with self.fake._lock:
            repo = self.fake._get(repo_type, repo_id)
            branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": s} for b, s in repo.refs.items()]
            tags = [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": s} for t, s in repo.tags.items()]
        self._json(200, {"branches": branches, "tags": tags, "converts": []})

    def _tree(self, repo_type: str, repo_id: str, revision: str, path: str, recursive: bool) -> None:
        with self.fake._lock:
            _, _, files = self._files_at(repo_type, repo_id, revision)
            files = dict(files)
        path = path.strip("/")
        if path and path not in _dirs(files):
            if path in files:
                return self._json(200, [files[path].tree_entry(path)])
            raise _HTTPError(404, f"{path} does not exist", "EntryNotFound")
        self._json(200, _tree_entries(files, path, recursive))

    def _paths_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        raw = self._body().decode()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            paths = json.loads(raw or "{}").get("paths", [])
        else:
            paths = parse_qs(raw).get("paths", [])
        with self.fake._lock:
            _, _, files = self._files_at(repo_type, repo_id, revision)
            files = dict(files)
        dirs, out = _dirs(files), []
        for p in paths:
            p = p.strip("/")
            if p in files:
                out.append(files[p].tree_entry(p))
            elif p in dirs:
                out.append({"type": "directory", "path": p, "oid": hashlib.sha1(p.encode()).hexdigest()})
        self._json(200, out)

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        with self.fake._lock:
            repo, sha, files = self._files_at(repo_type, repo_id, revision)
            blob = files.get(path)
        if blob is None:
            raise _HTTPError(404, f"Entry {path} not found", "EntryNotFound", {"X-Repo-Commit": sha})
        data = blob.data
        headers = {"X-Repo-Commit": sha, "ETag": f'"{blob.etag}"', "Accept-Ranges": "bytes"}
        if blob.lfs:
            headers.update({"X-Linked-Etag": f'"{blob.etag}"', "X-Linked-Size": str(len(data))})
        rng = self.headers.get("Range")
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
        if match and self.command == "GET":
            start = int(match.group(1))
            end = min(int(match.group(2)) if match.group(2) else len(data) - 1, len(data) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return self._send(206, data[start:end + 1], headers, "application/octet-stream")
        self._send(200, data, headers, "application/octet-stream")

    def _preupload(self, repo_type: str, repo_id: str, revision: str) -> None:
        body = json.loads(self._body() or b"{}")
        with self.fake._lock:
            _, _, files = self._files_at(repo_type, repo_id, revision)
            files = dict(files)
        out = []
        for f in body.get("files", []):
            path = f["path"]
            lfs = self.fake._is_lfs(path)
            existing = files.get(path)
            oid = None
            if existing is not None:
                oid = hashlib.sha256(existing.data).hexdigest() if lfs else git_blob_sha1(existing.data)
            out.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        self._json(200, {"files": out})

    def _lfs_batch(self, repo_type: str, repo_id: str) -> None:
        body = json.loads(self._body() or b"{}")
        with self.fake._lock:
            self.fake._get(repo_type, repo_id)
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj["oid"], obj["size"]
            entry: dict = {"oid": oid, "size": size, "authenticated": True}
            if oid not in self.fake._lfs_store:
                entry["actions"] = {"upload": {"href": f"{self.fake.endpoint}/_fake_lfs/{oid}", "header": {}}}
            objects.append(entry)
        self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(),
                   ctype="application/vnd.git-lfs+json")

    def _lfs_put(self, oid: str) -> None:
        data = self._body()
        if hashlib.sha256(data).hexdigest() != oid:
            raise _HTTPError(400, "LFS upload: sha256 does not match the oid")
        with self.fake._lock:
            self.fake._lfs_store[oid] = data
            self.fake.stats["lfs_uploads"] += 1
        self._send(200, b"", ctype="text/plain")

    def _commit(self, repo_type: str, repo_id: str, revision: str) -> None:
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        hook, self.fake.before_commit = self.fake.before_commit, None
        if hook is not None:
            hook()
        header = next((x["value"] for x in lines if x.get("key") == "header"), {})
        with self.fake._lock:
            repo, sha, files = self._files_at(repo_type, repo_id, revision)
            parent = header.get("parentCommit")
            if parent and not sha.startswith(parent):
                self.fake.stats["commit_conflicts"] += 1
                raise _HTTPError(412, "A commit has happened since. Please refresh and try again.")
            new = dict(files)
            for item in lines:
                key, value = item.get("key"), item.get("value", {})
                if key == "file":
                    new[value["path"]] = _Blob(base64.b64decode(value["content"]), False)
                elif key == "lfsFile":
                    data = self.fake._lfs_store.get(value["oid"])
                    if data is None:
                        raise _HTTPError(422, f"LFS object {value['oid']} was never uploaded")
                    new[value["path"]] = _Blob(data, True)
                elif key == "deletedFile":
                    if new.pop(value["path"], None) is None:
                        raise _HTTPError(404, "A file with this name doesn't exist", "EntryNotFound")
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    for p in [p for p in new if p.startswith(prefix)]:
                        del new[p]
            commit = self.fake._commit(repo, revision, new, header.get("summary", ""))
        url = f"{self._repo_url(repo_type, repo_id)}/commit/{commit}"
        self._json(200, {"success": True, "commitOid": commit, "commitUrl": url, "pullRequestUrl": None})

