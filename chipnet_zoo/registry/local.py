"""The local-folder backend of :class:`~chipnet_zoo.registry.MaskRegistry` (only safetensors and JSON are
read; every file is checked against the index)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from .._atomic import atomic_write
from ..errors import (
    EntryNotFoundError,
    IndexFormatError,
    IntegrityError,
    ReadOnlyRegistryError,
    RegistryError,
    RegistryLockError,
    RegistryNotFoundError,
    RegistryWriteError,
    UnsafePathError,
)
from ..validation import MAX_INDEX_BYTES
from .index import INDEX_FILE, Mutator, RegistryEntry, dump_index, parse_index
from .integrity import sha256_hex, verify_bytes

#: The lock file of a local registry (created by the first push, never by a read).
LOCK_FILE = f".{INDEX_FILE}.lock"


class LocalBackend:
    """A registry in a local folder.

    Files are stored content-addressed next to their logical path (``masks/a/d/flops-0.25.<sha256>.safetensors``
    for ``masks/a/d/flops-0.25.safetensors``), so a push never modifies a file a reader may be reading. The
    atomic replacement of ``index.json`` is the single commit point; files no longer referenced are collected
    afterwards, under the same lock. A kill at any instant leaves the old or the new index, each complete.
    Folders written before content addressing (and the built-in zoo) keep files at their logical paths;
    those are still read.
    """

    writes_card = False
    #: Files of replaced entries are removed, so a reader holding an older index may have to re-read it.
    collects_garbage = True

    def __init__(self, root: Path, *, missing_ok: bool = False, read_only: bool = False, lock_timeout: float = 120.0):
        self.root, self.missing_ok, self.read_only, self.lock_timeout = Path(root), missing_ok, read_only, lock_timeout

    def __str__(self) -> str:
        return str(self.root)

    @property
    def name(self) -> str:
        """The folder's name (the model card's title)."""
        return self.root.resolve().name

    def _file(self, rel: str) -> Path:
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise UnsafePathError(f"path {rel!r} escapes the registry folder {self.root}", path=rel,
                                  registry=str(self))
        return path

    def stored_path(self, rel: str, sha256: str) -> Path:
        """Where the file ``rel`` with content ``sha256`` is stored (content-addressed)."""
        p = PurePosixPath(rel)
        return self._file(str(p.with_name(f"{p.stem}.{sha256}{p.suffix}")))

    def read_index(self) -> dict[str, RegistryEntry]:
        if not self.root.is_dir():
            if self.root.exists():
                raise RegistryNotFoundError(f"the registry location {self.root} is not a folder", registry=str(self))
            if self.missing_ok:
                return {}
            raise RegistryNotFoundError(f"no mask registry at {self.root} (the folder does not exist)",
                                        registry=str(self))
        index = self.root / INDEX_FILE
        if not index.exists():
            return {}
        if not index.is_file():
            raise IndexFormatError(f"corrupt registry index {index}: it is not a regular file", where=str(index))
        try:
            if index.stat().st_size > MAX_INDEX_BYTES:  # refused before it is read
                raise IndexFormatError(f"corrupt registry index {index}: {index.stat().st_size} bytes, more than the "
                                       f"{MAX_INDEX_BYTES} accepted", where=str(index))
            data = index.read_bytes()
        except OSError as exc:
            if isinstance(exc, RegistryError):
                raise
            raise RegistryError(f"cannot read the registry index {index}: {exc.strerror or exc}",
                                registry=str(self)) from None
        return parse_index(data, str(index))

    def read_file(self, rel: str, sha256: str, size: int | None) -> bytes:
        for path in (self.stored_path(rel, sha256), self._file(rel)):
            try:
                return verify_bytes(path.read_bytes(), sha256=sha256, size=size, what=str(path))
            except (FileNotFoundError, NotADirectoryError):
                continue
            except IsADirectoryError:
                raise IntegrityError(f"{path} is a folder, not the file the index of {self.root} lists",
                                     path=str(path), registry=str(self)) from None
        raise EntryNotFoundError(f"{rel} is listed in the index of {self.root} but the file is missing", path=rel,
                                 registry=str(self))

    def existing_plots(self, paths: list[str]) -> set[str]:
        return {p for p in paths if (self.root / p).is_file()}

    def update(self, mutate: Mutator, message: str) -> None:
        """Write the new files (content-addressed), then ``index.json`` (the commit), then collect garbage.
        A file-system error (disk full, ...) is a :class:`RegistryWriteError`; what was written is removed."""
        from filelock import FileLock, Timeout

        if self.read_only:
            raise ReadOnlyRegistryError(f"the registry {self.root} is read-only (the zoo shipped with the "
                                        "package); push to your own registry", registry=str(self))
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.root / LOCK_FILE), timeout=self.lock_timeout)
            with lock:
                entries, files = mutate(self.read_index())
                written: list[Path] = []
                try:
                    for rel, data in files.items():
                        target = self.stored_path(rel, sha256_hex(data))
                        if not (target.is_file() and sha256_hex(target.read_bytes()) == sha256_hex(data)):
                            atomic_write(target, data)
                            written.append(target)
                    atomic_write(self.root / INDEX_FILE, dump_index(entries))  # the commit point
                except BaseException:
                    for path in written:
                        path.unlink(missing_ok=True)
                    raise
                try:
                    self.collect_garbage(entries)
                except OSError:
                    pass  # published already; what is left is collected by the next push
        except Timeout:
            raise RegistryLockError(f"timed out after {self.lock_timeout:g} s waiting for the lock on {self.root}",
                                    registry=str(self), timeout=self.lock_timeout) from None
        except OSError as exc:
            if isinstance(exc, RegistryError):
                raise
            where = exc.filename or self.root
            raise RegistryWriteError(f"cannot write to the registry {self.root}: {exc.strerror or exc} ({where}); "
                                     "nothing was published", path=str(where), registry=str(self)) from None

    def collect_garbage(self, entries: dict[str, RegistryEntry]) -> list[Path]:
        """Remove stored files no entry references and temp files of killed writers (call under the lock)."""
        keep: set[Path] = set()
        for e in entries.values():
            for rel, sha in ((e.path, e.sha256), *(((e.weights["path"], e.weights["sha256"]),) if e.weights else ())):
                stored = self.stored_path(rel, sha)
                keep.add(stored if stored.is_file() else self._file(rel))
        removed: list[Path] = []
        for top in ("masks", "weights"):
            base = self.root / top
            if not base.is_dir():
                continue
            for path in sorted(base.rglob("*"), reverse=True):
                try:
                    if path.is_dir():
                        if not any(path.iterdir()):
                            path.rmdir()
                    elif (path.suffix == ".tmp" or path.suffix == ".safetensors") and path.resolve() not in keep:
                        path.unlink()
                        removed.append(path)
                except OSError:
                    pass  # best effort: garbage never affects what readers see
        for path in self.root.glob(f".{INDEX_FILE}.*.tmp"):
            path.unlink(missing_ok=True)
            removed.append(path)
        return removed
