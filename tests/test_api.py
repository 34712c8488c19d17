"""The public surface: every exported name resolves, and importing the package stays light."""

from __future__ import annotations

import re
import subprocess
import sys

import chipnet_zoo as cz


def test_all_names_resolve_to_the_documented_objects():
    import importlib
    import inspect

    assert set(cz.__all__) == set(cz._LAZY) | {"__version__"}
    for name, module in cz._LAZY.items():
        assert getattr(cz, name) is getattr(importlib.import_module(module, "chipnet_zoo"), name), name
    assert all(inspect.isclass(getattr(cz, n)) for n in ("Budget", "ChipNetPruner", "Mask", "MaskRegistry"))
    assert all(inspect.isfunction(getattr(cz, n)) for n in ("create_model", "list_models", "transfer"))
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", cz.__version__)


def test_lazy_exports_survive_submodule_imports():
    # importing every module (as the CLI does) must not shadow an exported function
    import chipnet_zoo.cli.transfer  # noqa: F401
    import chipnet_zoo.experiments  # noqa: F401
    import chipnet_zoo.mask_transfer  # noqa: F401

    assert callable(cz.transfer)


def test_import_is_light():
    """Importing the package, its data and model modules, and building a CIFAR model pulls in nothing heavy."""
    code = ("import sys, chipnet_zoo, chipnet_zoo.data, chipnet_zoo.models as m; m.create_model('resnet8'); "
            "print(','.join(x for x in ('torchvision', 'huggingface_hub', 'datasets', 'torch_pruning', "
            "'matplotlib', 'timm') if x in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
