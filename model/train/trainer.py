"""The training loop: one config dataclass, events for the CLI and the app, atomic checkpoints, exact resume.

    >>> cfg = TrainConfig(arch="gpt2", corpus="toyworld", out_dir="runs/gpt2-tiny", preset="tiny")  # doctest: +SKIP
    >>> train(cfg, callbacks=[print])                                                           # doctest: +SKIP

What goes on disk (OUT = cfg.out_dir):
    OUT/events.jsonl                 one JSON object per line: start, step, eval, checkpoint, done|stopped|error
    OUT/checkpoints/step-0000100/    model + tokenizer + trainer_state.pt (optimizer, scheduler, RNG, step)
    OUT/config.json, model.safetensors, tokenizer files   the final model (plain transformers can load it)
    OUT/training_record.json         config, corpus fingerprint, steps, losses, held-out metrics, baselines

Exactness: the examples of step s and their masks are pure functions of (seed, s) (see data.py), and a
checkpoint holds the optimizer, scheduler and RNG state, so a run killed at any point and resumed ends
with the same weights as one that never stopped. Runs under `torchrun --nproc_per_node=N` with
DistributedDataParallel (gloo on CPU); rank 0 writes every file.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from model.train import data as D
from model.train.corpus import Corpus, CorpusError, load_corpus
from model.train.tokenizer import train_tokenizer

ARCHS = ("bert", "roberta", "albert", "gpt2", "elmo")


@dataclass(frozen=True)
class Preset:
    layers: int
    hidden: int
    heads: int
    vocab_size: int
    seq_len: int
    batch_size: int
    steps: int
    lr: float
    warmup: int


PRESETS = {
    # tests and a first look: seconds on a laptop CPU
    "tiny": Preset(layers=2, hidden=64, heads=2, vocab_size=1000, seq_len=32, batch_size=16, steps=200, lr=2e-3, warmup=20),
    # the demo models: 4 x 256 like the measured reference; short sequences and many small steps are what
    # made BERT leave the "most frequent token" plateau at this scale
    "small": Preset(layers=4, hidden=256, heads=4, vocab_size=2000, seq_len=64, batch_size=32, steps=3000, lr=1e-3, warmup=200),
}


@dataclass
class TrainConfig:
    arch: str  # bert | roberta | albert | gpt2 | elmo
    out_dir: str
    corpus: str = "toyworld"  # a .txt / .jsonl path, or "toyworld" / "pydoc"
    preset: str = "tiny"
    # None = the preset's value
    steps: int | None = None
    batch_size: int | None = None
    seq_len: int | None = None
    lr: float | None = None
    warmup: int | None = None
    layers: int | None = None
    heads: int | None = None
    hidden: int | None = None
    vocab_size: int | None = None
    weight_decay: float = 0.01  # AdamW's usual value for transformers
    grad_clip: float = 1.0  # keeps early steps of small models stable
    seed: int = 0
    checkpoint_every: int = 500
    keep_last: int = 5  # checkpoints kept for the app's training-history slider
    eval_every: int = 250
    eval_batches: int = 8
    mlm_probability: float = 0.3  # above BERT's 15%: at this scale it learns faster (measured)
    whole_word: bool = False
    dynamic_masking: bool | None = None  # None: RoBERTa dynamic, BERT/ALBERT static (as published)
    heldout_share: float = 0.02
    threads: int | None = None  # torch threads; None = all cores
    bf16: bool = False  # autocast matmuls to bfloat16 (fast on AVX-512 CPUs)
    resume: bool = False

    def resolved(self) -> "TrainConfig":
        if self.arch not in ARCHS:
            raise ValueError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHS)}")
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        p = asdict(PRESETS[self.preset])
        filled = {k: (getattr(self, k) if getattr(self, k) is not None else p[k]) for k in p}
        dyn = self.dynamic_masking if self.dynamic_masking is not None else self.arch == "roberta"
        cfg = replace(self, dynamic_masking=dyn, **filled)
        for name in ("steps", "batch_size", "seq_len", "layers", "heads", "hidden", "vocab_size"):
            if getattr(cfg, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if cfg.hidden % cfg.heads:
            raise ValueError(f"hidden size {cfg.hidden} must be divisible by the number of heads {cfg.heads}")
        if cfg.seq_len < 8 or cfg.seq_len > 4096:
            raise ValueError("seq_len must be between 8 and 4096")
        if not 0 < cfg.lr:
            raise ValueError("lr must be positive")
        if not 0 < cfg.mlm_probability < 1:
            raise ValueError("mlm_probability must be in (0, 1)")
        return cfg


class TrainingError(ValueError):
    """Training stopped because of something the user can fix (a bad corpus, a diverging run)."""


# ---------------------------------------------------------------------------------------------------
# Model construction


def build_model(cfg: TrainConfig, tok) -> torch.nn.Module:
    import transformers as T

    from model.train.elmo import ElmoConfig, ElmoLM

    v, h, l, a, n = len(tok), cfg.hidden, cfg.layers, cfg.heads, cfg.seq_len
    common = dict(hidden_size=h, num_hidden_layers=l, num_attention_heads=a, intermediate_size=4 * h,
                  vocab_size=v, pad_token_id=tok.pad_token_id)
    torch.manual_seed(cfg.seed)
    if cfg.arch == "bert":
        m = T.BertForPreTraining(T.BertConfig(max_position_embeddings=n, **common))
    elif cfg.arch == "roberta":
        m = T.RobertaForMaskedLM(T.RobertaConfig(max_position_embeddings=n + 2, bos_token_id=tok.bos_token_id,
                                                 eos_token_id=tok.eos_token_id, **common))
    elif cfg.arch == "albert":
        # factorized embeddings: vocab -> embedding_size -> hidden; one layer's weights shared by all layers
        m = T.AlbertForPreTraining(T.AlbertConfig(embedding_size=max(32, h // 2), max_position_embeddings=n, **common))
    elif cfg.arch == "gpt2":
        m = T.GPT2LMHeadModel(T.GPT2Config(vocab_size=v, n_embd=h, n_layer=l, n_head=a, n_positions=n,
                                           bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id))
    else:
        return ElmoLM(ElmoConfig(vocab_size=v, embed_dim=h, hidden_dim=2 * h, num_layers=2, max_positions=4096))
    m.config._attn_implementation = "sdpa"  # training needs no attention weights; inspection records its own
    return m


def forward_loss(model, arch: str, batch: dict) -> torch.Tensor:
    if arch == "elmo":
        return _elmo_loss(model, batch)
    if arch == "gpt2":
        return model(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss
    kw = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    if arch == "bert":
        kw.update(token_type_ids=batch["token_type_ids"], next_sentence_label=batch["pair_labels"])
    elif arch == "albert":
        kw.update(token_type_ids=batch["token_type_ids"], sentence_order_label=batch["pair_labels"])
    return model(**kw).loss


# ---------------------------------------------------------------------------------------------------


@dataclass
class Prepared:
    tok: object
    train: dict[str, torch.Tensor]
    heldout: dict[str, torch.Tensor]
    unigram_loss: float  # held-out cross-entropy (nats) of a unigram model fitted on the training split
    corpus: Corpus


def prepare(cfg: TrainConfig, tok=None) -> Prepared:
    """Corpus -> tokenizer -> train / held-out example tensors. Raises CorpusError before anything is written."""
    corpus = load_corpus(cfg.corpus)
    docs = corpus.documents
    g = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(docs), generator=g).tolist()
    n_held = max(2, int(len(docs) * cfg.heldout_share)) if len(docs) >= 20 else 0
    held_docs = [docs[i] for i in order[:n_held]]
    train_docs = [docs[i] for i in order[n_held:]] or docs
    if tok is None:
        positions = cfg.seq_len
        tok = train_tokenizer(cfg.arch, (s for d in train_docs for s in d), cfg.vocab_size, max_length=positions)
    build = _builder(cfg, tok)
    train_ids = D.tokenize_documents(tok, train_docs, cfg.arch)
    train = build(train_ids, cfg.seed)
    n_needed = cfg.batch_size
    if train["input_ids"].shape[0] < n_needed:
        raise CorpusError(f"the corpus gives {train['input_ids'].shape[0]} training examples of {cfg.seq_len} tokens; "
                          f"one batch needs {n_needed}")
    if held_docs:
        try:
            heldout = build(D.tokenize_documents(tok, held_docs, cfg.arch), cfg.seed + 1)
        except (CorpusError, ValueError):
            heldout = {k: v[-cfg.batch_size:] for k, v in train.items()}
    else:
        heldout = {k: v[-cfg.batch_size:] for k, v in train.items()}
    counts = torch.bincount(train["input_ids"].reshape(-1), minlength=len(tok)).float() + 1.0
    special = torch.tensor(tok.all_special_ids)
    counts[special] = 1.0
    logp = (counts / counts.sum()).log()
    held = heldout["input_ids"].reshape(-1)
    held = held[~torch.isin(held, special)]
    unigram = float(-logp[held].mean()) if held.numel() else float("nan")
    return Prepared(tok, train, heldout, unigram, corpus)


def _builder(cfg: TrainConfig, tok) -> Callable:
    n = cfg.seq_len
    if cfg.arch in ("gpt2", "elmo"):
        return lambda docs, seed: D.packed_blocks(docs, n, tok.eos_token_id)
    if cfg.arch == "roberta":
        return lambda docs, seed: D.full_sentences(docs, n, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    kind = "nsp" if cfg.arch == "bert" else "sop"
    return lambda docs, seed: D.sentence_pairs(docs, n, tok.cls_token_id, tok.sep_token_id, tok.pad_token_id, kind, seed)


def make_batch(cfg: TrainConfig, prep: Prepared, step: int, rows: torch.Tensor, examples: dict) -> dict:
    batch = {k: v[rows] for k, v in examples.items()}
    if cfg.arch in ("bert", "roberta", "albert"):
        m = D.apply_mlm(batch, prep.tok, arch=cfg.arch, step=step, seed=cfg.seed, mlm_probability=cfg.mlm_probability,
                        dynamic=cfg.dynamic_masking, whole_word=cfg.whole_word, example_index=rows)
        batch["input_ids"], batch["labels"] = m.input_ids, m.labels
    return batch


# ---------------------------------------------------------------------------------------------------
# Files


class Run:
    """Files of one run directory. Only rank 0 writes."""

    def __init__(self, out: Path, rank: int = 0):
        self.out, self.rank = out, rank
        self.ckpt = out / "checkpoints"
        self.events = out / "events.jsonl"

    def emit(self, event: dict, callbacks) -> None:
        event = {"time": time.time(), **event}
        for cb in callbacks:
            cb(event)
        if self.rank == 0:
            with open(self.events, "a", encoding="utf-8") as f:
                f.write(json.dumps(event) + "\n")

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (a checkpoint exists only once renamed into place)."""
        if not self.ckpt.is_dir():
            return []
        return sorted(p for p in self.ckpt.iterdir() if p.is_dir() and p.name.startswith("step-")
                      and (p / "trainer_state.pt").is_file())

    def clean_temp(self) -> None:
        for parent in (self.out, self.ckpt):
            if parent.is_dir():
                for p in parent.iterdir():
                    if p.name.startswith(".tmp"):
                        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    for f in path.iterdir():
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())


