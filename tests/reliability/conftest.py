"""A small world for the reliability tests: a demo folder holding good tiny models next to broken ones
(no config.json, unknown model_type, truncated or garbled safetensors, a tokenizer that does not fit,
a pickle checkpoint, truncated and random `.onnx` files, a config asking for remote code), a model outside
every allowed root with a symlink pointing at it, a runs folder with a finished model in it, corpora and
text files of every bad kind. Paths are looked up by name: `world.path("trunc")`.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

GOOD = ("bert-mlm", "gpt2", "roberta-mlm", "bert-pretraining")
MARKER = "pwned-marker"  # a file that must never be created: unpickling or remote code would write it


@dataclass
class World:
    root: Path
    demo: Path
    runs: Path
    hub: Path
    corpora: Path
    scratch: Path
    outside: Path
    names: dict

    def path(self, name: str) -> Path:
        return self.names[name]

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    def snapshot(self) -> dict[str, str]:
        """Every file (and symlink) under the world except `scratch`, with its content hash."""
        out = {}
        for p in sorted(self.root.rglob("*")):
            if self.scratch in p.parents or p == self.scratch:
                continue
            rel = str(p.relative_to(self.root))
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = "dir"
        return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_config(d: Path, **changes) -> None:
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(changes)
    (d / "config.json").write_text(json.dumps(cfg))


class _EvilPickle:
    """Unpickling this object would create the marker file (and only that)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="session")
