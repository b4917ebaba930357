"""Shared fixtures. Nothing is ever fetched from a hub in tests."""
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
sys.path.insert(0, str(Path(__file__).parent))  # tiny_models


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """arch name -> directory of a tiny random model saved with save_pretrained."""
    from tiny_models import ARCHS, build

    root = tmp_path_factory.mktemp("tiny_models")
    return {arch: build(arch, root) for arch in ARCHS}
