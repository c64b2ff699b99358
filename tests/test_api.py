"""The public API declared in `arnet/__init__.py`: every name resolves, lazily."""

from __future__ import annotations

import subprocess
import sys

import arnet


def test_every_public_name_resolves_to_what_its_module_defines():
    import importlib

    for name in arnet.__all__:
        if name == "__version__":
            continue
        value = getattr(arnet, name)
        module = importlib.import_module(arnet._API[name])
        assert value is getattr(module, name), name
    assert set(arnet.__all__) <= set(dir(arnet))


def test_an_unknown_name_is_an_attribute_error():
    try:
        arnet.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_importing_arnet_loads_no_torch():
    code = "import sys, arnet; arnet.__version__; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_api_builds_a_model_and_scores_arrays():
    import numpy as np

    model = arnet.create_model("single", 4)
    (scores,) = arnet.score_arrays(model, [np.ones((3, 4), np.float32)])
    assert scores.shape == (3,)
    assert "single" in [e.name for e in arnet.list_models()]