def world(tiny_models, tmp_path_factory) -> World:
    import pickle

    import torch

    root = tmp_path_factory.mktemp("world")
    demo, runs, hub, corpora, scratch, outside = (root / n for n in ("demo", "runs", "hub", "corpora", "scratch", "outside"))
    for d in (demo, runs, hub, corpora, scratch, outside):
        d.mkdir()
    names: dict[str, Path] = {}
    for arch in GOOD:
        names[arch] = _copy(tiny_models[arch], demo / arch)

    d = names["noconfig"] = _copy(tiny_models["bert-mlm"], demo / "noconfig")
    (d / "config.json").unlink()
    d = names["mars"] = _copy(tiny_models["bert-mlm"], demo / "mars")
    _edit_config(d, model_type="llama-from-mars")
    d = names["badjson"] = _copy(tiny_models["bert-mlm"], demo / "badjson")
    (d / "config.json").write_text('{"model_type": "bert",')
    d = names["trunc"] = _copy(tiny_models["bert-mlm"], demo / "trunc")
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    d = names["garbled"] = _copy(tiny_models["bert-mlm"], demo / "garbled")
    f = d / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[8:40] = b"\xff" * 32  # the JSON header is now garbage; the length is unchanged
    f.write_bytes(bytes(data))
    d = names["vocab"] = _copy(tiny_models["bert-mlm"], demo / "vocab")
    shutil.copy(tiny_models["gpt2"] / "tokenizer.json", d / "tokenizer.json")  # 300 tokens, 200 rows
    d = names["notok"] = _copy(tiny_models["gpt2"], demo / "notok")
    for f in d.glob("*"):
        if f.name.startswith(("tokenizer", "vocab", "merges", "special_tokens")):
            f.unlink()
    # a pickle checkpoint whose unpickling would create the marker file
    d = names["pickle"] = _copy(tiny_models["bert-mlm"], demo / "pickle")
    (d / "model.safetensors").unlink()
    with open(d / "pytorch_model.bin", "wb") as fh:
        pickle.dump({"state": _EvilPickle(str(root / MARKER))}, fh)
    # a config that asks for remote code (auto_map): the code would create the marker file
    d = names["remote"] = _copy(tiny_models["bert-mlm"], demo / "remote")
    _edit_config(d, auto_map={"AutoModel": "evil.EvilModel", "AutoModelForMaskedLM": "evil.EvilModel",
                              "AutoTokenizer": ["evil.EvilTokenizer", None]})
    (d / "evil.py").write_text(f"open({str(root / MARKER)!r}, 'w').write('remote code ran')\n"
                               "class EvilModel: pass\nclass EvilTokenizer: pass\n")

    # the load guard: a config claiming a far larger model than its weights (the demo BERT with 4000 layers of
    # width 8192), and a model larger than free memory (config and weights agree; its file is sparse, in
    # scratch because the snapshot would read it: LMSCOPE_MODEL_ROOTS lets the app reach it)
    d = names["inflated"] = _copy(tiny_models["bert-mlm"], demo / "inflated")
    _edit_config(d, num_hidden_layers=4000, hidden_size=8192)
    from tiny_families import build_huge, build_state_space

    names["huge"] = build_huge(tiny_models["bert-mlm"], scratch / "huge")
    names["mamba"] = build_state_space(scratch)  # a family ONNX export refuses (no attention layers)

    # ONNX: a good export, a truncated copy, random bytes (each in its own folder with the tokenizer)
    from model.onnx.export import export_onnx

    rep = export_onnx(tiny_models["gpt2"], scratch / "export" / "model.onnx")
    for name in ("onnx-trunc", "onnx-noise"):
        d = demo / name
        d.mkdir()
        for f in rep.tokenizer_files:
            shutil.copy(rep.path.parent / f, d / f)
        names[name] = d / "model.onnx"
    data = rep.path.read_bytes()
    names["onnx-trunc"].write_bytes(data[: len(data) // 2])
    shutil.copy(rep.metadata_path, demo / "onnx-trunc" / "model.lmscope.json")
    names["onnx-noise"].write_bytes(torch.randint(0, 256, (4000,), generator=torch.Generator().manual_seed(1),
                                                  dtype=torch.uint8).numpy().tobytes())
    shutil.rmtree(scratch / "export")

    # outside every allowed root, and a symlink inside the demo folder that points there
    names["outside"] = _copy(tiny_models["gpt2"], outside / "gpt2")
    (demo / "link").symlink_to(names["outside"], target_is_directory=True)
    names["link"] = demo / "link"

    # a finished run (must never be touched by a refused command)
    names["saved"] = _copy(tiny_models["gpt2"], runs / "saved")
    (runs / ".jobs.lock").touch()  # the job queue's lock file (the Train page opens it, never writes it)

    # corpora and text files
    files = {
        "bin.txt": bytes(range(256)) * 8,
        "bad-utf8.txt": b"the cat sat.\n\xff\xfe broken bytes\n" * 5,
        "empty.txt": b"",
        "blank.txt": b" \n\n\t\n",
        "short.txt": b"the cat sat.\n",
        "controls.txt": ("a\x01b\x02c\x03\n" * 50).encode(),
        "bad.jsonl": b'{"text": "fine."}\n{not json\n',
        "good.txt": "\n\n".join(f"the dog number {i} runs near the cat. the cat sleeps." for i in range(50)).encode(),
    }
    for name, data in files.items():
        (corpora / name).write_bytes(data)
        names[name] = corpora / name
    return World(root, demo, runs, hub, corpora, scratch, outside, names)


@pytest.fixture
def world_env(world, monkeypatch):
    """Point lmscope (CLI and app, in this process) at the world; forget cached model lists."""
    monkeypatch.setenv("LMSCOPE_DEMO_MODELS", str(world.demo))
    monkeypatch.setenv("LMSCOPE_RUNS", str(world.runs))
    monkeypatch.setenv("HF_HUB_CACHE", str(world.hub))
    monkeypatch.setenv("LMSCOPE_CORPUS_ROOTS", str(world.corpora))
    monkeypatch.delenv("LMSCOPE_MODEL_ROOTS", raising=False)
    from app import common

    common.listed_models.clear()  # the listing is cached for 15 s per process
    common.load_cached.clear()  # `demo/gpt2` may name another test's demo folder in the app's resource cache
    yield world
    common.listed_models.clear()
    common.load_cached.clear()
