"""Shared fixtures: tiny datasets written in the AR-Net layout, generated per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from arnet.formats.synth import SynthConfig, write_synthetic

# Small enough to train in seconds, large enough for the sampler to draw balanced batches.
TINY = SynthConfig(
    train_videos=40,
    train_anomalous=12,
    test_videos=24,
    test_anomalous=8,
    dim=64,
    min_segments=6,
    max_segments=60,
    event_strength=2.0,  # few videos, few dimensions: a clearer signal than the default
    seed=7,
)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only tiny synthetic dataset (AR-Net layout); copy it before changing it."""
    return write_synthetic(tmp_path_factory.mktemp("data") / "tiny", TINY)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
