"""Any transformers language model: its class and task from transformers' own Auto mappings, and its
output head and final norm found in the loaded module (not from per-family tables).

    >>> choose_architecture("qwen2", ["Qwen2ForCausalLM"])      # doctest: +SKIP
    ('Qwen2ForCausalLM', 'causal-lm', [])

Task by mapping (first match wins, in the order of config.json's `architectures`):
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES   -> "causal-lm"
    MODEL_FOR_MASKED_LM_MAPPING_NAMES   -> "masked-lm"
    MODEL_FOR_PRETRAINING_MAPPING_NAMES -> "pretraining" when the class also has a sentence-pair head
                                           lmscope reads (NSP / SOP: model.capabilities.PAIR_KINDS)
    MODEL_MAPPING_NAMES                 -> "encoder" (the bare model: no head)
Any other head (a classifier, ELECTRA's discriminator...) loads the bare model of its type, with a warning.

The head and the norm are checked against the model's own forward at load time (model.load): a module
found here is used only when it reproduces the model's logits.
"""
from __future__ import annotations

import transformers
from torch import nn
from transformers.models.auto import modeling_auto as ma
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

from model.capabilities import PAIR_KINDS
from model.errors import LmscopeError

TASK_MAPPINGS = (
    (ma.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, "causal-lm"),
    (ma.MODEL_FOR_MASKED_LM_MAPPING_NAMES, "masked-lm"),
    (ma.MODEL_FOR_PRETRAINING_MAPPING_NAMES, "pretraining"),
    (ma.MODEL_MAPPING_NAMES, "encoder"),
)


class UnknownFamily(LmscopeError):
    """transformers has no language-model class for this config; the message says why."""


def _names(value) -> tuple[str, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) if value else ()


def known_type(model_type: str) -> bool:
    return model_type in CONFIG_MAPPING_NAMES


def choose_architecture(model_type: str, architectures: list | None) -> tuple[str, str, list[str]]:
    """(transformers class name, task, warnings) for a config's model_type and `architectures`."""
    if not known_type(model_type):
        raise UnknownFamily(f"transformers {transformers.__version__} knows no model_type {model_type!r}")
    archs = [a for a in (architectures or []) if isinstance(a, str)]
    for arch in archs:
        for mapping, task in TASK_MAPPINGS:
            if arch in _names(mapping.get(model_type)):
                if task == "pretraining" and arch not in PAIR_KINDS:
                    continue  # e.g. ELECTRA's discriminator: neither an LM head nor a pair head we read
                if hasattr(transformers, arch):
                    return arch, task, []
    base = next(iter(_names(ma.MODEL_MAPPING_NAMES.get(model_type))), None)
    if base is None or not hasattr(transformers, base):
        raise UnknownFamily(f"transformers has no bare model class for model_type {model_type!r}")
    warnings = [f"head {archs[0]} is not supported; loaded the bare encoder {base}"] if archs else []
    return base, "encoder", warnings


def head_modules(model: nn.Module) -> list[nn.Module]:
    """The modules of a model-with-head that are not its base model, in the order they were registered:
    for every LM head in transformers this is the order the forward applies them (lm_head; cls; head,
    drop, decoder; vocab_transform, activation, vocab_layer_norm, vocab_projector; ...)."""
    base = model.base_model
    if base is model:
        return []
    return [m for m in model.children() if m is not base]


def apply_head(mods: list[nn.Module], h):
    """hidden (..., hidden) -> (..., vocab) through `head_modules`."""
    for m in mods:
        h = m(h)
    return h


def norm_candidates(model: nn.Module) -> list[nn.Module]:
    """Normalisation modules of the base model outside its layer stack and its embeddings (the final
    norm of a pre-LN model is one of them: norm, ln_f, final_layer_norm, final_norm)."""
    base = model.base_model
    stack = next((m for m in base.modules() if isinstance(m, nn.ModuleList) and len(m) > 0), None)
    inside = {id(x) for x in stack.modules()} if stack is not None else set()
    emb = model.get_input_embeddings()
    out = []
    for name, m in base.named_modules():
        if id(m) in inside or m is emb or "embed" in name:
            continue
        if "norm" in type(m).__name__.lower() and not any(True for _ in m.children()):
            out.append(m)
    return out
