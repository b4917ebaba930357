"""Find models already on this disk: the demo models in `assets/models`, models trained by lmscope,
and the Hugging Face cache. Nothing is downloaded.

Names: demo models are `demo/<dir>`, trained runs `runs/<dir>`, ONNX exports the path of their `.onnx`
file under those roots without the suffix (`runs/onnx/bert-opset17-1a2b3c/model`), cached hub models their
repo id (`bert-base-uncased`, `openai-community/gpt2`). `lmscope models` prints this list. `resolve` turns
a name or a path into a model folder, and keeps the app's paths inside the allowed roots.

    >>> [e.name for e in list_models()]            # doctest: +SKIP
    ['demo/bert', 'demo/gpt2', 'bert-base-uncased']
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from model.errors import ModelLoadError
from model.modelfiles import checkpoint_parameters, tensor_headers, weight_files

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ASSETS_MODELS = PROJECT_ROOT / "assets" / "models"
DESCRIPTION_FILE = "description.txt"  # optional, in a model folder: one paragraph on what the model is


def demo_dir() -> Path:
    """The shipped demo models (LMSCOPE_DEMO_MODELS overrides, for tests)."""
    return Path(os.environ.get("LMSCOPE_DEMO_MODELS", ASSETS_MODELS)).expanduser()


def runs_dir() -> Path:
    """Where lmscope's own training writes finished models (LMSCOPE_RUNS, default `runs/` in the checkout)."""
    return Path(os.environ.get("LMSCOPE_RUNS", PROJECT_ROOT / "runs")).expanduser()


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache, resolved the way huggingface_hub does (HF_HUB_CACHE, then HF_HOME/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


@dataclass(frozen=True)
class ModelEntry:
    """One model found on disk. source: "demo" | "trained" | "onnx" | "hf-cache"; note: why it may not load;
    description: what the model is, from a `description.txt` in its folder (e.g. how a demo model was trained)."""

    name: str
    path: str
    source: str
    model_type: str
    architecture: str
    size_bytes: int
    note: str = ""
    description: str = ""
    parameters: int = 0  # from the safetensors headers (0: none readable)
    dtype: str = ""  # the weights' dtype on disk (the most common floating-point dtype in the headers)

    def to_json(self) -> dict:
        return asdict(self)


def _entry(name: str, path: Path, source: str) -> ModelEntry | None:
    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
        if not isinstance(cfg, dict):
            return None
    except (OSError, ValueError):
        return None
    files = [f for f in path.iterdir() if f.is_file()]
    size = sum(f.stat().st_size for f in files)  # follows the hub cache's symlinks into blobs/
    note = ""
    if not any(f.suffix == ".safetensors" for f in files):
        note = "pickled weights only: convert to safetensors to use it" if any(f.suffix in (".bin", ".pt") for f in files) \
            else "no weights"
    archs = cfg.get("architectures") or [""]
    try:
        description = (path / DESCRIPTION_FILE).read_text(encoding="utf-8", errors="replace")[:1000].strip()
    except OSError:
        description = ""
    params, dtype = weights_summary(path) if not note else (0, "")
    return ModelEntry(name, str(path), source, str(cfg.get("model_type", "?")), str(archs[0]), size, note,
                      description=description, parameters=params, dtype=dtype)


DTYPE_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "F8_E4M3": "float8",
               "F8_E5M2": "float8"}


def weights_summary(path: Path) -> tuple[int, str]:
    """(parameters, dtype) of a model folder's safetensors weights, from their headers alone (no torch):
    (0, "") when they cannot be read (the load will say why)."""
    try:
        files = weight_files(path)
        counts: dict[str, int] = {}
        for f in files:
            for dtype, _ in tensor_headers(f).values():
                if dtype in DTYPE_NAMES:
                    counts[dtype] = counts.get(dtype, 0) + 1
        return checkpoint_parameters(files), DTYPE_NAMES[max(counts, key=counts.get)] if counts else ""
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # ModelLoadError is a ValueError
        return 0, ""


def _dirs_with_config(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "config.json").is_file())


ONNX_DEPTH = 3  # runs/onnx/<export>/model.onnx: deep enough for the app's exports, shallow enough to stay fast


