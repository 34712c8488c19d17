"""Every-epoch checkpoints: safetensors for the tensors, JSON for everything else (never pickle).

A checkpoint folder holds, after the epoch-``N`` save::

    state.json                         # the commit point: epoch, the JSON tree, file names
    state-000N.safetensors             # every tensor of the state tree (weights, optimizer, best epoch, ...)
    rng-000N-rank<R>.safetensors       # each process's RNG states (torch, CUDA, numpy, python, data order)

Every file is written to a temporary name and renamed; ``state.json`` is renamed last, so a process
killed at any moment leaves either the previous checkpoint or the new one, never a mix. Arbitrary
nested state (``optimizer.state_dict()``, a pruner's state, scheduler state) is flattened: tensors go
to the safetensors file under their path, the rest stays in the JSON tree with a reference.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._atomic import atomic_write, atomic_write_json
from .errors import CheckpointError, RunError

STATE_FILE = "state.json"
CHECKPOINT_FORMAT = 1
_TENSOR, _TUPLE, _DICT = "__tensor__", "__tuple__", "__dict__"
_EPOCH_FILE = re.compile(r"^(?:state|rng)-(\d+)(?:-rank\d+)?\.safetensors$")


# --- flattening ----------------------------------------------------------------------------------
def flatten_state(obj: Any, prefix: str = "s") -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested state into a JSON-ready tree and a flat ``{path: tensor}`` dict.

    Dicts with non-string keys (e.g. ``optimizer.state_dict()["state"]``) and tuples are encoded so that
    :func:`unflatten_state` restores them exactly. Tensors are copied to contiguous CPU memory.
    """
    tensors: dict[str, torch.Tensor] = {}

    def walk(x: Any, path: str) -> Any:
        if isinstance(x, torch.Tensor):
            tensors[path] = x.detach().to("cpu").contiguous().clone()
            return {_TENSOR: path}
        if isinstance(x, np.ndarray):
            return walk(torch.from_numpy(np.ascontiguousarray(x)), path)
        if isinstance(x, Mapping):
            if all(isinstance(k, str) for k in x) and not ({_TENSOR, _TUPLE, _DICT} & set(x)):
                return {k: walk(v, f"{path}/{k}") for k, v in x.items()}
            items = []
            for i, (k, v) in enumerate(x.items()):
                if not isinstance(k, str | int | float | bool) and k is not None:
                    raise TypeError(f"cannot checkpoint dict key {k!r} ({type(k).__name__}) at {path}")
                items.append([k, walk(v, f"{path}/{i}")])
            return {_DICT: items}
        if isinstance(x, tuple):
            return {_TUPLE: [walk(v, f"{path}/{i}") for i, v in enumerate(x)]}
        if isinstance(x, list):
            return [walk(v, f"{path}/{i}") for i, v in enumerate(x)]
        if isinstance(x, np.generic):
            return x.item()
        if x is None or isinstance(x, str | int | float | bool):
            return x
        raise TypeError(f"cannot checkpoint a {type(x).__name__} at {path}")

    return walk(obj, prefix), tensors


