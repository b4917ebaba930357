"""What a model is: `ModelInfo`, the plain description the Models page and `lmscope models` show, and
`LoadedModel`, a runnable model (backend + tokenizer + info). Torch-free: model.describe builds a ModelInfo
from the files alone, model.load and the backends from the loaded model, both through `model_info`.

    >>> m = load_model("demo/bert")                   # doctest: +SKIP
    >>> m.info.task, m.info.capabilities              # doctest: +SKIP
    ('pretraining', ('attention', 'hidden', 'lens', 'mlm', 'nsp'))
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.capabilities import unavailable_views

if TYPE_CHECKING:
    from model.backends.base import Backend


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """Plain description of a loaded model (what the Models page and `lmscope models` show).

    task: "masked-lm", "causal-lm", "pretraining" (MLM + NSP/SOP), "encoder" (no head) or "elmo".
    capabilities: sorted view names from model.capabilities.VIEWS; unavailable: view -> why not.
    """

    name: str
    path: str
    backend: str
    model_type: str
    architecture: str
    task: str
    num_layers: int
    num_heads: int
    hidden_size: int
    vocab_size: int
    max_positions: int | None
    num_parameters: int
    size_bytes: int
    capabilities: tuple[str, ...]
    unavailable: dict[str, str] = field(default_factory=dict)
    mask_token: str | None = None
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(kw_only=True)
class LoadedModel:
    """A runnable model. Shared read-only between sessions: never mutate it."""

    info: ModelInfo
    backend: Backend
    tokenizer: Any  # a transformers fast tokenizer

    @property
    def name(self) -> str:
        return self.info.name

    def has(self, capability: str) -> bool:
        return capability in self.info.capabilities


def model_info(*, name: str, path: str | Path, backend_kind: str, model_type: str, architecture: str, task: str,
               backend: Any, hidden_size: int, num_parameters: int, size_bytes: int, capabilities: set[str],
               tokenizer: Any, warnings: list[str]) -> ModelInfo:
    """The ModelInfo of a model: sizes from `backend` (anything with num_layers, num_heads, vocab_size and
    max_positions), the mask token from `tokenizer`, and why each view outside `capabilities` is unavailable."""
    unavailable = unavailable_views(name, model_type, task, capabilities)
    return ModelInfo(
        name=name, path=str(path), backend=backend_kind, model_type=model_type, architecture=architecture, task=task,
        num_layers=backend.num_layers, num_heads=backend.num_heads, hidden_size=hidden_size,
        vocab_size=backend.vocab_size, max_positions=backend.max_positions, num_parameters=int(num_parameters),
        size_bytes=int(size_bytes), capabilities=tuple(sorted(capabilities)), unavailable=unavailable,
        mask_token=getattr(tokenizer, "mask_token", None), warnings=tuple(warnings),
    )

