"""Test set-up shared by every test: offline data, a private cache, the smoke budget."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Tests never touch the network for data: they read the mirror beside the repository.
_mirror = ROOT.parent / "shared" / "data"
if "LLMBOOK_DATA_MIRROR" not in os.environ and _mirror.is_dir():
    os.environ["LLMBOOK_DATA_MIRROR"] = str(_mirror)
os.environ.setdefault("LLMBOOK_BUDGET", "smoke")


@pytest.fixture
def data_cache(tmp_path, monkeypatch):
    """A fresh, empty data cache for one test."""
    monkeypatch.setenv("LLMBOOK_DATA_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"
