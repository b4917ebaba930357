"""Fine-tuning a pretrained model: a sequence classifier on labelled text, or more language-model training
on new text (domain adaptation), with the checkpoints, events and exact resume of pretraining.

    >>> cfg = FinetuneConfig(base="demo/bert", data="toy-agreement", out_dir="runs/bert-agree")  # doctest: +SKIP
    >>> record = finetune(cfg, callbacks=[print])                                                # doctest: +SKIP
    >>> record["heldout"]["accuracy"], record["majority_baseline"]                               # doctest: +SKIP

Classification: the base's transformers `AutoModelForSequenceClassification` class (BERT, RoBERTa,
ALBERT, DistilBERT, GPT-2), its encoder weights from the base and a new head, labels from the data
(`id2label` / `label2id` in config.json), a stratified held-out split, cross-entropy on the labels.
`freeze_layers=K` freezes the embeddings and the lowest K layers; `head_only` freezes the whole base.
LM (`task="lm"`): the base's own causal or masked LM objective on a corpus; the record holds the held-out
perplexity before and after. ELMo (not a transformers model) and ONNX exports are refused.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from model.classify import encode_texts, max_tokens, prepare_tokenizer
from model.train.config import TrainingError
from model.train.labelled import DataError, LabelledData, load_labelled, split_heldout
from model.train.lmdata import (
    MAX_BLOCKS,
    batch_indices,
    heldout_batches,
    lm_batch,
    lm_blocks,
    perplexity,
)
from model.train.loop import LoopSettings, open_run, run_loop

TASKS = ("classify", "lm")
LM_SEQ_LEN = 64
MAX_EVAL = 2000  # held-out examples evaluated


@dataclass
class FinetuneConfig:
    base: str
    data: str
    out_dir: str
    task: str = "classify"
    text_column: str = "text"
    label_column: str = "label"
    steps: int | None = None  # default: `epochs` passes over the training examples
    epochs: int = 5
    lr: float = 1e-4
    batch_size: int = 16
    freeze_layers: int = 0
    head_only: bool = False
    heldout_share: float = 0.2
    seed: int = 0
    checkpoint_every: int | None = None  # default: 5 checkpoints over the run
    eval_every: int | None = None  # default: 10 evaluations over the run
    threads: int | None = None
    resume: bool = False

    def validate(self) -> None:
        if self.task not in TASKS:
            raise TrainingError(f"unknown task {self.task!r}; choose classify or lm")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise TrainingError(f"--{name.replace('_', '-')} must be at least 1")
        if self.steps is not None and self.steps < 1:
            raise TrainingError("--steps must be at least 1")
        if not 0 < self.lr < 1:
            raise TrainingError(f"--lr must be in (0, 1), got {self.lr}")
        if self.freeze_layers < 0:
            raise TrainingError("--freeze-layers must be 0 or more")
        if not 0 < self.heldout_share < 1:
            raise TrainingError("the held-out share must be between 0 and 1")


def base_path(ref: str) -> tuple[Path, str, dict]:
    """(directory, display name, config) of a base model that can be fine-tuned; raises ValueError
    with the reason otherwise (ONNX export, ELMo, pickled weights, unknown type)."""
    from model.load import check_weights, read_config, resolve

    path, name = resolve(ref)
    if path.suffix == ".onnx":
        raise TrainingError(f"{name} is an ONNX export (inference only): fine-tune the model directory it was exported from")
    cfg = read_config(path)
    if cfg["model_type"] == "lmscope-elmo":
        raise TrainingError(f"{name} is an ELMo model (lmscope's own LSTM, not a transformers model): transformers has "
                            "no sequence-classification class for it; fine-tune a BERT, RoBERTa, ALBERT or GPT-2 model")
    check_weights(path)
    return path, name, cfg


def layer_modules(model) -> tuple[list[torch.nn.Module], list[torch.nn.Module]]:
    """(embedding modules, transformer layers bottom-up) of a transformers model's base."""
    base = getattr(model, model.base_model_prefix)
    if hasattr(base, "h"):  # GPT-2
        return [base.wte, base.wpe], list(base.h)
    if hasattr(base, "transformer") and hasattr(base.transformer, "layer"):  # DistilBERT
        return [base.embeddings], list(base.transformer.layer)
    if hasattr(base, "encoder") and hasattr(base.encoder, "layer"):  # BERT, RoBERTa
        return [base.embeddings], list(base.encoder.layer)
    raise TrainingError(f"{model.config.model_type} shares one layer's weights across all its layers "
                        "(ALBERT): freeze nothing or use --head-only")


