"""Load guard: what a model will cost in memory, checked before anything of it is allocated.

    >>> plan = check_load(Path("assets/models/bert"), config, cls, "float32")   # doctest: +SKIP
    >>> plan.config_parameters, plan.need_bytes                                 # doctest: +SKIP

Three figures are compared, and a model is refused with one line naming the two that disagree:
    the weights   parameters and bytes the safetensors headers hold (tensor shapes and dtypes, read with
                  `safetensors.safe_open`: nothing is loaded);
    the config    parameters the architecture has with this config.json: the model class built on torch's
                  meta device (shapes only, no storage). A config with more than EXTRAPOLATE_ABOVE layers
                  is counted from one- and two-layer builds (every layer of a family has the same shapes),
                  so 4000 layers cost two tiny builds, not 4000 meta layers;
    free memory   `psutil.virtual_memory().available`, lowered to the cgroup's limit when one is set.
A config that claims far more parameters than its weights hold (the loader would allocate the difference
as random weights) and a model that does not fit in free memory are refused; a model that fits in
bfloat16 but not in float32 is offered `--dtype bfloat16`.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import psutil

from model.errors import LmscopeError
from model.modelfiles import FLOAT_DTYPES, tensor_headers

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
ST_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4,
                  "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
EXTRAPOLATE_ABOVE = 64  # layers; above this the count comes from one- and two-layer meta builds
# A checkpoint may lack a few weights (a head loaded onto a bare encoder's checkpoint): those are
# allocated as random weights with a load warning. More than this many extra parameters is a mismatch.
MISMATCH_SLACK = 2**24  # parameters, plus half the checkpoint's own count
RESERVE_BYTES = 256 * 2**20  # left free for activations, the tokenizer and the interpreter


HIDDEN_KEYS = ("hidden_size", "n_embd", "d_model", "dim")  # a config's model width, by its usual names
LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")


class GuardError(LmscopeError):
    """A model is refused before loading; the message (one line) names the figures compared."""


@dataclass(frozen=True)
class LoadPlan:
    """The figures a load was checked against (bytes are for the dtype asked for)."""

    file_parameters: int
    file_bytes: int
    config_parameters: int
    need_bytes: int
    available_bytes: int
    dtype: str


def gb(n: float) -> str:
    """Bytes as a short human figure: 1.2 GB, 340 MB, 12 TB."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 1e3:.1f} kB"


def count(n: int) -> str:
    """A parameter count as a short figure: 110.1M, 3.2T."""
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def file_tensors(files: list[Path], widths: set | None = None) -> tuple[int, int]:
    """(parameters, bytes) of the floating-point tensors in these safetensors files, from their headers;
    every dimension seen is added to `widths` when given."""
    params = nbytes = 0
    for f in files:
        for k, (dt, shape) in tensor_headers(f).items():
            if dt not in FLOAT_DTYPES or k.endswith(("position_ids", "token_type_ids", "masked_bias")):
                continue
            if widths is not None:
                widths.update(shape)
            n = math.prod(shape)
            params += n
            nbytes += n * ST_DTYPE_BYTES.get(dt, 4)
    return params, nbytes


def _meta_count(cls, config) -> tuple[int, int]:
    """(parameters, buffer elements) of cls(config) built on the meta device (no storage)."""
    import torch

    with torch.device("meta"):
        model = cls._from_config(config) if hasattr(cls, "_from_config") else cls(config)
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers())
    return params, buffers


def _with_layers(config, n: int):
    c = copy.deepcopy(config)
    c.num_hidden_layers = n
    if isinstance(getattr(c, "layer_types", None), list):
        c.layer_types = c.layer_types[:n]
    return c


def config_parameters(cls, config) -> tuple[int, int]:
    """(parameters, buffer elements) the class has with this config, without allocating them."""
    layers = int(getattr(config, "num_hidden_layers", 0) or 0)
    if layers <= EXTRAPOLATE_ABOVE:
        return _meta_count(cls, config)
    p1, b1 = _meta_count(cls, _with_layers(config, 1))
    p2, b2 = _meta_count(cls, _with_layers(config, 2))
    return p1 + (layers - 1) * (p2 - p1), b1 + (layers - 1) * (b2 - b1)


def available_memory() -> int:
    """Bytes this process can still allocate: the OS's available memory, or the cgroup's room if smaller."""
    avail = int(psutil.virtual_memory().available)
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            avail = min(avail, int(limit) - used)
    except (OSError, ValueError):
        pass
    return max(0, avail)


