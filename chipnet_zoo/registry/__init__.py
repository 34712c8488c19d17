"""The mask registry: learned masks keyed by (architecture, dataset, budget) in a local folder or a Hugging
Face Hub repo. Layers, each importing only the ones below it::

    mask_registry.py   MaskRegistry: push / pull / list / card; the built-in zoo fallback
    local.py, hub.py   the two backends: read_index, read_file, update (one commit), existing_plots
    card.py            the Hub model card (huggingface_hub.ModelCard)
    index.py           RegistryEntry and index.json (strict parsing via chipnet_zoo/validation.py)
    integrity.py       sha256 checks of every file read
    keys.py            keys <arch>/<dataset>/<budget_type>-<budget> and the paths they map to

``huggingface_hub`` is imported only by ``hub.py`` and ``card.py``, on first use of a Hub registry or a card.
"""

from __future__ import annotations

from .index import INDEX_FILE, RegistryEntry, dump_index, parse_index
from .keys import (
    canonical_key,
    decode_name,
    encode_name,
    key_for,
    machine_tag,
    make_key,
    mask_path,
    parse_key,
    plot_path,
    split_key,
    weights_path,
)
from .mask_registry import BUILTIN_ZOO, MaskRegistry

__all__ = [
    "BUILTIN_ZOO",
    "INDEX_FILE",
    "MaskRegistry",
    "RegistryEntry",
    "canonical_key",
    "decode_name",
    "dump_index",
    "encode_name",
    "key_for",
    "machine_tag",
    "make_key",
    "mask_path",
    "parse_index",
    "parse_key",
    "plot_path",
    "split_key",
    "weights_path",
]
