"""A model folder's files, read without torch: its config.json, its safetensors weights (headers only, with
`safetensors.safe_open`: tensor names, dtypes and shapes, the parameter count) and its tokenizer.

    >>> read_config(path)["model_type"], checkpoint_parameters(check_weights(path))   # doctest: +SKIP
    ('bert', 4385920)

Only safetensors weights are read (pickled `.bin`/`.pt` checkpoints are refused: unpickling can run code).
Every refusal is a ModelLoadError with one line saying why.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from model.errors import ModelLoadError, first_line

PICKLE_WEIGHTS = ("pytorch_model.bin", "model.pt", "model.pth", "model.ckpt", "tf_model.h5", "flax_model.msgpack")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")
FLOAT_DTYPES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}  # safetensors' floating-point dtype names
# Buffers older checkpoints stored beside the weights; the loader ignores them and they are no parameters.
BUFFER_KEYS = re.compile(r"(?:^|\.)(?:position_ids|token_type_ids|attn\.bias|attn\.masked_bias)$")


def read_config(path: Path) -> dict[str, Any]:
    cfg_file = path / "config.json"
    if not path.exists():
        raise ModelLoadError(f"no such model: {path} (not a directory or file; `lmscope models` lists the known ones)")
    if not path.is_dir():
        raise ModelLoadError(f"{path} is a file, not a model directory (an ONNX model must end in .onnx)")
    if not cfg_file.is_file():
        raise ModelLoadError(f"{path} has no config.json: not a Hugging Face model directory")
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{cfg_file} is not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise ModelLoadError(f"{cfg_file} is not a JSON object")
    mt = cfg.get("model_type")
    if not isinstance(mt, str) or not mt:
        raise ModelLoadError(f"{cfg_file} has no model_type: not a Hugging Face model config")
    return cfg


def check_weights(path: Path) -> list[Path]:
    """The safetensors files of a model directory, validated; refuses pickled checkpoints."""
    files = sorted(path.glob("*.safetensors"))
    if not files:
        pickles = [p.name for p in path.iterdir() if p.name in PICKLE_WEIGHTS or p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
        if pickles:
            raise ModelLoadError(
                f"{path} only has pickled weights ({', '.join(pickles)}); lmscope never unpickles files because "
                "that can run arbitrary code. If you trust the file, convert it once with: python -c \"from "
                "transformers import AutoModel as A; A.from_pretrained('" + str(path) + "', use_safetensors=False)"
                ".save_pretrained('" + str(path) + "-safetensors')\" (then copy the tokenizer files beside it)"
            )
        raise ModelLoadError(f"{path} has no model.safetensors")
    for f in files:
        tensor_headers(f)
    return files


def tensor_headers(f: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """tensor name -> (safetensors dtype name, shape) of one safetensors file, from its header alone (no
    tensor is read). safe_open checks that the header parses and that its byte ranges cover the file exactly,
    so a truncated or garbled file is refused here."""
    from safetensors import safe_open

    try:
        with safe_open(str(f), "numpy") as st:
            out = {}
            for k in st.keys():
                sl = st.get_slice(k)
                out[k] = (sl.get_dtype(), tuple(int(d) for d in sl.get_shape()))
            return out
    except OSError:
        raise
    except Exception as e:  # safetensors' SafetensorError: the header or the length is wrong
        reason = first_line(e).removeprefix("Error while deserializing header: ")
        raise ModelLoadError(f"{f} is corrupt or truncated ({f.stat().st_size} bytes): {reason}") from None


def checkpoint_parameters(files: list[Path]) -> int:
    """Number of parameters (floating-point tensors that are no known buffer) the files hold."""
    total = 0
    for f in files:
        for k, (dtype, shape) in tensor_headers(f).items():
            if dtype not in FLOAT_DTYPES or BUFFER_KEYS.search(k):
                continue
            total += math.prod(shape)
    return total


def weight_files(path: Path) -> list[Path]:
    """The safetensors files transformers reads for a folder: model.safetensors, else the shards that
    model.safetensors.index.json lists."""
    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise ModelLoadError(f"{index} is unreadable") from None
        files = [path / s for s in shards]
        if not files or any(not f.is_file() for f in files):
            raise ModelLoadError(f"{index} lists shards that are not there")
        return files
    raise ModelLoadError(f"{path} has no model.safetensors")


def load_tokenizer(path: Path):
    """The fast (Rust) tokenizer in a folder (transformers' AutoTokenizer, local files only)."""
    from transformers import AutoTokenizer

    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise ModelLoadError(f"{path} has no tokenizer files (expected one of: {', '.join(TOKENIZER_FILES)})")

    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as e:
        raise ModelLoadError(f"cannot load the tokenizer in {path}: {first_line(e)}") from None
    if not getattr(tok, "is_fast", False):
        raise ModelLoadError(f"the tokenizer in {path} is not a fast (Rust) tokenizer; lmscope needs character offsets")
    return tok


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())
