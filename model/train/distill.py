"""Knowledge distillation (Hinton et al. 2015): a smaller student of the teacher's family and tokenizer,
fitted to the teacher's softened distributions and to the data.

    loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * LM loss

over the positions the LM objective predicts (every next token for GPT-2; the masked 15% for BERT-like
models, teacher and student seeing the same masked input). alpha = 0 trains the same student on the data
alone: the baseline a distilled student is compared with. T^2 keeps the soft-target gradients on the
scale of the hard ones as T grows.

    >>> cfg = DistillConfig(teacher="demo/gpt2", corpus="toyworld", out_dir="runs/gpt2-student")  # doctest: +SKIP
    >>> distill(cfg)["heldout"]       # student perplexity, loss, top-1 agreement with the teacher  # doctest: +SKIP

The record holds both models' sizes, their measured inference speed on the same held-out batches, the
teacher's held-out perplexity and the student's, and how often their most probable tokens agree.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from model.train.config import TrainingError
from model.train.finetune import LM_SEQ_LEN, base_path, lm_class, lm_data
from model.train.labelled import DataError
from model.train.lmdata import (
    batch_indices,
    heldout_batches,
    lm_batch,
    predicted_logits,
)
from model.train.loop import LoopSettings, open_run, run_loop


@dataclass
class DistillConfig:
    teacher: str
    out_dir: str
    corpus: str = "toyworld"
    student: str | None = None  # start from this model (same tokenizer) instead of a fresh smaller one
    layers: int | None = None  # default: half the teacher's (at least 1)
    hidden: int | None = None
    heads: int | None = None
    steps: int = 500
    batch_size: int = 16
    lr: float = 1e-3
    temperature: float = 1.0  # measured: T = 1 gave the student a lower perplexity than T = 2 (docs/finetune.md)
    alpha: float = 0.5
    checkpoint_every: int | None = None
    eval_every: int | None = None
    seed: int = 0
    threads: int | None = None
    resume: bool = False

    def validate(self) -> None:
        if not 0 <= self.alpha <= 1:
            raise TrainingError(f"--alpha must be between 0 and 1, got {self.alpha}")
        if not self.temperature > 0:
            raise TrainingError(f"--temperature must be positive, got {self.temperature}")
        for name in ("steps", "batch_size", "layers", "hidden", "heads"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise TrainingError(f"--{name.replace('_', '-')} must be at least 1")
        if not 0 < self.lr < 1:
            raise TrainingError(f"--lr must be in (0, 1), got {self.lr}")


def student_config(teacher_cfg, layers: int | None, hidden: int | None, heads: int | None):
    """The teacher's config with fewer layers / a narrower width (defaults: half of each)."""
    cfg = teacher_cfg.__class__.from_dict(teacher_cfg.to_dict())
    hidden = hidden or max(8, teacher_cfg.hidden_size // 2)
    heads = heads or max(1, teacher_cfg.num_attention_heads // 2)
    if hidden % heads:
        raise TrainingError(f"--hidden {hidden} must be divisible by --heads {heads}")
    cfg.num_hidden_layers = layers or max(1, teacher_cfg.num_hidden_layers // 2)
    cfg.hidden_size, cfg.num_attention_heads = hidden, heads
    if hasattr(cfg, "intermediate_size"):
        cfg.intermediate_size = 4 * hidden
    if getattr(cfg, "n_inner", None):
        cfg.n_inner = 4 * hidden
    cfg.architectures = None
    return cfg


def same_tokenizer(a, b) -> bool:
    return a.get_vocab() == b.get_vocab() and a.all_special_tokens == b.all_special_tokens


def kd_loss(student_logits, teacher_logits, targets, temperature: float, alpha: float) -> dict:
    """{"loss", "kl", "lm_loss"}: logits are (positions, vocab), targets (positions,)."""
    lm = F.cross_entropy(student_logits, targets)
    if alpha == 0:
        return {"loss": lm, "lm_loss": lm.detach()}
    t = temperature
    kl = F.kl_div(F.log_softmax(student_logits / t, -1), F.log_softmax(teacher_logits / t, -1),
                  log_target=True, reduction="batchmean")
    return {"loss": alpha * t * t * kl + (1 - alpha) * lm, "kl": kl.detach(), "lm_loss": lm.detach()}


def _tokens_per_s(model, batches: list[dict], reps: int = 2) -> float:
    """Measured inference speed (forward passes over the held-out batches, best of `reps`)."""
    n = sum(b["input_ids"].numel() for b in batches)
    best = float("inf")
    with torch.no_grad():
        for _ in range(reps):
            t0 = time.perf_counter()
            for b in batches:
                model(input_ids=b["input_ids"])
            best = min(best, time.perf_counter() - t0)
    return n / best


def distill(cfg: DistillConfig, callbacks=()) -> dict:
    """Distill (or resume); returns the record (also OUT/training_record.json)."""
    from transformers import AutoConfig, AutoTokenizer

    from model.classify import max_tokens

    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t_path, t_name, t_cfg = base_path(cfg.teacher)
    cls, causal = lm_class(t_cfg["model_type"], t_cfg.get("architectures") or [])
    tok = AutoTokenizer.from_pretrained(str(t_path), local_files_only=True)
    s_path = None
    if cfg.student:
        s_path, s_name, s_cfg = base_path(cfg.student)
        s_tok = AutoTokenizer.from_pretrained(str(s_path), local_files_only=True)
        if not same_tokenizer(tok, s_tok):
            raise DataError(f"the teacher {t_name} and the student {s_name} use different tokenizers ({len(tok)} and "
                            f"{len(s_tok)} tokens): distillation compares their distributions token by token")
        if lm_class(s_cfg["model_type"], s_cfg.get("architectures") or [])[1] != causal:
            raise DataError(f"the teacher {t_name} and the student {s_name} are not both causal or both masked LMs")
    teacher_config = AutoConfig.from_pretrained(str(t_path), local_files_only=True)
    length = min(LM_SEQ_LEN, max_tokens(teacher_config))
    train, held, corpus = lm_data(cfg.corpus, tok, length, not causal, cfg.seed, limit=cfg.steps * cfg.batch_size)
    config = {**asdict(cfg), "teacher_path": str(t_path)}
    run = open_run(cfg.out_dir, cfg.resume, config, corpus.fingerprint)
    teacher = cls.from_pretrained(str(t_path), local_files_only=True, use_safetensors=True, dtype=torch.float32)
    teacher.eval().requires_grad_(False)
    torch.manual_seed(cfg.seed)  # the fresh student's initial weights
    if run.checkpoint is not None:
        student = cls.from_pretrained(str(run.checkpoint), local_files_only=True, use_safetensors=True, dtype=torch.float32)
    elif s_path is not None:
        student = cls.from_pretrained(str(s_path), local_files_only=True, use_safetensors=True, dtype=torch.float32)
    else:
        student = cls.from_config(student_config(teacher_config, cfg.layers, cfg.hidden, cfg.heads))
    batches = heldout_batches(held, tok, not causal, cfg.seed)
    with torch.no_grad():
        t_logits = [predicted_logits(teacher(input_ids=b["input_ids"]).logits, b["labels"], causal) for b in batches]
    t_loss = float(torch.cat([F.cross_entropy(lg, tg, reduction="none") for lg, tg in t_logits]).mean())
    n_t, n_s = (sum(p.numel() for p in m.parameters()) for m in (teacher, student))
    info = {"task": "distill", "teacher": t_name, "data": corpus.name, "objective": "causal LM" if causal else "masked LM",
            "teacher_parameters": n_t, "student_parameters": n_s, "size_ratio": n_s / n_t,
            "teacher_heldout": {"loss": t_loss, "perplexity": float(torch.tensor(t_loss).exp())},
            "train_blocks": len(train), "heldout_blocks": len(held), "block_tokens": length,
            "student_shape": {"layers": student.config.num_hidden_layers, "hidden": student.config.hidden_size,
                              "heads": student.config.num_attention_heads}}

    def step_loss(step: int) -> dict:
        b = lm_batch(train, batch_indices(len(train), cfg.batch_size, step, cfg.seed), tok, not causal, cfg.seed, step)
        s_lg, tg = predicted_logits(student(input_ids=b["input_ids"]).logits, b["labels"], causal)
        t_lg = None
        if cfg.alpha > 0:
            with torch.no_grad():
                t_lg, _ = predicted_logits(teacher(input_ids=b["input_ids"]).logits, b["labels"], causal)
        return kd_loss(s_lg, t_lg, tg, cfg.temperature, cfg.alpha)

    def evaluate() -> dict:
        losses, agree = [], []
        for b, (t_lg, _) in zip(batches, t_logits):
            s_lg, tg = predicted_logits(student(input_ids=b["input_ids"]).logits, b["labels"], causal)
            losses.append(F.cross_entropy(s_lg, tg, reduction="none"))
            agree.append(s_lg.argmax(-1) == t_lg.argmax(-1))
        loss = float(torch.cat(losses).mean())
        return {"loss": loss, "perplexity": float(torch.tensor(loss).exp()),
                "agreement": float(torch.cat(agree).float().mean())}

    def speed() -> dict:
        t_speed, s_speed = _tokens_per_s(teacher, batches[:4]), _tokens_per_s(student, batches[:4])
        return {"speed": {"teacher_tokens_per_s": t_speed, "student_tokens_per_s": s_speed, "speedup": s_speed / t_speed}}

    settings = LoopSettings(steps=cfg.steps, lr=cfg.lr, warmup=max(1, cfg.steps // 20), seed=cfg.seed,
                            checkpoint_every=cfg.checkpoint_every or max(1, cfg.steps // 5),
                            eval_every=cfg.eval_every or max(1, cfg.steps // 10))
    return run_loop(run, student, tok, settings, step_loss, evaluate, callbacks, start_info=info, record_extra=speed,
                    unit="tokens", per_step=cfg.batch_size * length)
