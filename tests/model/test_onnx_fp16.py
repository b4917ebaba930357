"""model.onnx.fp16: float16 weight storage halves the file and stays within the drift it promises."""
import json

import onnx
import pytest

from model.backends.onnx_load import load_onnx
from model.inspect import inspect
from model.load import load_model
from model.onnx.export import export_onnx
from model.onnx.fp16 import FP16_DRIFT
from model.onnx.parity import TOLERANCE

TEXT = "the dogs near the cat [MASK] quickly."


def test_fp16_export_halves_the_file_and_stays_close(tiny_models, tmp_path):
    r = export_onnx(tiny_models["bert-mlm"], tmp_path / "m16.onnx", fp16=True)
    fp32 = export_onnx(tiny_models["bert-mlm"], tmp_path / "m32.onnx")
    assert r.fp16 and r.size_bytes < 0.75 * fp32.size_bytes
    assert max(r.parity.values()) <= TOLERANCE  # the graph computes exactly the fp16-rounded model
    assert all(r.fp16_drift[k] <= v for k, v in FP16_DRIFT.items() if k in r.fp16_drift)
    assert json.loads(r.metadata_path.read_text())["weights"] == "float16"
    types = {i.data_type for i in onnx.load(str(r.path)).graph.initializer if len(i.dims) and i.dims[0] >= 32}
    assert onnx.TensorProto.FLOAT16 in types
    a, b = inspect(load_onnx(r.path, "m16"), TEXT), inspect(load_model(tiny_models["bert-mlm"]), TEXT)
    assert [p.prob for p in a.masks[0].predictions] == pytest.approx([p.prob for p in b.masks[0].predictions], abs=1e-3)
