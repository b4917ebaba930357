"""Beam search that records its whole tree: every expanded hypothesis, its score, and what became of it.

The search itself follows transformers' vectorised `_beam_search` (5.x) step for step, for one prompt:
each step scores every running beam's continuations, keeps the best `2 * num_beams` candidates, moves
candidates that end in EOS (or hit the length limit) into a finished set scored with the length penalty,
and continues with the best `num_beams` candidates that did not end. The returned sequences therefore
equal `model.generate(num_beams=..., do_sample=False, ...)` for the same settings (tests check it).

    >>> step = lambda ids: torch.log_softmax(torch.tensor([[0.0, 1.0, 2.0]]).repeat(ids.shape[0], 1), -1)
    >>> r = beam_search(step, torch.tensor([[0]]), num_beams=2, max_new_tokens=2, eos_token_id=None)
    >>> r.sequences[0].tolist()
    [0, 2, 2]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

DEAD = -1.0e9  # transformers' "this beam does not exist" score

# Node statuses
KEPT, PRUNED, FINISHED, ENDED = "kept", "pruned", "finished", "ended"


@dataclass
class Node:
    """One expanded hypothesis. score: cumulative log-probability of its tokens (no length penalty);
    status: kept (ran on), pruned (fell out of the top beams), ended (hit EOS / the length limit but was
    not among the returned hypotheses), finished (one of the returned hypotheses)."""

    id: int
    parent: int
    step: int
    token_id: int
    score: float
    status: str


@dataclass
class BeamResult:
    sequences: list[torch.Tensor]  # each (prompt + generated,) int64, best first
    scores: list[float]  # length-penalised scores, as transformers' `sequences_scores`
    nodes: list[Node] = field(default_factory=list)  # node 0 is the prompt


def beam_search(
    step_fn: Callable[[torch.Tensor], torch.Tensor],
    input_ids: torch.Tensor,
    num_beams: int,
    max_new_tokens: int,
    eos_token_id: int | None,
    length_penalty: float = 1.0,
    early_stopping: bool | str = False,
    num_return_sequences: int = 1,
    process: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> BeamResult:
    """step_fn: (beams, seq) ids -> (beams, vocab) log-probabilities of the next token.
    input_ids: (1, prompt). process: optional (ids, log_probs) -> log_probs (e.g. repetition penalty)."""
    if not 1 <= num_beams <= 64:
        raise ValueError(f"num_beams must be between 1 and 64, got {num_beams}")
    if not 1 <= num_return_sequences <= num_beams:
        raise ValueError(f"num_return_sequences must be between 1 and num_beams ({num_beams})")
    prompt_len = input_ids.shape[1]
    max_length = prompt_len + max_new_tokens
    keep = max(2, 1 + (eos_token_id is not None)) * num_beams  # candidates per step, as transformers
    top_mask = torch.arange(keep) < num_beams  # (keep,) only these may finish this step

    running = input_ids.repeat(num_beams, 1)  # (beams, cur_len)
    running_scores = torch.full((num_beams,), DEAD)
    running_scores[0] = 0.0
    running_nodes = torch.zeros(num_beams, dtype=torch.long)  # node id of each running beam
    fin_seqs: list[torch.Tensor] = [input_ids[0].clone() for _ in range(num_beams)]
    fin_scores = torch.full((num_beams,), DEAD)
    fin_done = torch.zeros(num_beams, dtype=torch.bool)
    fin_nodes = torch.full((num_beams,), -1, dtype=torch.long)
    nodes = [Node(0, -1, 0, -1, 0.0, KEPT)]
    improvable = True
    cur_len = prompt_len

    while True:
        logp = step_fn(running).float()  # (beams, vocab)
        if process is not None:
            logp = process(running, logp)
        vocab = logp.shape[-1]
        if keep > num_beams * vocab:
            raise ValueError(f"num_beams {num_beams} is too large for a vocabulary of {vocab}")
        total = (logp + running_scores[:, None]).reshape(-1)  # (beams * vocab,)
        cand_scores, flat = torch.topk(total, keep)  # (keep,)
        beam_of, tok = flat // vocab, flat % vocab
        cand_seqs = torch.cat([running[beam_of], tok[:, None]], dim=1)  # (keep, cur_len + 1)
        hits = torch.zeros(keep, dtype=torch.bool)
        if eos_token_id is not None:
            hits |= tok == eos_token_id
        if cur_len + 1 >= max_length:
            hits[:] = True

        # record every candidate whose parent beam was alive
        cand_nodes = torch.full((keep,), -1, dtype=torch.long)
        for j in range(keep):
            if running_scores[beam_of[j]] <= DEAD / 2:
                continue
            nid = len(nodes)
            nodes.append(Node(nid, int(running_nodes[beam_of[j]]), cur_len + 1 - prompt_len, int(tok[j]),
                              float(cand_scores[j]), PRUNED))
            cand_nodes[j] = nid

        # next running beams: the best candidates that did not end
        run_scores = cand_scores + hits.float() * DEAD
        nxt = torch.topk(run_scores, num_beams)[1]
        # finished set: merge in candidates that ended this step among the top num_beams
        just_done = hits & top_mask
        pen = cand_scores / ((cur_len + 1 - prompt_len) ** length_penalty)
        full = bool(fin_done.all()) and early_stopping is True
        pen = pen + (DEAD if full else 0.0) + (0.0 if improvable else DEAD) + (~just_done).float() * DEAD
        merged_scores = torch.cat([fin_scores, pen])
        best = torch.topk(merged_scores, num_beams)[1]
        merged_seqs = fin_seqs + [cand_seqs[j] for j in range(keep)]
        merged_done = torch.cat([fin_done, just_done])
        merged_nodes = torch.cat([fin_nodes, cand_nodes])
        fin_seqs = [merged_seqs[int(i)] for i in best]
        fin_scores, fin_done, fin_nodes = merged_scores[best], merged_done[best], merged_nodes[best]

        running, running_scores = cand_seqs[nxt], run_scores[nxt]
        running_nodes = cand_nodes[nxt]
        for j in nxt.tolist():
            if cand_nodes[j] >= 0 and not hits[j]:
                nodes[int(cand_nodes[j])].status = KEPT
        for j in range(keep):
            if cand_nodes[j] >= 0 and hits[j]:
                nodes[int(cand_nodes[j])].status = ENDED
        cur_len += 1

        # transformers' early-stop heuristic: can a running beam still beat the worst finished one?
        if early_stopping == "never" and length_penalty > 0.0:
            best_len = max_length - prompt_len
        else:
            best_len = cur_len - prompt_len
        best_running = running_scores[0] / (best_len ** length_penalty)
        worst_finished = fin_scores.min() if fin_done.any() else torch.tensor(DEAD)
        improvable = improvable and bool(best_running > worst_finished)
        open_beam = not (bool(fin_done.all()) and early_stopping is True)
        if not (improvable and open_beam and not bool(hits.all())):
            break

    order = range(num_return_sequences)
    for i in order:
        if fin_nodes[i] >= 0:
            nodes[int(fin_nodes[i])].status = FINISHED
    return BeamResult([fin_seqs[i] for i in order], [float(fin_scores[i]) for i in order], nodes)
