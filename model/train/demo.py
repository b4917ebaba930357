"""The demo models in assets/models: one per architecture, trained from the toy-world corpus by one seeded
command (`make demo-models` = `lmscope demo-models --out assets/models`), then measured on held-out
toy-world text (sentences that occur nowhere in the training corpus) against trivial baselines measured
the same way, with subject-verb agreement per probe kind (model.probes), and stored in fp16 (they load back in
fp32 with plain transformers).

Budgets are steps of the `small` preset (4 layers x 256 wide), with bf16 autocast where this CPU runs bf16
matmuls faster than fp32 (measured; AVX-512 machines) and fp32 elsewhere; see RECIPES.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch

from model.registry import PROJECT_ROOT
from model.train.trainer import TrainConfig, TrainingError, train

# arch -> TrainConfig overrides. Why: BERT-style models need many small steps with short sequences and a
# high mask rate to leave the unigram plateau; causal models learn fast at this scale.
SHORTCUT = PROJECT_ROOT / "assets" / "models"  # gpt2-shortcut, elmo-shortcut: see RECIPES
RECIPES: dict[str, dict] = {
    # GPT-2 and ELMo continue the models trained on toy world v2, where every attractor had the opposite
    # number and both had learned "the opposite number of the nearest noun" (kept as demo/gpt2-shortcut and
    # demo/elmo-shortcut). From scratch they took gpt2: 1500 steps, batch 32, lr 1e-3; elmo: 1200 steps,
    # batch 32, lr 2e-3 (steps=..., no init_from): more than this shared 2-core CPU gave in one session.
    "gpt2": dict(steps=200, seq_len=64, batch_size=16, lr=5e-4, warmup=20, init_from=str(SHORTCUT / "gpt2-shortcut")),
    "bert": dict(steps=3000, seq_len=48, batch_size=32, lr=1e-3, mlm_probability=0.3),
    "roberta": dict(steps=2500, seq_len=48, batch_size=32, lr=1e-3, mlm_probability=0.3),
    # ALBERT's one shared layer reached BERT's masked top-1 in 2500 steps but its agreement varied from run
    # to run (99.9% and 82.7% from the same seed on 2 and 1 threads); at 4000 steps: 49.1% top-1, 100%.
    "albert": dict(steps=4000, seq_len=48, batch_size=32, lr=1e-3, mlm_probability=0.3),
    "elmo": dict(steps=100, seq_len=64, batch_size=16, lr=1e-3, warmup=10, init_from=str(SHORTCUT / "elmo-shortcut")),
}
EVAL_SEED = 777
EVAL_DOCS = 500


def training_sentences() -> frozenset[str]:
    """Every sentence of the built-in toy-world training corpus (what held-out text must avoid)."""
    from model.train.corpus import builtin_corpus

    return frozenset(s for d in builtin_corpus("toyworld").documents for s in d)


def heldout_docs(train: frozenset[str], n: int = EVAL_DOCS) -> tuple[list[list[str]], list[list[bool]], dict]:
    """Evaluation documents (another seed of the grammar) and, per sentence, whether it is scored: only
    sentences that occur nowhere in training are (half of a seed's sentences, mostly openers and short
    pronoun sentences, also occur in the training documents word for word). Returns (documents, scored
    flags, overlap record); the record's eval_sentences_in_training is measured after the dedupe (0)."""
    from model.train.toyworld import generate_corpus

    docs = generate_corpus(n, EVAL_SEED)
    flags = [[s not in train for s in d] for d in docs]
    sents = [s for d in docs for s in d]
    kept = [s for d, f in zip(docs, flags) for s, k in zip(d, f) if k]
    record = {"eval_sentences": len(sents), "eval_sentences_seen_in_training_before_dedupe": sum(s in train for s in sents),
              "eval_sentences_scored": len(kept), "eval_sentences_in_training": sum(s in train for s in kept)}
    return docs, flags, record


