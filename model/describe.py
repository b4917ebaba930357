"""A model's description read from its files, without torch: what `load_model(ref).info` will say.

    >>> describe("demo/bert").num_parameters == load_model("demo/bert").info.num_parameters   # doctest: +SKIP
    True

The Models page shows this at once on a fresh server, while the warm-up thread still imports the engine,
and replaces it with the loaded model's description (which adds load warnings) when the load finishes.
Every field the page shows is computed the way `model.load` and the backends compute it (the capability
tables live in `model.capabilities`, shared with them); tests/model/test_describe.py checks equality on
every demo model, a tiny model of every architecture and an ONNX export.

What it reads:
    transformers folder   config.json (with the config classes' defaults for absent keys), the safetensors
                          headers (each tensor's dtype and shape, via model.modelfiles; sharded:
                          model.safetensors.index.json), tokenizer_config.json / special_tokens_map.json
                          for the mask token
    lmscope ELMo folder   config.json, model.safetensors header, tokenizer files
    lmscope ONNX export   FILE.lmscope.json (sizes, task, outputs, parameter count), FILE.head.onnx beside it

The parameter count is the checkpoint's (its floating-point tensors, known buffers aside) and must equal
the count the architecture has with that config (`expected_parameters`, a formula per family checked
against instantiated models in the tests): the loaded count is the model's parameters, whatever the file.
Anything it cannot be sure of raises `DescribeError` (the caller then waits for the real load), e.g. a
checkpoint whose tensors do not add up to what the architecture instantiates (extra heads, missing weights,
tied weights stored twice), a tokenizer class it does not know, or an ONNX graph without lmscope metadata.
This module must not import torch, transformers or anything that does (a test checks).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from model import capabilities as capmod
from model.errors import LmscopeError, ModelLoadError
from model.modelfiles import TOKENIZER_FILES, check_weights, checkpoint_parameters, dir_size, read_config, weight_files
from model.modelinfo import ModelInfo, model_info
from model.registry import resolve


class DescribeError(LmscopeError):
    """The description needs the model loaded (or the model will not load); the message says why."""


def describe(ref: str | os.PathLike, restrict: bool = False) -> ModelInfo:
    """The `ModelInfo` `load_model(ref, restrict=restrict)` would give (warnings aside: only those known
    before loading), read from the files alone. Raises DescribeError when that cannot be done."""
    try:
        path, name = resolve(ref, restrict)
        if path.suffix == ".onnx":
            return _describe_onnx(path, name)
        cfg = read_config(path)
        check_weights(path)
        if cfg["model_type"] == "lmscope-elmo":
            return _describe_elmo(path, cfg, name)
        return _describe_transformers(path, cfg, name)
    except ModelLoadError as e:
        raise DescribeError(str(e)) from None


# ---------------------------------------------------------------------------------------------------
# Config values as the transformers config classes report them.

# Defaults of the config classes (transformers 5) for the keys read here; a test compares them with
# `BertConfig()` etc. Keys absent from config.json take these values when transformers loads the config.
CONFIG_DEFAULTS: dict[str, dict[str, Any]] = {
    "bert": dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2, add_cross_attention=False),
    "roberta": dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2, add_cross_attention=False),
    "albert": dict(vocab_size=30000, embedding_size=128, hidden_size=4096, num_hidden_layers=12, num_hidden_groups=1,
                   num_attention_heads=64, intermediate_size=16384, inner_group_num=1, max_position_embeddings=512,
                   type_vocab_size=2),
    "distilbert": dict(vocab_size=30522, max_position_embeddings=512, n_layers=6, n_heads=12, dim=768, hidden_dim=3072),
    "gpt2": dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12, n_inner=None,
                 add_cross_attention=False),
}
COMMON_DEFAULTS: dict[str, Any] = {"tie_word_embeddings": True}
# The config classes' `attribute_map` (alias -> stored attribute).
ATTRIBUTE_MAPS: dict[str, dict[str, str]] = {
    "distilbert": {"hidden_size": "dim", "num_attention_heads": "n_heads", "num_hidden_layers": "n_layers"},
    "gpt2": {"hidden_size": "n_embd", "max_position_embeddings": "n_positions", "num_attention_heads": "n_head",
             "num_hidden_layers": "n_layer"},
}


def config_getter(cfg: dict[str, Any]) -> Callable[[str], Any]:
    """key -> the value `getattr(AutoConfig.from_pretrained(dir), key)` gives for this config.json."""
    mt = cfg["model_type"]
    amap = ATTRIBUTE_MAPS.get(mt, {})
    defaults = CONFIG_DEFAULTS[mt]

    def get(key: str) -> Any:
        if key == "num_labels":  # a config's id2label decides its label count, else num_labels, else 2
            return len(cfg["id2label"]) if isinstance(cfg.get("id2label"), dict) else int(cfg.get("num_labels") or 2)
        stored = amap.get(key, key)
        names = [stored] + [alias for alias, target in amap.items() if target == stored]
        given = [cfg[n] for n in names if n in cfg]
        if len({json.dumps(v, sort_keys=True) for v in given}) > 1:
            raise DescribeError(f"config.json gives {stored} twice, differently ({', '.join(n for n in names if n in cfg)})")
        if given:
            return given[0]
        if stored in defaults:
            return defaults[stored]
        if key in COMMON_DEFAULTS:
            return COMMON_DEFAULTS[key]
        raise DescribeError(f"config.json has no {key} (and no default is known here)")

    return get


def expected_parameters(arch: str, cfg: dict[str, Any]) -> int | None:
    """What `sum(p.numel() for p in cls(config).parameters())` gives for transformers class `arch`, or None
    for a configuration this formula does not model (cross-attention, untypical shapes)."""
    get = config_getter(cfg)
    mt = cfg["model_type"]
    V, H, L = int(get("vocab_size")), int(get("hidden_size")), int(get("num_hidden_layers"))
    P, heads = int(get("max_position_embeddings")), int(get("num_attention_heads"))
    tie = bool(get("tie_word_embeddings"))
    if not heads or H % heads:
        return None

    def lin(i: int, o: int, bias: bool = True) -> int:
        return i * o + (o if bias else 0)

    def norm(n: int) -> int:
        return 2 * n

    if mt in ("bert", "roberta"):
        if get("add_cross_attention"):
            return None
        T, inter = int(get("type_vocab_size")), int(get("intermediate_size"))
        base = V * H + P * H + T * H + norm(H) + L * (4 * lin(H, H) + norm(H) + lin(H, inter) + lin(inter, H) + norm(H))
        pooler = lin(H, H)
        # dense + LayerNorm, then the decoder (weight tied to the embedding, bias tied to the head's bias)
        mlm = lin(H, H) + norm(H) + V + (0 if tie else V * H + V)
        return {"BertModel": base + pooler, "RobertaModel": base + pooler, "BertForMaskedLM": base + mlm,
                "RobertaForMaskedLM": base + mlm, "BertForPreTraining": base + pooler + mlm + lin(H, 2)}.get(arch)
    if mt == "albert":
        E, T, inter = int(get("embedding_size")), int(get("type_vocab_size")), int(get("intermediate_size"))
        groups, inner = int(get("num_hidden_groups")), int(get("inner_group_num"))
        layer = norm(H) + 4 * lin(H, H) + norm(H) + lin(H, inter) + lin(inter, H)
        base = V * E + P * E + T * E + norm(E) + lin(E, H) + groups * inner * layer
        pooler = lin(H, H)
        mlm = norm(E) + V + lin(H, E) + (0 if tie else E * V + V)
        return {"AlbertModel": base + pooler, "AlbertForMaskedLM": base + mlm,
                "AlbertForPreTraining": base + pooler + mlm + lin(H, int(get("num_labels")))}.get(arch)
    if mt == "distilbert":
        inter = int(get("hidden_dim"))
        base = V * H + P * H + norm(H) + L * (4 * lin(H, H) + norm(H) + lin(H, inter) + lin(inter, H) + norm(H))
        mlm = lin(H, H) + norm(H) + V + (0 if tie else V * H)
        return {"DistilBertModel": base, "DistilBertForMaskedLM": base + mlm}.get(arch)
    if mt == "gpt2":
        if get("add_cross_attention"):
            return None
        inter = int(get("n_inner") or 4 * H)
        base = V * H + P * H + L * (norm(H) + lin(H, 3 * H) + lin(H, H) + norm(H) + lin(H, inter) + lin(inter, H)) + norm(H)
        return {"GPT2Model": base, "GPT2LMHeadModel": base + (0 if tie else V * H)}.get(arch)
    return None


# ---------------------------------------------------------------------------------------------------
# The mask token, as the tokenizer transformers loads will report it.

# AutoTokenizer's class for a model type when tokenizer_config.json names none (TOKENIZER_MAPPING_NAMES)
TOKENIZER_CLASS_BY_TYPE = {"bert": "BertTokenizer", "distilbert": "BertTokenizer", "roberta": "RobertaTokenizer",
                           "albert": "AlbertTokenizer", "gpt2": "GPT2Tokenizer"}
# The `mask_token` default of each tokenizer class's __init__ (a test reads them from the classes)
DEFAULT_MASK_TOKEN = {"BertTokenizer": "[MASK]", "DistilBertTokenizer": "[MASK]", "RobertaTokenizer": "<mask>",
                      "AlbertTokenizer": "[MASK]", "GPT2Tokenizer": None}
GENERIC_TOKENIZERS = {"TokenizersBackend", "PreTrainedTokenizer", "PreTrainedTokenizerFast", "PythonBackend"}


def _read_json(f: Path) -> dict[str, Any] | None:
    if not f.is_file():
        return None
    try:
        d = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise DescribeError(f"{f} is not valid JSON") from None
    if not isinstance(d, dict):
        raise DescribeError(f"{f} is not a JSON object")
    return d


def _token(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    if isinstance(value, str):
        return value
    raise DescribeError(f"unreadable special token {value!r}")


def mask_token(folder: Path, model_type: str | None, config: dict[str, Any] | None = None,
               tokenizer_class: str | None = None) -> str | None:
    """`tok.mask_token` of the tokenizer loaded from `folder`: by AutoTokenizer (its class chosen from
    tokenizer_config.json, then config.json, then the model type), or by `tokenizer_class` when given
    (e.g. "TokenizersBackend" for PreTrainedTokenizerFast.from_pretrained)."""
    tc = _read_json(folder / "tokenizer_config.json") or {}
    # transformers merges the legacy special_tokens_map.json over tokenizer_config.json unless the latter
    # has the (newer) added_tokens_decoder
    stm = None if "added_tokens_decoder" in tc else _read_json(folder / "special_tokens_map.json")
    if stm is not None and "mask_token" in stm:
        return _token(stm["mask_token"])
    if "mask_token" in tc:
        return _token(tc["mask_token"])
    cls = tokenizer_class or tc.get("tokenizer_class") or (config or {}).get("tokenizer_class") \
        or TOKENIZER_CLASS_BY_TYPE.get(model_type or "")
    if not isinstance(cls, str):
        raise DescribeError(f"cannot tell which tokenizer class loads {folder}")
    short = cls if cls == "PreTrainedTokenizerFast" else cls.removesuffix("Fast")
    if short in GENERIC_TOKENIZERS:
        return None
    if short in DEFAULT_MASK_TOKEN:
        return DEFAULT_MASK_TOKEN[short]
    raise DescribeError(f"tokenizer class {cls} is not known here: its mask token needs it loaded")


def _check_tokenizer_files(folder: Path) -> None:
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise DescribeError(f"{folder} has no tokenizer files")


# ---------------------------------------------------------------------------------------------------
# The three kinds of model.


def _describe_transformers(path: Path, cfg: dict[str, Any], name: str) -> ModelInfo:
    if cfg["model_type"] not in CONFIG_DEFAULTS:  # any other family: its class and head come from the load
        raise DescribeError(f"a {cfg['model_type']} model is described once it is loaded")
    _check_tokenizer_files(path)
    arch, warnings = capmod.choose_architecture(cfg["model_type"], cfg.get("architectures"))
    get = config_getter(cfg)
    n_file = checkpoint_parameters(weight_files(path))
    n_model = expected_parameters(arch, cfg)
    if n_model is None:
        raise DescribeError(f"the parameter count of {arch} with this config.json needs the model loaded")
    if n_model != n_file:
        raise DescribeError(f"{path}'s weights hold {n_file:,} parameters and {arch} has {n_model:,}: "
                            "the load will tell which are missing or unused")
    num_heads = int(get("num_attention_heads") or 0)
    caps, task = capmod.transformers_capabilities(arch, num_heads)
    backend = SimpleNamespace(num_layers=int(get("num_hidden_layers") or 0), num_heads=num_heads,
                              vocab_size=int(get("vocab_size")), max_positions=get("max_position_embeddings") or None)
    tok = SimpleNamespace(mask_token=mask_token(path, cfg["model_type"], cfg))
    return model_info(name=name, path=path, backend_kind="torch", model_type=cfg["model_type"], architecture=arch,
                      task=task, backend=backend, hidden_size=int(get("hidden_size") or 0), num_parameters=n_model,
                      size_bytes=dir_size(path), capabilities=caps, tokenizer=tok, warnings=warnings)


# ElmoConfig's defaults (model/train/elmo.py imports torch; a test compares these with it)
ELMO_DEFAULTS = dict(embed_dim=256, hidden_dim=512, num_layers=2, max_positions=512)


def elmo_parameters(vocab: int, embed: int, hidden: int, layers: int) -> int:
    """ElmoLM's parameter count: the embedding (the tied softmax), two stacks of LSTM + projection
    layers, the layer-mix weights and gamma."""
    lstm = 4 * hidden * embed + 4 * hidden * hidden + 8 * hidden
    return vocab * embed + 2 * layers * (lstm + hidden * embed + embed) + (layers + 1) + 1


def _describe_elmo(path: Path, cfg: dict[str, Any], name: str) -> ModelInfo:
    c = {**ELMO_DEFAULTS, **{k: v for k, v in cfg.items() if k in (*ELMO_DEFAULTS, "vocab_size")}}
    if "vocab_size" not in c:
        raise DescribeError(f"{path}/config.json has no vocab_size")
    if cfg.get("char_cnn"):  # elmo_parameters counts an embedding table, not a character CNN
        raise DescribeError(f"{path} is a character-input ELMo: its size comes from the load")
    n_file = checkpoint_parameters([path / "model.safetensors"])
    n_model = elmo_parameters(int(c["vocab_size"]), int(c["embed_dim"]), int(c["hidden_dim"]), int(c["num_layers"]))
    if n_file != n_model:
        raise DescribeError(f"{path}'s weights hold {n_file:,} parameters, its config.json describes {n_model:,}")
    backend = SimpleNamespace(num_layers=c["num_layers"], num_heads=0, vocab_size=c["vocab_size"],
                              max_positions=c["max_positions"])
    tok = SimpleNamespace(mask_token=mask_token(path, None, cfg, tokenizer_class="PreTrainedTokenizerFast"))
    return model_info(name=name, path=path, backend_kind="elmo", model_type="lmscope-elmo", architecture="ElmoLM",
                      task="elmo", backend=backend, hidden_size=int(cfg.get("hidden_size", 0)), num_parameters=n_model,
                      size_bytes=dir_size(path), capabilities=set(capmod.ELMO_CAPABILITIES), tokenizer=tok,
                      warnings=[])


def _describe_onnx(path: Path, name: str) -> ModelInfo:
    from dataclasses import replace

    if not path.is_file():
        raise DescribeError(f"no such ONNX file: {path}")
    stem = path.name[: -len(".onnx")]
    meta = _read_json(path.with_name(stem + ".lmscope.json"))
    if meta is None or meta.get("format") != capmod.ONNX_FORMAT:
        raise DescribeError(f"{path.name} has no lmscope metadata: what it holds is read from the graph")
    if meta.get("onnx_bytes") is not None and path.stat().st_size != int(meta["onnx_bytes"]):
        raise DescribeError(f"{path} does not have the size its export wrote")
    _check_tokenizer_files(path.parent)
    for key in ("model_type", "architecture", "task", "outputs", "num_layers", "vocab_size", "hidden_size",
                "num_parameters"):
        if not meta.get(key):
            raise DescribeError(f"{path.name}'s metadata has no {key}")
    layout = capmod.infer_layout({o: 0 for o in meta["outputs"]})
    layout = replace(layout, pair_kind=meta.get("pair_kind") or layout.pair_kind)
    head_meta, head_path = meta.get("head"), None
    if head_meta:
        head_path = path.with_name(head_meta["file"])
        if not head_path.is_file():
            head_path = None
        elif head_meta.get("bytes") is not None and head_path.stat().st_size != int(head_meta["bytes"]):
            raise DescribeError(f"{head_path} does not have the size its export wrote")
    if capmod.logits_from_head_graph(layout, head_path is not None):
        layout = replace(layout, logits=None)  # the loader prunes the graph's logits and uses the head graph
    num_heads = int(meta.get("num_heads") or 0)
    if layout.attentions and not num_heads:
        raise DescribeError(f"{path.name}'s metadata has no num_heads")
    cfg = meta.get("config") or {}
    max_positions = meta.get("max_positions") or cfg.get("max_position_embeddings") or cfg.get("n_positions")
    if not max_positions:
        raise DescribeError(f"{path.name}'s metadata has no max_positions")
    task = meta["task"]
    caps, reasons = capmod.onnx_capabilities(layout, task, name, num_heads=num_heads,
                                             has_lm_head=head_path is not None or layout.logits is not None,
                                             has_head_graph=head_path is not None, pair_kind=layout.pair_kind)
    backend = SimpleNamespace(num_layers=int(meta["num_layers"]), num_heads=num_heads, vocab_size=int(meta["vocab_size"]),
                              max_positions=int(max_positions))
    beside = _read_json(path.parent / "config.json") or {}  # what AutoTokenizer reads in that folder
    tok = SimpleNamespace(mask_token=mask_token(path.parent, beside.get("model_type"), beside))
    warnings = [] if head_path is not None or not head_meta else [capmod.missing_head_warning(head_meta["file"])]
    decoder_meta = meta.get("decoder")
    if decoder_meta and not path.with_name(decoder_meta["file"]).is_file():
        warnings.append(capmod.missing_decoder_warning(decoder_meta["file"]))
    size = path.stat().st_size + (head_path.stat().st_size if head_path is not None else 0)
    info = model_info(name=name, path=path, backend_kind="onnx", model_type=meta["model_type"],
                      architecture=meta["architecture"], task=task, backend=backend,
                      hidden_size=int(meta["hidden_size"]), num_parameters=int(meta["num_parameters"]), size_bytes=size,
                      capabilities=caps, tokenizer=tok, warnings=warnings)
    return replace(info, unavailable={**info.unavailable, **{k: v for k, v in reasons.items() if k not in caps}})
