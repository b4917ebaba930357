"""Quality of the real-English demo models, each number next to a baseline measured the same way:

- masked LM (en-bert): top-1 on held-out documents at BERT's 15% / 80-10-10 corruption vs always
  predicting the most frequent training token; the hand-written cloze sentences (english_probes.CLOZE)
  with how many have an accepted word in the top 5.
- causal LM (en-gpt2): perplexity on held-out documents vs a unigram model of the training text (add-one);
  the hand-written prompts (english_probes.PROMPTS) with how many 3-token beam continuations contain an
  accepted word.
- both: tokens per word and unknown pieces on english_probes.PARAGRAPH, whether a 300-token text is read
  whole, and how many probe texts occur in the training text (must be 0).

    >>> q = evaluate_english("assets/models/en-bert")   # doctest: +SKIP
    >>> q["cloze_top5"], q["cloze_total"]                # doctest: +SKIP
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from model.train.english import EnglishSplit, english_split, normalize
from model.train.english_probes import CLOZE, PARAGRAPH, PROMPTS, long_text

EVAL_SEED = 777
LONG_TEXT_TOKENS = 300
BEAM_WIDTH, BEAM_TOKENS = 4, 3
_WORD = re.compile(r"[A-Za-z]+")


def probe_texts() -> list[str]:
    """Every probe as the text it stands for (cloze sentences filled with their first accepted word)."""
    return [s.replace("[MASK]", w[0]) for s, w in CLOZE] + [p for p, _ in PROMPTS]


def probes_in_training(split: EnglishSplit) -> list[str]:
    """Probe texts that occur (normalized) inside the training text: must be empty."""
    text = "\n".join(normalize(s) for d in split.train for s in d)
    return [p for p in probe_texts() if normalize(p) in text]


def tokenizer_stats(tok, max_positions: int) -> dict:
    """Tokens per word and unknown pieces on PARAGRAPH; whether a LONG_TEXT_TOKENS text fits whole."""
    ids = tok(PARAGRAPH, add_special_tokens=False)["input_ids"]
    unk = tok.unk_token_id if tok.unk_token_id not in (tok.eos_token_id, None) else None
    n_long = len(tok(long_text(LONG_TEXT_TOKENS, tok))["input_ids"])  # with the model's special tokens
    return {"tokens_per_word": len(ids) / len(PARAGRAPH.split()),
            "unknown_pieces": sum(i == unk for i in ids) if unk is not None else 0,
            "vocab_size": len(tok), "max_positions": max_positions,
            "long_text_tokens": n_long, "long_text_read_whole": n_long <= max_positions}


EVIDENCE_MIN = 3  # training sentences that pair a probe's rarest content word with an accepted answer
_FUNCTION_WORDS = frozenset(
    "a an the of in to is are was were with our her his its it we he she they and at on for by every could not so "
    "that when because be there has have had us what".split())


def probe_evidence(split: EnglishSplit) -> dict:
    """How much the training text says about each probe: its rarest content word (the key: "paris", "cows")
    and the training sentences that hold both the key and an accepted answer ("milk"). A probe with fewer
    than EVIDENCE_MIN such sentences asks for something the text hardly teaches, whatever the model.

    >>> q = probe_evidence(english_split())                       # doctest: +SKIP
    >>> q["cloze_attested"], q["cloze_total"]                     # doctest: +SKIP
    (10, 28)
    """
    sentences = [set(_WORD.findall(x.lower())) for d in split.train for x in d]
    freq: dict[str, int] = {}
    for words in sentences:
        for w in words:
            freq[w] = freq.get(w, 0) + 1

    def one(text: str, accepted: tuple[str, ...]) -> dict:
        words = [w for w in _WORD.findall(text.replace("[MASK]", " ").lower()) if w not in _FUNCTION_WORDS]
        key = min(words, key=lambda w: freq.get(w, 0))
        answers = {a.lower() for a in accepted}
        together = sum(1 for ws in sentences if key in ws and answers & ws)
        return {"probe": text, "key": key, "key_sentences": freq.get(key, 0), "with_answer": together}

    cloze = [one(t, a) for t, a in CLOZE]
    prompts = [one(t, a) for t, a in PROMPTS]
    return {"min_sentences": EVIDENCE_MIN,
            "cloze_attested": sum(c["with_answer"] >= EVIDENCE_MIN for c in cloze), "cloze_total": len(cloze),
            "prompts_attested": sum(p["with_answer"] >= EVIDENCE_MIN for p in prompts), "prompts_total": len(prompts),
            "cloze": cloze, "prompts": prompts}


def _train_counts(tok, split: EnglishSplit, arch: str) -> torch.Tensor:
    """(vocab,) token counts of the training text, tokenized as in training."""
    from model.train.examples import tokenize_documents

    counts = torch.zeros(len(tok), dtype=torch.float64)
    docs = split.train
    for i in range(0, len(docs), 2000):
        for doc in tokenize_documents(tok, docs[i:i + 2000], arch):
            for s in doc:
                counts += torch.bincount(torch.tensor(s, dtype=torch.long), minlength=len(tok))[: len(tok)]
    return counts


def _heldout_docs(split: EnglishSplit) -> list[list[str]]:
    return [d for name in sorted(split.heldout) for d in split.heldout[name]]


@torch.no_grad()
def evaluate_masked_english(m, split: EnglishSplit) -> dict:
    from model.inspect import inspect
    from model.train.evaluate import masked_top1

    tok, be = m.tokenizer, m.backend
    limit = be.max_positions
    counts = _train_counts(tok, split, "bert")
    counts[torch.tensor(tok.all_special_ids)] = 0
    most_frequent = int(counts.argmax())
    texts = [" ".join(d) for d in _heldout_docs(split)]

    def batches():
        for i in range(0, len(texts), 16):
            enc = tok(texts[i:i + 16], padding=True, truncation=True, max_length=limit, return_tensors="pt",
                      return_special_tokens_mask=True)
            yield enc, enc["special_tokens_mask"].bool() | (enc["attention_mask"] == 0)

    correct, baseline, total = masked_top1(be, tok, batches(), most_frequent, EVAL_SEED)
    cloze = []
    for sentence, accepted in CLOZE:
        r = inspect(m, sentence, top_k=5, summaries=False)
        top = [p.token for p in r.masks[0].predictions]
        cloze.append({"sentence": sentence, "accepted": list(accepted), "top5": top,
                      "right": any(w in top for w in accepted),
                      "accepted_single_piece": all(len(tok(w, add_special_tokens=False)["input_ids"]) == 1 for w in accepted)})
    return {"masked_top1": correct / total, "masked_top1_baseline_most_frequent": baseline / total,
            "most_frequent_token": tok.convert_ids_to_tokens(most_frequent), "masked_positions": total,
            "cloze_top5": sum(c["right"] for c in cloze), "cloze_total": len(cloze), "cloze": cloze}


@torch.no_grad()
def evaluate_causal_english(m, split: EnglishSplit) -> dict:
    from model.generate import generate
    from model.train.examples import packed_blocks, tokenize_documents

    tok, be = m.tokenizer, m.backend
    seq = be.max_positions
    blocks = packed_blocks(tokenize_documents(tok, _heldout_docs(split), "gpt2"), seq, tok.eos_token_id)["input_ids"]
    nll = n_tok = 0.0
    for i in range(0, len(blocks), 8):
        b = blocks[i:i + 8]
        logits = be.forward(b, attentions=False, hidden_states=False).logits_at(torch.arange(seq))
        logp = torch.log_softmax(logits[:, :-1].float(), -1)
        nll += float(-logp.gather(2, b[:, 1:, None]).sum())
        n_tok += b[:, 1:].numel()
    counts = _train_counts(tok, split, "gpt2")
    counts[tok.eos_token_id] += len(split.train)
    unigram = (counts + 1) / (counts + 1).sum()
    uni_nll = float(-unigram.log()[blocks[:, 1:]].sum())
    prompts = []
    for prompt, accepted in PROMPTS:
        r = generate(m, prompt, strategy="beam", num_beams=BEAM_WIDTH, max_new_tokens=BEAM_TOKENS)
        words = _WORD.findall(r.text)
        prompts.append({"prompt": prompt, "accepted": list(accepted), "continuation": r.text,
                        "right": any(w in words for w in accepted)})
    return {"perplexity": math.exp(nll / n_tok), "perplexity_baseline_unigram": math.exp(uni_nll / n_tok),
            "heldout_tokens": int(n_tok), "prompts_right": sum(p["right"] for p in prompts),
            "prompts_total": len(prompts), "beam": {"num_beams": BEAM_WIDTH, "max_new_tokens": BEAM_TOKENS},
            "prompts": prompts}


def evaluate_english(model_dir: str | Path, split: EnglishSplit | None = None) -> dict:
    """Every measurement above for the model in model_dir (its kind decides masked or causal)."""
    from model.load import load_model

    split = english_split() if split is None else split
    m = load_model(Path(model_dir))
    q = evaluate_masked_english(m, split) if "mlm" in m.info.capabilities else evaluate_causal_english(m, split)
    q["tokenizer"] = tokenizer_stats(m.tokenizer, m.backend.max_positions)
    q["probes_in_training_text"] = probes_in_training(split)
    q["probe_evidence"] = probe_evidence(split)
    q["heldout"] = {name: len(docs) for name, docs in split.heldout.items()}
    q["heldout_overlap_sentences"] = split.stats["overlap_sentences"]
    q["train_words"] = split.stats["train_words"]
    return q


__all__ = ["evaluate_english", "evaluate_masked_english", "evaluate_causal_english", "tokenizer_stats",
           "probes_in_training", "probe_texts", "probe_evidence"]