def _memory_error(path: Path, n_params: int, need: int, half: int, dtype: str, avail: int) -> GuardError:
    hint = (f"; it fits in bfloat16 ({gb(half)}): load it with --dtype bfloat16 (on the Models page: "
            "'Load in bfloat16')") if DTYPE_BYTES[dtype] > 2 and half + RESERVE_BYTES <= avail else ""
    return GuardError(f"{path.name} needs {gb(need)} in {dtype} ({count(n_params)} parameters) but this machine "
                      f"has {gb(avail)} free: refused before allocating{hint}")


def check_files(path: Path, files: list[Path], dtype: str = "float32", cfg: dict | None = None) -> tuple[int, int]:
    """Stage 1, without torch: refuse weights that cannot fit in free memory in `dtype`, and a config.json
    (`cfg`) whose hidden size is the width of none of the weights; returns the checkpoint's (parameters, bytes)."""
    if dtype not in DTYPE_BYTES:
        raise GuardError(f"dtype must be one of {', '.join(DTYPE_BYTES)}, got {dtype!r}")
    widths: set[int] = set()
    file_params, file_bytes = file_tensors(files, widths)
    hidden = next((cfg[k] for k in HIDDEN_KEYS if isinstance((cfg or {}).get(k), int)), None)
    if hidden is not None and widths and hidden not in widths:
        layers = next((cfg[k] for k in LAYER_KEYS if isinstance(cfg.get(k), int)), 1)
        guess = 12 * layers * hidden * hidden  # the usual estimate: 4 h^2 attention + 8 h^2 MLP per layer
        raise GuardError(
            f"{path}/config.json describes {layers} layers of width {hidden} (about {count(guess)} parameters, "
            f"{gb(guess * DTYPE_BYTES[dtype])} in {dtype}) but no tensor of its weights is {hidden} wide: they hold "
            f"{count(file_params)} parameters ({gb(file_bytes)}): refused before allocating (fix config.json or the weights)")
    need, avail = file_params * DTYPE_BYTES[dtype], available_memory()
    if need + RESERVE_BYTES > avail:
        raise _memory_error(path, file_params, need, file_params * 2, dtype, avail)
    return file_params, file_bytes


def check_config(path: Path, file_params: int, file_bytes: int, config, cls, dtype: str = "float32") -> LoadPlan:
    """Stage 2: the parameters `cls(config)` has (built on the meta device) against the checkpoint's and
    against free memory. Refuses (GuardError) a config that claims far more than the weights hold."""
    try:
        n_params, n_buffers = config_parameters(cls, config)
    except Exception as e:  # a config the class cannot even build: say so instead of allocating
        raise GuardError(f"{path}/config.json does not build a {cls.__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if n_params > file_params + file_params // 2 + MISMATCH_SLACK:
        raise GuardError(
            f"{path}/config.json describes a model of {count(n_params)} parameters "
            f"({gb(n_params * DTYPE_BYTES[dtype])} in {dtype}) but its weights hold {count(file_params)} "
            f"({gb(file_bytes)}): refused before allocating (fix config.json or the weights)")
    n = max(n_params, file_params)
    need, avail = n * DTYPE_BYTES[dtype] + n_buffers * 4, available_memory()
    if need + RESERVE_BYTES > avail:
        raise _memory_error(path, n, need, n * 2 + n_buffers * 4, dtype, avail)
    return LoadPlan(file_params, file_bytes, n_params, need, avail, dtype)


def check_load(path: Path, files: list[Path], config, cls, dtype: str = "float32") -> LoadPlan:
    """Both stages (model.load runs stage 1 before importing torch)."""
    file_params, file_bytes = check_files(path, files, dtype)
    return check_config(path, file_params, file_bytes, config, cls, dtype)


TRAINING_BYTES_PER_PARAMETER = 16  # float32 weights, gradients and AdamW's two moments


def check_training(n_params: int, what: str) -> int:
    """Refuse (GuardError) a training run whose model, gradients and optimizer state cannot fit in free
    memory (`n_params` counted on the meta device); returns the bytes they need."""
    need, avail = n_params * TRAINING_BYTES_PER_PARAMETER, available_memory()
    if need + RESERVE_BYTES > avail:
        raise GuardError(f"{what} has {count(n_params)} parameters: training needs {gb(need)} for weights, gradients and "
                         f"AdamW state but this machine has {gb(avail)} free: refused before allocating (choose fewer "
                         "layers or a smaller hidden size)")
    return need
