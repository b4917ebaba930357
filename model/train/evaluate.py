"""Held-out metrics during training, next to the baselines a model must beat.

    loss / perplexity   masked-token cross-entropy (MLM), next-token (GPT-2), forward LM (ELMo)
    accuracy            masked-token top-1 (MLM), at the training mask rate, on fixed held-out masks
    pair_accuracy       NSP (BERT) / SOP (ALBERT)
    backward_loss       ELMo's right-to-left LM
    plateau             True while the loss is within 5% of the unigram baseline: the model has learned
                        which tokens are frequent and nothing about context yet (the classic MLM plateau)

    >>> evaluate(objective, cfg, prep)["perplexity"]  # doctest: +SKIP
    7.9
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
