"""Fixtures shared by the ONNX tests (tests/model/test_onnx_*.py)."""
import pytest


@pytest.fixture(scope="session")
def exported(tiny_models, tmp_path_factory):
    """arch -> ExportReport of the tiny model's export to <tmp>/<arch>/model.onnx, for every seed architecture."""
    from model.onnx.export import export_onnx
    from tiny_models import ARCHS

    root = tmp_path_factory.mktemp("onnx")
    return {arch: export_onnx(tiny_models[arch], root / arch / "model.onnx") for arch in ARCHS}