def freeze(model, layers: int, head_only: bool) -> None:
    """Freeze the base entirely (head_only) or its embeddings and lowest `layers` layers."""
    if head_only:
        for p in getattr(model, model.base_model_prefix).parameters():
            p.requires_grad_(False)
        return
    if layers:
        emb, blocks = layer_modules(model)
        if layers > len(blocks):
            raise TrainingError(f"--freeze-layers {layers}: the model has only {len(blocks)} layers")
        for m in emb + blocks[:layers]:
            for p in m.parameters():
                p.requires_grad_(False)


def _settings(cfg: FinetuneConfig, steps: int) -> LoopSettings:
    return LoopSettings(steps=steps, lr=cfg.lr, warmup=max(1, steps // 10), seed=cfg.seed,
                        checkpoint_every=cfg.checkpoint_every or max(1, steps // 5),
                        eval_every=cfg.eval_every or max(1, steps // 10))


def _load_checked(cls, source: Path, **kw):
    """cls.from_pretrained with the loading report; refuses a base whose encoder weights are all missing."""
    try:
        model, info = cls.from_pretrained(str(source), local_files_only=True, use_safetensors=True,
                                          dtype=torch.float32, output_loading_info=True, **kw)
    except Exception as e:
        raise TrainingError(f"cannot load {source}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    prefix = model.base_model_prefix + "."
    base_keys = [k for k in model.state_dict() if k.startswith(prefix)]
    missing = [k for k in info.get("missing_keys", []) if k.startswith(prefix)]
    if base_keys and len(missing) == len(base_keys):
        raise TrainingError(f"{source} holds none of the {model.config.model_type} weights the fine-tuned model starts from")
    return model


def finetune(cfg: FinetuneConfig, callbacks: list[Callable[[dict], None]] = ()) -> dict:
    """Fine-tune (or resume); returns the training record (also OUT/training_record.json)."""
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    path, name, base_cfg = base_path(cfg.base)
    return (_classify if cfg.task == "classify" else _language_model)(cfg, path, name, base_cfg, callbacks)


def _config_dict(cfg: FinetuneConfig, path: Path) -> dict:
    d = asdict(cfg)
    d["base_path"] = str(path)
    return d


def _classify(cfg, path, name, base_cfg, callbacks) -> dict:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    data: LabelledData = load_labelled(cfg.data, cfg.text_column, cfg.label_column)
    train_idx, held_idx = split_heldout(data, cfg.heldout_share, cfg.seed)
    held_idx = held_idx[:MAX_EVAL]
    ids, labels = data.label_ids, data.labels_sorted
    run = open_run(cfg.out_dir, cfg.resume, _config_dict(cfg, path), data.fingerprint)
    source = run.checkpoint or path
    tok = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    torch.manual_seed(cfg.seed)  # the new head's initial weights
    model = _load_checked(AutoModelForSequenceClassification, source, num_labels=len(labels),
                          id2label=dict(enumerate(labels)), label2id={v: i for i, v in enumerate(labels)},
                          ignore_mismatched_sizes=True)
    model.config.problem_type = "single_label_classification"
    prepare_tokenizer(tok, model.config)
    freeze(model, cfg.freeze_layers, cfg.head_only)
    limit = max_tokens(model.config)
    y = torch.tensor(ids)
    steps = cfg.steps or cfg.epochs * math.ceil(len(train_idx) / cfg.batch_size)
    counts = {lab: sum(1 for i in train_idx if data.labels[i] == lab) for lab in labels}
    majority = max(labels, key=lambda lab: counts[lab])
    baseline = sum(1 for i in held_idx if data.labels[i] == majority) / len(held_idx)
    held_texts = [data.texts[i] for i in held_idx]
    held_y = y[held_idx]

    def step_loss(step: int) -> dict:
        idx = [train_idx[i] for i in batch_indices(len(train_idx), cfg.batch_size, step, cfg.seed)]
        out = model(**encode_texts(tok, [data.texts[i] for i in idx], limit), labels=y[idx])
        return {"loss": out.loss}

    def evaluate() -> dict:
        logits = torch.cat([model(**encode_texts(tok, held_texts[i:i + 64], limit)).logits
                            for i in range(0, len(held_texts), 64)])
        pred = logits.argmax(-1)
        confusion = torch.zeros(len(labels), len(labels), dtype=torch.long)
        confusion.index_put_((held_y, pred), torch.ones_like(pred), accumulate=True)
        return {"loss": float(torch.nn.functional.cross_entropy(logits, held_y)),
                "accuracy": float((pred == held_y).float().mean()), "confusion": confusion.tolist()}

    info = {"task": "classify", "base": name, "data": data.name, "labels": labels, "train_examples": len(train_idx),
            "heldout_examples": len(held_idx), "label_counts": counts, "majority_label": majority,
            "majority_baseline": baseline, "max_tokens": limit}
    return run_loop(run, model, tok, _settings(cfg, steps), step_loss, evaluate, callbacks, start_info=info,
                    per_step=cfg.batch_size)


def lm_class(model_type: str, architectures: list):
    """The transformers Auto class continuing a base's LM objective, or TrainingError when it has no LM head."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    from model.capabilities import CAUSAL_ARCHITECTURES, MLM_ARCHITECTURES

    if any(a in CAUSAL_ARCHITECTURES for a in architectures):
        return AutoModelForCausalLM, True
    if any(a in MLM_ARCHITECTURES for a in architectures):
        return AutoModelForMaskedLM, False
    raise TrainingError(f"the base ({model_type}, {architectures[0] if architectures else 'no head'}) has no language-model "
                        "head to continue training: use a masked-LM or causal-LM model")


def lm_data(corpus_ref: str, tok, length: int, masked: bool, seed: int, share: float = 0.1, limit: int = MAX_BLOCKS):
    """(train blocks, held-out blocks, corpus) from a corpus file or toyworld / pydoc; at most `limit`
    training blocks (a run of S steps of B blocks needs no more than S * B)."""
    from model.train.corpus import load_corpus
    from model.train.prepare import split_documents

    corpus = load_corpus(corpus_ref)
    train_docs, held_docs = split_documents(corpus.documents, share, seed)
    if not held_docs:
        raise DataError(f"{corpus.name} has {len(corpus.documents)} documents; at least 10 are needed to hold some out "
                        "(documents are separated by blank lines)")
    train = lm_blocks(tok, train_docs, length, masked, limit=limit)
    held = lm_blocks(tok, held_docs, length, masked, limit=128)
    if len(train) < 1 or len(held) < 1:
        raise DataError(f"{corpus.name} is too short: it fills no block of {length} tokens in its training and held-out parts")
    return train, held, corpus


def _language_model(cfg, path, name, base_cfg, callbacks) -> dict:
    from transformers import AutoConfig, AutoTokenizer

    cls, causal = lm_class(base_cfg["model_type"], base_cfg.get("architectures") or [])
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    length = min(LM_SEQ_LEN, max_tokens(AutoConfig.from_pretrained(str(path), local_files_only=True)))
    limit = min(MAX_BLOCKS, cfg.steps * cfg.batch_size) if cfg.steps else MAX_BLOCKS
    train, held, corpus = lm_data(cfg.data, tok, length, not causal, cfg.seed, limit=limit)
    run = open_run(cfg.out_dir, cfg.resume, _config_dict(cfg, path), corpus.fingerprint)
    model = _load_checked(cls, run.checkpoint or path)
    freeze(model, cfg.freeze_layers, cfg.head_only)
    batches = heldout_batches(held, tok, not causal, cfg.seed)
    info = {}
    if run.state is None:
        model.eval()
        info = {"task": "lm", "base": name, "data": corpus.name, "objective": "causal LM" if causal else "masked LM",
                "train_blocks": len(train), "heldout_blocks": len(held), "block_tokens": length,
                "heldout_before": perplexity(model, batches, causal)}
    steps = cfg.steps or cfg.epochs * math.ceil(len(train) / cfg.batch_size)

    def step_loss(step: int) -> dict:
        idx = batch_indices(len(train), cfg.batch_size, step, cfg.seed)
        return {"loss": model(**lm_batch(train, idx, tok, not causal, cfg.seed, step)).loss}

    return run_loop(run, model, tok, _settings(cfg, steps), step_loss, lambda: perplexity(model, batches, causal),
                    callbacks, start_info=info, unit="tokens", per_step=cfg.batch_size * length)