def unflatten_state(tree: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(tree, dict):
        if _TENSOR in tree:
            try:
                return tensors[tree[_TENSOR]]
            except KeyError:
                raise RunError(f"checkpoint is missing tensor {tree[_TENSOR]!r}") from None
        if _TUPLE in tree:
            return tuple(unflatten_state(v, tensors) for v in tree[_TUPLE])
        if _DICT in tree:
            return {k: unflatten_state(v, tensors) for k, v in tree[_DICT]}
        return {k: unflatten_state(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [unflatten_state(v, tensors) for v in tree]
    return tree


# --- RNG -----------------------------------------------------------------------------------------
def rng_state(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, torch.Tensor]:
    """This process's RNG states as tensors: torch, CUDA (every device), numpy, python, plus the
    given generators (e.g. the training loader's shuffling generator)."""
    out: dict[str, torch.Tensor] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"cuda/{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    assert kind == "MT19937"
    out["numpy/keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    out["numpy/extra"] = torch.tensor([pos, has_gauss], dtype=torch.int64)
    out["numpy/cached"] = torch.tensor([cached], dtype=torch.float64)
    version, internal, gauss = random.getstate()
    out["python/state"] = torch.tensor([version, *internal], dtype=torch.int64)
    out["python/gauss"] = torch.tensor([np.nan if gauss is None else gauss], dtype=torch.float64)
    for name, gen in (generators or {}).items():
        out[f"generator/{name}"] = gen.get_state()
    return out


def set_rng_state(state: Mapping[str, torch.Tensor], generators: Mapping[str, torch.Generator] | None = None) -> None:
    """Restore what :func:`rng_state` captured (CUDA states only where the devices exist)."""
    torch.set_rng_state(state["torch"].to(torch.uint8))
    if torch.cuda.is_available():
        cuda = [state[k] for k in sorted((k for k in state if k.startswith("cuda/")), key=lambda k: int(k[5:]))]
        for i, s in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s.to(torch.uint8), i)
    if "numpy/keys" in state:
        pos, has_gauss = (int(v) for v in state["numpy/extra"])
        np.random.set_state(("MT19937", state["numpy/keys"].numpy().astype(np.uint32), pos, has_gauss,
                             float(state["numpy/cached"][0])))
    if "python/state" in state:
        values = [int(v) for v in state["python/state"]]
        gauss = float(state["python/gauss"][0])
        random.setstate((values[0], tuple(values[1:]), None if np.isnan(gauss) else gauss))
    for name, gen in (generators or {}).items():
        key = f"generator/{name}"
        if key in state:
            gen.set_state(state[key].to(torch.uint8))


# --- files ---------------------------------------------------------------------------------------
def save_tensors(path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> None:
    """Atomically write a safetensors file (tensors copied to contiguous, unshared CPU memory)."""
    from safetensors.torch import save

    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    atomic_write(path, save(clean, metadata=dict(metadata) if metadata else None))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _load_checkpoint_tensors(path: Path) -> dict[str, torch.Tensor]:
    """:func:`load_tensors`, a truncated or corrupt file being a :class:`CheckpointError` naming it."""
    from safetensors import SafetensorError

    try:
        return load_tensors(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        msg = " ".join(str(exc).split())[:200]
        raise CheckpointError(f"checkpoint file {path} is truncated or corrupt ({msg}); delete the folder "
                              f"{path.parent} to restart the run from its beginning", path=str(path)) from None


class CheckpointDir:
    """The checkpoint folder of one run (see the module docstring)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def state_file(self) -> Path:
        return self.path / STATE_FILE

    def exists(self) -> bool:
        return self.state_file.is_file()

    def _rng_name(self, epoch: int, rank: int) -> str:
        return f"rng-{epoch:04d}-rank{rank}.safetensors"

    def save_rng(self, epoch: int, rank: int, generators: Mapping[str, torch.Generator] | None = None) -> None:
        """Every process saves its own RNG states (before the main process commits the epoch)."""
        save_tensors(self.path / self._rng_name(epoch, rank), rng_state(generators))

    def commit(self, epoch: int, state: Mapping[str, Any], world_size: int = 1) -> None:
        """Main process: write the state's tensors, then ``state.json`` (the commit), then prune old files."""
        tree, tensors = flatten_state(dict(state))
        name = f"state-{epoch:04d}.safetensors"
        save_tensors(self.path / name, tensors, {"epoch": str(epoch)})
        rng = {str(r): self._rng_name(epoch, r) for r in range(world_size)
               if (self.path / self._rng_name(epoch, r)).is_file()}
        atomic_write_json(self.state_file, {"format": CHECKPOINT_FORMAT, "epoch": epoch, "tensors": name,
                                            "rng": rng, "world_size": world_size, "state": tree})
        for f in self.path.iterdir():  # earlier epochs' files (never a later epoch's, being written)
            m = _EPOCH_FILE.match(f.name)
            if m and int(m.group(1)) < epoch:
                f.unlink(missing_ok=True)

    def load(self) -> tuple[int, dict[str, Any]]:
        """``(epoch, state)`` of the last committed checkpoint."""
        try:
            head = json.loads(self.state_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise RunError(f"cannot read checkpoint {self.state_file}: {exc}") from None
        if head.get("format") != CHECKPOINT_FORMAT:
            raise RunError(f"checkpoint {self.state_file} has unknown format {head.get('format')!r}")
        tensors_path = self.path / head["tensors"]
        if not tensors_path.is_file():
            raise RunError(f"checkpoint {self.state_file} refers to missing file {tensors_path.name}")
        state = unflatten_state(head["state"], _load_checkpoint_tensors(tensors_path))
        return int(head["epoch"]), state

    def load_rng(self, rank: int) -> dict[str, torch.Tensor] | None:
        """This rank's saved RNG states (rank 0's when this rank saved none), or ``None``."""
        head = json.loads(self.state_file.read_text())
        name = head.get("rng", {}).get(str(rank)) or head.get("rng", {}).get("0")
        return _load_checkpoint_tensors(self.path / name) if name and (self.path / name).is_file() else None

    def remove(self) -> None:
        """Delete the checkpoint folder (after the run has finished and written its results)."""
        if self.path.is_dir():
            for f in self.path.iterdir():
                f.unlink(missing_ok=True)
            self.path.rmdir()
