"""The suite's generators (benchmarks/suitegen.py): seeded, and the four families of
benchmarks/suite.py measurably different from each other."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from arnet.config import SynthConfig
from arnet.formats import open_dataset
from arnet.formats.synth import write_synthetic

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from featuregen import GenConfig, generate  # noqa: E402
from suitegen import (  # noqa: E402
    DriftConfig,
    SpikyConfig,
    family_statistics,
    generate_drift,
    generate_spiky,
)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}  # fmt: skip


SMALL = {
    "spiky": lambda out, seed: generate_spiky(out, SpikyConfig(seed=seed, dim=24, scenes=5)),
    "drift": lambda out, seed: generate_drift(
        out,
        DriftConfig(
            seed=seed, dim=24, train=30, train_anomalous=12, test=10, test_anomalous=4, max_len=120
        ),
    ),  # fmt: skip
}


@pytest.mark.parametrize("family", sorted(SMALL))
def test_same_seed_same_bytes_other_seed_other_bytes(family, tmp_path):
    SMALL[family](tmp_path / "a", 5)
    SMALL[family](tmp_path / "b", 5)
    SMALL[family](tmp_path / "c", 6)
    a, b, c = (_files(tmp_path / x) for x in "abc")
    assert a == b
    assert a.keys() != c.keys() or any(a[k] != c[k] for k in a)


@pytest.mark.parametrize("family", sorted(SMALL))
def test_sets_read_as_arnet_layout(family, tmp_path):
    SMALL[family](tmp_path / "set", 1)
    train, test = open_dataset(tmp_path / "set", in_memory=True)
    assert 0 < train.labels.sum() < len(train) and 0 < test.labels.sum() < len(test)
    for data in (train, test):
        for i in range(len(data)):
            x = data.features(i)
            assert x.dtype.name == "float32" and (abs(x).max(axis=-1) > 0).all()
            labels = data.frame_labels[i]
            assert len(labels) >= 16 * len(x)
            # an anomalous video's events fall on frames its segments cover
            assert bool(labels[: 16 * len(x)].any()) == bool(data.labels[i])


def test_refuses_to_overwrite(tmp_path):
    SMALL["spiky"](tmp_path / "s", 1)
    with pytest.raises(FileExistsError):
        SMALL["spiky"](tmp_path / "s", 2)


@pytest.fixture(scope="module")
def stats(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    generate(root / "featuregen", GenConfig(seed=3, dim=24, train=40, train_anomalous=16,
                                            test=10, test_anomalous=3, max_len=120))  # fmt: skip
    write_synthetic(root / "synth", SynthConfig(seed=3, dim=24, train_videos=40,
                                                train_anomalous=16, test_videos=10,
                                                test_anomalous=3, scenes=6, min_segments=16,
                                                max_segments=120))  # fmt: skip
    generate_spiky(root / "spiky", SpikyConfig(seed=3, dim=24, scenes=6))
    generate_drift(root / "drift", DriftConfig(seed=3, dim=24, train=40, train_anomalous=16,
                                               test=10, test_anomalous=3, max_len=160))  # fmt: skip
    return {f: family_statistics(root / f) for f in ("featuregen", "synth", "spiky", "drift")}


def test_families_differ_measurably(stats):
    # events: drift's last most of a video, spiky's a few frames, the others' in between
    assert stats["drift"]["cover"] > 0.55
    assert stats["spiky"]["cover"] < 0.08
    for f in ("featuregen", "synth"):
        assert 0.1 < stats[f]["cover"] < 0.5
    # noise: spiky's heavy tails; the others' near-Gaussian or lighter
    assert stats["spiky"]["kurtosis"] > 0.5
    for f in ("featuregen", "synth", "drift"):
        assert stats[f]["kurtosis"] < 0.3
    # time: synth's and drift's features wander; featuregen's and spiky's barely
    for f in ("synth", "drift"):
        assert stats[f]["autocorrelation"] > 0.15
    for f in ("featuregen", "spiky"):
        assert stats[f]["autocorrelation"] < 0.1
    # so every pair of families differs in at least one of the three
    names = sorted(stats)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            gaps = [abs(stats[a][k] - stats[b][k]) for k in ("cover", "kurtosis",
                                                            "autocorrelation")]  # fmt: skip
            assert max(gaps) > 0.1, (a, b, stats[a], stats[b])
