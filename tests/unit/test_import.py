"""The core imports no ML library: `import retrain` and `retrain validate` stay fast."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "trl", "verl", "datasets", "sentence_transformers", "rich")


def test_import_retrain_loads_no_ml_library():
    code = f"import sys, retrain, retrain.config_models; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


def test_validating_a_config_loads_no_ml_library(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model_to_train: retrain:tiny\nexample_prompts: [a]\nverifiers: [{rule: mentions_a_cat}]\n")
    code = (
        f"import sys; from retrain.core.run import load_config; load_config({str(path)!r}); "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules and m != 'rich'))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


def test_core_modules_import_no_backend_library():
    import pathlib

    import retrain.core

    for module in pathlib.Path(retrain.core.__file__).parent.glob("*.py"):
        source = module.read_text()
        for name in ("torch", "transformers", "trl", "verl"):
            assert f"import {name}" not in source and f"from {name} " not in source, (module.name, name)