def _probe_record(m, n_probes: int, train: frozenset[str]) -> dict:
    """Agreement per probe kind on n_probes probes none of which occurs in training (model.probes)."""
    from model.probes import PROBE_SEED, agreement

    r = agreement(m, n_probes, PROBE_SEED, exclude=train, n_examples=n_probes)  # examples: every scored probe
    assert len(r.examples) == r.counts[0]
    return {"agreement": r.overall, "agreement_by_kind": r.by_group(),
            "agreement_probes": int(r.counts[0]), "agreement_probes_by_kind": {g: int(c) for g, c in zip(r.groups, r.counts)},
            "agreement_probes_skipped": r.skipped, "agreement_probe_seed": PROBE_SEED,
            "probe_sentences_in_training": sum(e.sentence in train for e in r.examples)}


@torch.no_grad()
def evaluate_masked(model_dir: Path, n_probes: int = 1000, train: frozenset[str] | None = None) -> dict:
    """Masked-token top-1 at BERT's own 15% / 80-10-10 corruption on held-out sentences (none of which
    occurs in `train`, default the built-in training corpus), vs always predicting the most frequent
    token; and subject-verb agreement per probe kind on held-out probes."""
    from model.load import load_model
    from model.train.evaluate import masked_top1

    train = training_sentences() if train is None else train
    m = load_model(model_dir)
    tok, be = m.tokenizer, m.backend
    docs, flags, overlap = heldout_docs(train)
    sents = [s for d, f in zip(docs, flags) for s, k in zip(d, f) if k]
    batches = []
    counts = torch.zeros(len(tok))
    for i in range(0, len(sents), 64):
        enc = tok(sents[i:i + 64], padding=True, return_tensors="pt", return_special_tokens_mask=True)
        special = enc["special_tokens_mask"].bool() | (enc["attention_mask"] == 0)
        counts += torch.bincount(enc["input_ids"][~special], minlength=len(tok))[: len(tok)].float()
        batches.append((enc, special))
    correct, baseline_hits, total = masked_top1(be, tok, batches, int(counts.argmax()), EVAL_SEED)
    return {"masked_top1": correct / total, "masked_top1_baseline_most_frequent": baseline_hits / total,
            "masked_positions": total, **_probe_record(m, n_probes, train), **overlap}


@torch.no_grad()
def evaluate_causal(model_dir: Path, n_probes: int = 1000, seq_len: int = 64, train: frozenset[str] | None = None) -> dict:
    """Held-out perplexity (forward LM) vs a unigram model fitted on the training corpus, and agreement per
    probe kind: p(correct verb | context + prefix) > p(wrong verb | context + prefix) (model.probes).
    Documents are read whole (as in training: packed, <eos> between them) but only the tokens of sentences
    that occur nowhere in `train` (default the built-in training corpus) are scored."""
    from model.load import load_model
    from model.train.corpus import builtin_corpus
    from model.train.examples import tokenize_documents

    train = training_sentences() if train is None else train
    m = load_model(model_dir)
    tok, be = m.tokenizer, m.backend
    arch = "elmo" if m.info.model_type == "lmscope-elmo" else "gpt2"
    docs, flags, overlap = heldout_docs(train)
    stream, scored = [], []  # token ids, and whether each is a target to score
    for doc, f in zip(tokenize_documents(tok, docs, arch), flags):
        for ids, keep in zip(doc, f):
            stream += ids
            scored += [keep] * len(ids)
        stream.append(tok.eos_token_id)
        scored.append(False)
    n_blocks = len(stream) // seq_len
    blocks = torch.tensor(stream[: n_blocks * seq_len]).view(n_blocks, seq_len)
    targets = torch.tensor(scored[: n_blocks * seq_len]).view(n_blocks, seq_len)[:, 1:]  # (n, seq-1)
    nll = 0.0
    for i in range(0, n_blocks, 32):
        b = blocks[i:i + 32]
        logits = be.forward(b, attentions=False, hidden_states=False).logits_at(torch.arange(seq_len))
        logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(2, b[:, 1:, None])[..., 0]
        nll += float(-logp[targets[i:i + 32]].sum())
    n_tok = int(targets.sum())
    train_docs = builtin_corpus("toyworld").documents[:5000]
    counts = torch.zeros(len(tok))
    for doc in tokenize_documents(tok, train_docs, arch):
        for s in doc:
            counts += torch.bincount(torch.tensor(s, dtype=torch.long), minlength=len(tok))[: len(tok)].float()
    counts[tok.eos_token_id] += len(train_docs)
    unigram = (counts + 1) / (counts + 1).sum()
    uni_nll = float(-unigram.log()[blocks[:, 1:][targets]].sum())
    return {"perplexity": math.exp(nll / n_tok), "perplexity_baseline_unigram": math.exp(uni_nll / n_tok),
            "perplexity_tokens": n_tok, **_probe_record(m, n_probes, train), **overlap}