def save_model_dir(model, tok, path: Path) -> None:
    inner = model.module if hasattr(model, "module") else model
    inner.save_pretrained(path)
    tok.save_pretrained(path)


def write_checkpoint(run: Run, model, tok, opt, sched, step: int, keep_last: int) -> Path:
    """Write into a temp dir beside the target, fsync, then rename: a checkpoint is either whole or absent."""
    run.ckpt.mkdir(parents=True, exist_ok=True)
    final = run.ckpt / f"step-{step:07d}"
    tmp = run.ckpt / f".tmp-step-{step:07d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_model_dir(model, tok, tmp)
        state = {"step": step, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "rng_cpu": torch.get_rng_state()}
        torch.save(state, tmp / "trainer_state.pt")
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # e.g. disk full: the previous checkpoint stays intact
        raise
    for old in run.checkpoints()[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _load_model_weights(model, path: Path) -> None:
    from safetensors.torch import load_file

    inner = model.module if hasattr(model, "module") else model
    state = load_file(str(path / "model.safetensors"))
    missing, unexpected = inner.load_state_dict(state, strict=False)
    bad = [k for k in missing if not _is_tied(inner, k)]
    if bad or unexpected:
        raise TrainingError(f"checkpoint {path} does not match the model ({len(bad)} missing, {len(unexpected)} unexpected weights)")


def _is_tied(model, key: str) -> bool:
    tied = getattr(model, "_tied_weights_keys", None) or {}
    return key in tied or any(key.endswith(k) for k in ("decoder.weight", "decoder.bias", "lm_head.weight"))


# ---------------------------------------------------------------------------------------------------
# The loop


def _lr_lambda(warmup: int, total: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))
    return f


