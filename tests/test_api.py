"""The public surface: every exported name resolves, and importing the package stays light."""

from __future__ import annotations

import subprocess
import sys

import chipnet_zoo as cz


def test_all_names_resolve_to_the_documented_objects():
    for name in cz.__all__:
        assert getattr(cz, name) is not None, name
    assert callable(cz.transfer) and callable(cz.create_model) and callable(cz.list_models)
    assert isinstance(cz.__version__, str)


def test_lazy_exports_survive_submodule_imports():
    # importing every module (as the CLI does) must not shadow an exported function
    import chipnet_zoo.cli.transfer  # noqa: F401
    import chipnet_zoo.experiments  # noqa: F401
    import chipnet_zoo.mask_transfer  # noqa: F401

    assert callable(cz.transfer)


def test_import_is_light():
    code = ("import sys, chipnet_zoo; "
            "print(','.join(m for m in ('huggingface_hub', 'datasets', 'torch_pruning', 'matplotlib') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
