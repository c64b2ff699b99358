"""benchmarks/peers.py refuses a bad --method, --reference or --data with one line."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import peers  # noqa: E402


def _error(capsys, *argv):
    assert peers.main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_an_unknown_method_names_the_methods(capsys, tmp_path):
    err = _error(capsys, "--method", "nosuch", "--reference", str(tmp_path))
    assert "--method 'nosuch'" in err and "rtfm" in err and "mgfn" in err


@pytest.mark.parametrize("method, files", [("rtfm", "model.py"), ("mgfn", "models/mgfn.py")])
def test_a_missing_or_wrong_checkout_is_named(capsys, tmp_path, method, files):
    err = _error(capsys, "--method", method, "--reference", str(tmp_path / "absent"))
    assert "no such folder" in err and "absent" in err
    (tmp_path / "README.md").write_text("something else\n")
    err = _error(capsys, "--method", method, "--reference", str(tmp_path))
    assert "not a checkout of" in err and files in err


def test_bad_variants_and_data_are_named(capsys, tmp_path):
    (tmp_path / "model.py").write_text("")
    (tmp_path / "train.py").write_text("")
    ref = ["--method", "rtfm", "--reference", str(tmp_path)]
    assert "--variants: unknown mine" in _error(capsys, *ref, "--variants", "theirs,mine")
    assert "--data" in _error(capsys, *ref, "--data", str(tmp_path / "nodata"))
