"""Held-out metrics during training, next to the baselines a model must beat.

    loss / perplexity   masked-token cross-entropy (MLM), next-token (GPT-2), forward LM (ELMo)
    accuracy            masked-token top-1 (MLM), at the training mask rate, on fixed held-out masks
    pair_accuracy       NSP (BERT) / SOP (ALBERT)
    backward_loss       ELMo's right-to-left LM
    plateau             True while the loss is within 5% of the unigram baseline: the model has learned
                        which tokens are frequent and nothing about context yet (the classic MLM plateau)

    >>> evaluate(objective, cfg, prep)["perplexity"]  # doctest: +SKIP
    7.9

`masked_top1` measures a finished masked LM the same way for the demo models' records (model.train.demo,
model.train.english_eval).
"""
from __future__ import annotations

import math

import torch

from model.train.config import TrainConfig
from model.train.prepare import Prepared, heldout_batches

PLATEAU_MARGIN = 0.05  # within 5% of the unigram loss counts as "still on the plateau"


@torch.no_grad()
def evaluate(objective: torch.nn.Module, cfg: TrainConfig, prep: Prepared) -> dict:
    """objective: a model.train.models.Objective (not DDP-wrapped). Runs in fp32, dropout off."""
    was_training = objective.training
    objective.eval()
    loss_sum, n_sum, back_sum = 0.0, 0, 0.0
    correct, pair_ok, pair_n = 0, 0, 0
    for batch in heldout_batches(prep, cfg.batch_size, cfg.eval_batches):
        out = objective(batch, with_logits=True)
        if cfg.arch in ("gpt2", "elmo"):
            n = batch["input_ids"][:, 1:].numel()  # every position but the last predicts one token
            loss_sum += float(out.get("forward_loss", out["loss"])) * n
            back_sum += float(out.get("backward_loss", 0.0)) * n
        else:
            n = int(out["targets"].numel())
            loss_sum += float(out["mlm_loss"]) * n
            correct += int((out["logits"].argmax(-1) == out["targets"]).sum())
            if "pair_logits" in out:
                pair_ok += int((out["pair_logits"].argmax(-1) == batch["pair_labels"]).sum())
                pair_n += len(batch["pair_labels"])
        n_sum += n
    objective.train(was_training)
    loss = loss_sum / max(n_sum, 1)
    uni = prep.baselines["unigram_loss"]
    res = {"loss": loss, "perplexity": math.exp(min(loss, 50)), "unigram_loss": uni,
           "unigram_perplexity": math.exp(min(uni, 50)), "plateau": bool(loss > uni * (1 - PLATEAU_MARGIN)),
           "targets": n_sum}
    if cfg.arch not in ("gpt2", "elmo"):
        res["accuracy"] = correct / max(n_sum, 1)
        res["most_frequent_accuracy"] = prep.baselines["most_frequent_accuracy"]
    if pair_n:
        res["pair_accuracy"] = pair_ok / pair_n
    if cfg.arch == "elmo":
        back = back_sum / max(n_sum, 1)
        res["backward_loss"], res["backward_perplexity"] = back, math.exp(min(back, 50))
    return res


@torch.no_grad()
def masked_top1(backend, tok, batches, most_frequent: int, seed: int) -> tuple[int, int, int]:
    """(correct, baseline hits, masked positions) of a finished masked LM (`backend`, `tok`) over `batches`
    of (encoding, special-token mask), each corrupted as in BERT's pretraining (15%; 80% mask, 10% random,
    10% kept) by one generator seeded with `seed`; the baseline always predicts the token `most_frequent`."""
    from kernels.masking import mlm_mask

    correct = baseline = total = 0
    g = torch.Generator().manual_seed(seed)
    for enc, special in batches:
        ids = enc["input_ids"]
        r = mlm_mask(ids, special, vocab_size=len(tok), mask_token_id=tok.mask_token_id, mlm_probability=0.15,
                     generator=g, random_token_low=max(tok.all_special_ids) + 1)
        out = backend.forward(r.input_ids, enc["attention_mask"], enc.get("token_type_ids"), attentions=False,
                              hidden_states=False)
        logits = out.logits_at(torch.arange(ids.shape[1]))  # (batch, seq, vocab)
        sel = r.selected
        correct += int((logits[sel].argmax(-1) == ids[sel]).sum())
        baseline += int((ids[sel] == most_frequent).sum())
        total += int(sel.sum())
    return correct, baseline, total
