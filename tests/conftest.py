"""Shared fixtures: float64 defaults, the real-data folder (skip with a reason when absent)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "freqlens", max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("freqlens")

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path | None:
    env = os.environ.get("FREQLENS_DATA")
    for candidate in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    if root is None:
        pytest.skip("real datasets not found: set FREQLENS_DATA or place ../shared/data beside the checkout")
    return root


@pytest.fixture(scope="session")
def mnist_root(data_root: Path) -> Path:
    if not (data_root / "mnist").is_dir():
        pytest.skip(f"MNIST IDX files not found under {data_root / 'mnist'}")
    return data_root / "mnist"


@pytest.fixture(scope="session")
def cifar_root(data_root: Path) -> Path:
    if not (data_root / "cifar10").is_dir():
        pytest.skip(f"CIFAR-10 archive not found under {data_root / 'cifar10'}")
    return data_root / "cifar10"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _torch_seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread for the test (the trainers' numbers are pinned to a thread count), restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread for the test: tiny tensors, and OpenMP spin-waiting on a shared 2-core machine costs
    more than it gives (``pytestmark = pytest.mark.usefixtures("one_thread")`` in a test file)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