class _StopFlag:
    def __init__(self):
        self.stop = False

    def __call__(self, *_):
        self.stop = True


@torch.no_grad()
def evaluate(model, cfg: TrainConfig, prep: Prepared) -> dict:
    """Held-out loss, perplexity, masked-token top-1 (MLM) and pair accuracy (NSP / SOP), fixed masks."""
    model.eval()
    ex = prep.heldout
    n = ex["input_ids"].shape[0]
    losses, correct, total, pair_ok, pair_n = [], 0, 0, 0, 0
    inner = model.module if hasattr(model, "module") else model
    for b in range(min(cfg.eval_batches, max(1, math.ceil(n / cfg.batch_size)))):
        rows = torch.arange(b * cfg.batch_size, min(n, (b + 1) * cfg.batch_size))
        if len(rows) == 0:
            break
        batch = make_batch(replace(cfg, dynamic_masking=True, seed=cfg.seed + 99), prep, 10_000_000 + b, rows, ex)
        if cfg.arch == "elmo":
            losses.append(float(inner.loss(batch["input_ids"])))
            continue
        if cfg.arch == "gpt2":
            losses.append(float(inner(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss))
            continue
        kw = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        if "token_type_ids" in batch:
            kw["token_type_ids"] = batch["token_type_ids"]
        out = inner(**kw)
        logits = out.logits if hasattr(out, "logits") else out.prediction_logits
        sel = batch["labels"] != -100
        losses.append(float(torch.nn.functional.cross_entropy(logits[sel], batch["labels"][sel])))
        correct += int((logits[sel].argmax(-1) == batch["labels"][sel]).sum())
        total += int(sel.sum())
        rel = getattr(out, "seq_relationship_logits", None)
        rel = rel if rel is not None else getattr(out, "sop_logits", None)
        if rel is not None:
            pair_ok += int((rel.argmax(-1) == batch["pair_labels"]).sum())
            pair_n += len(rows)
    model.train()
    loss = sum(losses) / len(losses)
    res = {"loss": loss, "perplexity": math.exp(min(loss, 50)), "unigram_loss": prep.unigram_loss,
           "unigram_perplexity": math.exp(min(prep.unigram_loss, 50)),
           "plateau": bool(loss > prep.unigram_loss - 0.1)}
    if total:
        res["accuracy"] = correct / total
    if pair_n:
        res["pair_accuracy"] = pair_ok / pair_n
    return res


def train(cfg: TrainConfig, callbacks: list[Callable[[dict], None]] = (), prepared: Prepared | None = None) -> dict:
    """Train (or resume) and return the training record. Raises TrainingError / CorpusError / ValueError
    with a clear message for problems a user can fix."""
    cfg = cfg.resolved()
    out = Path(cfg.out_dir)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = Run(out, rank)
    existing = run.checkpoints()
    if not cfg.resume and out.exists() and (existing or (out / "config.json").exists()):
        raise TrainingError(f"{out} already holds a trained model or checkpoints; use --resume to continue it or choose a new --out")
    if cfg.resume and not existing:
        raise TrainingError(f"nothing to resume in {out}: no complete checkpoint under {run.ckpt}")

    # Everything that can fail on bad input happens before the first file is written.
    tok = None
    if cfg.resume:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(existing[-1]))
    prep = prepared or prepare(cfg, tok)
    if world > 1 and cfg.batch_size % world:
        raise ValueError(f"batch size {cfg.batch_size} must be divisible by the number of processes {world}")

    model = build_model(cfg, prep.tok)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg.warmup, cfg.steps))
    start = 0
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        run.clean_temp()
    if cfg.resume:
        ck = existing[-1]
        _load_model_weights(model, ck)
        state = torch.load(ck / "trainer_state.pt", weights_only=True)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_cpu"])
        start = int(state["step"])
        if rank == 0 and run.events.exists():  # drop events logged after that checkpoint
            kept = [ln for ln in run.events.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= start
                    and json.loads(ln)["type"] not in ("done", "stopped", "error")]
            tmp = run.events.with_name(".tmp-events")
            tmp.write_text("".join(k + "\n" for k in kept))
            os.replace(tmp, run.events)
    else:
        torch.manual_seed(cfg.seed + rank)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    model.train()

    stop = _StopFlag()
    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)} if _main_thread() else {}
    n_train = prep.train["input_ids"].shape[0]
    tokens_per_step = cfg.batch_size * cfg.seq_len
    run.emit({"type": "resume" if cfg.resume else "start", "step": start, "total_steps": cfg.steps,
              "config": asdict(cfg), "corpus": prep.corpus.name, "fingerprint": prep.corpus.fingerprint,
              "train_examples": n_train, "unigram_loss": prep.unigram_loss, "world_size": world}, callbacks)
    t0, last_eval, losses = time.time(), None, []
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if cfg.bf16 else _nullcontext()
    status, step = "done", start
    try:
        for step in range(start, cfg.steps):
            if stop.stop or (out / "STOP").exists():
                status = "stopped"
                break
            rows = D.batch_indices(n_train, cfg.batch_size, step, cfg.seed)[rank::world]
            batch = make_batch(cfg, prep, step, rows, prep.train)
            with autocast:
                loss = forward_loss(model, cfg.arch, batch)
            if not torch.isfinite(loss):
                good = run.checkpoints()
                where = f"the last good checkpoint is {good[-1]}" if good else "no checkpoint was written yet"
                raise TrainingError(f"the loss became {float(loss)} at step {step + 1} (learning rate too high?); "
                                    f"training stopped; {where}")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            done = step + 1
            losses.append(float(loss.detach()))
            elapsed = time.time() - t0
            rate = (done - start) * tokens_per_step / max(elapsed, 1e-9)
            run.emit({"type": "step", "step": done, "loss": float(loss), "lr": sched.get_last_lr()[0],
                      "tokens_per_s": rate, "elapsed_s": elapsed, "total_steps": cfg.steps,
                      "eta_s": (cfg.steps - done) * tokens_per_step / max(rate, 1e-9)}, callbacks)
            if done % cfg.eval_every == 0 or done == cfg.steps:
                last_eval = evaluate(model, cfg, prep)
                run.emit({"type": "eval", "step": done, **last_eval}, callbacks)
            if rank == 0 and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
                path = write_checkpoint(run, model, prep.tok, opt, sched, done, cfg.keep_last)
                run.emit({"type": "checkpoint", "step": done, "path": str(path)}, callbacks)
            if world > 1:
                torch.distributed.barrier()
        else:
            step = cfg.steps
        if status == "stopped" and rank == 0 and step > start and not (run.ckpt / f"step-{step:07d}").exists():
            path = write_checkpoint(run, model, prep.tok, opt, sched, step, cfg.keep_last)
            run.emit({"type": "checkpoint", "step": step, "path": str(path)}, callbacks)
    except TrainingError as e:
        run.emit({"type": "error", "step": step, "message": str(e)}, callbacks)
        raise
    finally:
        for s, h in old.items():
            signal.signal(s, h)

    record = {"status": status, "arch": cfg.arch, "config": asdict(cfg), "corpus": prep.corpus.name,
              "corpus_fingerprint": prep.corpus.fingerprint, "steps": step, "final_loss": losses[-1] if losses else None,
              "heldout": last_eval, "unigram_loss": prep.unigram_loss, "wall_time_s": time.time() - t0,
              "tokens_per_s": (step - start) * tokens_per_step / max(time.time() - t0, 1e-9),
              "parameters": sum(p.numel() for p in model.parameters())}
    if status == "done" and rank == 0:
        write_final(run, model, prep.tok, record)
    run.emit({"type": status, "step": step, "message": f"training {status} at step {step}"}, callbacks)
    return record


def _elmo_loss(model, batch):
    inner = model.module if hasattr(model, "module") else model
    if hasattr(model, "module"):  # DDP: run forward through the wrapper so gradients are synchronised
        out = model(batch["input_ids"])
        v = inner.config.vocab_size
        ids = batch["input_ids"]
        f = torch.nn.functional.cross_entropy(out.forward_logits[:, :-1].reshape(-1, v), ids[:, 1:].reshape(-1))
        b = torch.nn.functional.cross_entropy(out.backward_logits[:, 1:].reshape(-1, v), ids[:, :-1].reshape(-1))
        return (f + b) / 2
    return inner.loss(batch["input_ids"])


def write_final(run: Run, model, tok, record: dict) -> None:
    """The finished model into OUT itself, file by file through a temp dir (each file appears whole)."""
    tmp = run.out / f".tmp-final-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_model_dir(model, tok, tmp)
    (tmp / "training_record.json").write_text(json.dumps(record, indent=2, default=str))
    _fsync_dir(tmp)
    for f in tmp.iterdir():
        os.replace(f, run.out / f.name)
    tmp.rmdir()


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
