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


class LoadedModels(dict):
    """arch name -> the tiny model loaded with `model.load.load_model`, each loaded when first asked for."""

    def __init__(self, paths: dict[str, Path]):
        super().__init__()
        self.paths = paths

    def __missing__(self, arch: str):
        from model.load import load_model

        self[arch] = load_model(self.paths[arch])
        return self[arch]


@pytest.fixture(scope="module")
def models(tiny_models) -> LoadedModels:
    """The tiny models, loaded once per test module (a module may define its own `models`)."""
    return LoadedModels(tiny_models)