def _onnx_entries(root: Path, prefix: str) -> list[ModelEntry]:
    """ONNX files under `root` (FILE.head.onnx and FILE.decoder.onnx, the LM head and the generation graph
    beside a graph, are not models of their own)."""
    if not root.is_dir():
        return []
    found = []
    for depth in range(1, ONNX_DEPTH + 1):
        for f in sorted(root.glob("/".join(["*"] * depth) + ".onnx")):
            if f.name.endswith((".head.onnx", ".decoder.onnx")) or not f.is_file():
                continue
            if any(part.startswith(".") for part in f.relative_to(root).parts):  # an export's temp dir
                continue
            meta: dict = {}
            try:
                meta = json.loads(f.with_name(f.name[: -len(".onnx")] + ".lmscope.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                pass
            meta = meta if isinstance(meta, dict) else {}
            note = "" if meta else "no lmscope metadata: read from the graph's outputs"
            rel = f.relative_to(root).with_suffix("").as_posix()
            found.append(ModelEntry(f"{prefix}/{rel}", str(f), "onnx", str(meta.get("model_type", "?")),
                                    str(meta.get("architecture", "?")), f.stat().st_size, note))
    return found


def _hub_snapshot(repo_dir: Path) -> Path | None:
    """The snapshot `refs/main` points at, else the newest snapshot."""
    snaps = repo_dir / "snapshots"
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        p = snaps / ref.read_text().strip()
        if (p / "config.json").exists():
            return p
    cands = [p for p in snaps.iterdir() if (p / "config.json").exists()] if snaps.is_dir() else []
    return max(cands, key=lambda p: p.stat().st_mtime) if cands else None


def list_models() -> list[ModelEntry]:
    """Every model found: demo, then trained, then ONNX exports, then the HF cache."""
    out: list[ModelEntry] = []
    for p in _dirs_with_config(demo_dir()):
        e = _entry(f"demo/{p.name}", p, "demo")
        out += [e] if e else []
    for p in _dirs_with_config(runs_dir()):
        e = _entry(f"runs/{p.name}", p, "trained")
        out += [e] if e else []
    out += _onnx_entries(demo_dir(), "demo") + _onnx_entries(runs_dir(), "runs")
    cache = hf_hub_cache()
    if cache.is_dir():
        for repo in sorted(cache.glob("models--*")):
            snap = _hub_snapshot(repo)
            if snap is None:
                continue
            e = _entry(repo.name[len("models--"):].replace("--", "/"), snap, "hf-cache")
            out += [e] if e else []
    return out


def find(name: str, exact: bool = False) -> ModelEntry | None:
    """A listed model by name; unless `exact`, `gpt2` also matches `openai-community/gpt2` and `bert`
    matches `demo/bert` when that is the only such model."""
    entries = list_models()
    for e in entries:
        if e.name == name:
            return e
    if exact:
        return None
    tails = [e for e in entries if e.name.split("/")[-1] == name]
    return tails[0] if len(tails) == 1 else None


def allowed_roots() -> list[Path]:
    """Directories the app may load models from: the demo models, lmscope's runs, the HF cache, and
    anything listed in LMSCOPE_MODEL_ROOTS (os.pathsep-separated). The CLI may load any path it is given."""
    roots = [demo_dir(), runs_dir(), hf_hub_cache()]
    roots += [Path(p) for p in os.environ.get("LMSCOPE_MODEL_ROOTS", "").split(os.pathsep) if p]
    return [r.expanduser().resolve() for r in roots]


def check_allowed(path: Path) -> None:
    """Refuse a path that resolves (after `..` and symlinks) outside every allowed root."""
    real = Path(os.path.realpath(path))
    if not any(real == r or r in real.parents for r in allowed_roots()):
        raise ModelLoadError(
            f"{path} is outside the model folders this server may read (demo models, runs, the Hugging Face "
            "cache, LMSCOPE_MODEL_ROOTS)"
        )


def resolve(ref: str | os.PathLike, restrict: bool = False) -> tuple[Path, str]:
    """A path or a listed model name -> (path, display name). With `restrict`, a path must lie inside
    `allowed_roots()` (the app sets this; a path typed on the command line is the user's own choice)."""
    ref = str(ref).strip()
    if not ref:
        raise ModelLoadError("no model given")
    entry = find(ref, exact=True)
    if entry is not None:
        return Path(entry.path), entry.name
    p = Path(ref).expanduser()
    if not p.exists():
        entry = find(ref)
        if entry is not None:
            return Path(entry.path), entry.name
        raise ModelLoadError(f"no such model: {ref!r} (neither a path nor a listed model; `lmscope models` lists them)")
    if restrict:
        check_allowed(p)
    p = p.resolve()
    return p, p.name