def to_fp16(model_dir: Path) -> None:
    """Store the weights in fp16 (halves the repo size); loaders cast back to fp32."""
    from safetensors.torch import load_file, save_file

    f = model_dir / "model.safetensors"
    state = load_file(str(f))
    save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}, str(f),
              metadata={"format": "pt"})


def merge_quality(path: Path, results: dict) -> dict:
    """Merge results (model -> quality) into the JSON file at path, keeping the other models' entries
    (several builders write to the same DEMO_QUALITY.json); written atomically. Returns the merged dict."""
    merged = {}
    if path.is_file():
        try:
            merged = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise TrainingError(f"{path} is not valid JSON; fix or remove it before building demo models") from None
        if not isinstance(merged, dict):
            raise TrainingError(f"{path} is not a JSON object; fix or remove it before building demo models")
    merged.update(results)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(merged, indent=2) + "\n")
    tmp.replace(path)
    return merged


def build_demo_models(out_root: str | Path, only: list[str] | None = None, work: str | Path | None = None,
                      bf16: bool | None = None, scale: float = 1.0) -> dict:
    """Train, evaluate and install the demo models; their quality is merged into OUT/DEMO_QUALITY.json
    (entries of models not built are kept). `scale` shrinks the step budgets (tests)."""
    out_root = Path(out_root)
    work = Path(work) if work else out_root.parent / ".demo-work"
    unknown = sorted(set(only or []) - set(RECIPES))
    if unknown:
        raise TrainingError(f"unknown demo model {', '.join(unknown)}; choose from {', '.join(RECIPES)}")
    train_sentences = training_sentences()
    results = {}
    from model.train.demo_english import ENGLISH_RECIPES, build_english

    for arch in only or [*RECIPES, *ENGLISH_RECIPES]:
        if arch in ENGLISH_RECIPES:  # the real-English models (model.train.demo_english)
            results[arch] = build_english(arch, out_root, work, scale=scale)  # bf16: measured per CPU
            continue
        if arch not in RECIPES:
            raise TrainingError(f"unknown demo model {arch!r}; choose from {', '.join([*RECIPES, *ENGLISH_RECIPES])}")
        r = dict(RECIPES[arch])
        r["steps"] = max(10, int(r["steps"] * scale))
        run_dir = work / arch
        shutil.rmtree(run_dir, ignore_errors=True)
        cfg = TrainConfig(arch=arch, out_dir=str(run_dir), corpus="toyworld", preset="small", seed=0, bf16=bf16,
                          checkpoint_every=r["steps"], eval_every=max(50, r["steps"] // 10), keep_last=1, **r)
        from model.train.run import progress_bar

        record = train(cfg, callbacks=[progress_bar])
        if record.get("status") != "done":  # stopped (STOP file, signal): its checkpoint stays in the work folder
            raise TrainingError(f"{arch} training {record.get('status')} at step {record.get('steps')}; nothing installed "
                                f"(its checkpoint is in {run_dir}/checkpoints)")
        quality = (evaluate_causal if arch in ("gpt2", "elmo") else evaluate_masked)(run_dir, train=train_sentences)
        quality["steps"] = record.get("steps")
        quality["wall_time_s"] = record.get("wall_time_s")
        record["demo_quality"] = quality
        (run_dir / "training_record.json").write_text(json.dumps(record, indent=2, default=str))
        to_fp16(run_dir)
        target = out_root / arch
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns("checkpoints", "events.jsonl", ".tmp*"))
        results[arch] = quality
        merge_quality(out_root / "DEMO_QUALITY.json", {arch: quality})  # after each model: a later crash keeps it
        print(f"\n{arch}: {json.dumps(quality)}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return results


__all__ = ["RECIPES", "build_demo_models", "evaluate_masked", "evaluate_causal", "heldout_docs", "merge_quality",
           "training_sentences"]
