"""Beam search that records its whole tree: every expanded hypothesis, its score, and what became of it.

The search follows transformers' vectorised `_beam_search` (5.x) step for step, for one prompt:
each step turns every running beam's logits into log-probabilities, adds the beam's score, keeps the best
`2 * num_beams` candidates (enough that `num_beams` survive even if half end here), moves candidates that
end in EOS (or hit the length limit) and rank among the top `num_beams` into a finished set scored with the
length penalty (score / generated_length ** length_penalty), and continues with the best `num_beams`
candidates that did not end. It stops when every candidate ended, when `early_stopping=True` and
`num_beams` hypotheses are finished, or when no running beam can still beat the worst finished one
(transformers' heuristic). The returned sequences and scores therefore equal
`model.generate(num_beams=..., do_sample=False, ...)` for the same settings (tests check it).

    >>> step = lambda ids: torch.tensor([[0.0, 1.0, 2.0]]).repeat(ids.shape[0], 1)  # logits, whatever the prefix
    >>> r = beam_search(step, torch.tensor([[0]]), num_beams=2, max_new_tokens=2, eos_token_id=None)
    >>> r.sequences[0].tolist()
    [0, 2, 2]
    >>> [(n.parent, n.token_id, n.status) for n in r.nodes[:5]]  # (parent node, token, fate)
    [(-1, -1, 'kept'), (0, 2, 'kept'), (0, 1, 'kept'), (0, 0, 'pruned'), (1, 2, 'finished')]
    >>> r.leaves, round(r.scores[0], 4)  # node 4 ends the best path; score = log p / length
    ([4], -0.4076)
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Callable

import torch

DEAD = -1.0e9  # transformers' "this beam does not exist" score
MAX_BEAMS = 64  # every step runs the model on num_beams sequences: keep a CPU search bounded

# Node statuses
KEPT, PRUNED, ENDED, FINISHED = "kept", "pruned", "ended", "finished"


@dataclass
class Node:
    """One expanded hypothesis. Node 0 is the prompt (parent -1, step 0, token_id -1).

    score:  cumulative log-probability of its generated tokens (no length penalty).
    status: kept (ran on to the next step), pruned (fell out of the top beams), ended (hit EOS / the length
            limit but is not among the returned hypotheses), finished (one of the returned hypotheses)."""

    id: int
    parent: int
    step: int
    token_id: int
    score: float
    status: str


@dataclass
class BeamResult:
    sequences: list[torch.Tensor]  # each (prompt + generated,) int64, best first; no padding
    scores: list[float]  # length-penalised scores, as transformers' `sequences_scores`
    nodes: list[Node] = field(default_factory=list)  # the whole tree; node 0 is the prompt
    leaves: list[int] = field(default_factory=list)  # node id where each returned sequence ends


def check_settings(num_beams: int, max_new_tokens: int, length_penalty: float, early_stopping,
                   num_return_sequences: int = 1, vocab_size: int | None = None) -> None:
    """Raise ValueError naming the first out-of-range beam-search setting."""
    if isinstance(num_beams, bool) or not isinstance(num_beams, numbers.Integral) or not 1 <= num_beams <= MAX_BEAMS:
        raise ValueError(f"num_beams must be between 1 and {MAX_BEAMS}, got {num_beams!r}")
    if vocab_size is not None and num_beams > vocab_size:
        raise ValueError(f"num_beams must be at most the vocabulary size {vocab_size}, got {num_beams}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a whole number >= 1, got {max_new_tokens!r}")
    if not math.isfinite(length_penalty):
        raise ValueError(f"length_penalty must be a finite number, got {length_penalty}")
    if early_stopping not in (True, False, "never"):
        raise ValueError(f"early_stopping must be True, False or 'never', got {early_stopping!r}")
    if not 1 <= num_return_sequences <= num_beams:
        raise ValueError(f"num_return_sequences must be between 1 and num_beams ({num_beams}), got {num_return_sequences}")


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
    reorder: Callable[[torch.Tensor], None] | None = None,
) -> BeamResult:
    """step_fn: (beams, seq) ids -> (beams, vocab) next-token logits (log-probabilities work too:
    log_softmax leaves them unchanged). input_ids: (1, prompt). process: optional hook
    (ids (beams, seq), log_probs (beams, vocab)) -> log_probs, applied where transformers applies its
    logits processors in beam search (e.g. the repetition penalty). reorder: optional hook called with
    (beams,) int64, the row of the previous step's beams each new running beam extends by one token (rows
    repeat or drop), so that a caller's key/value cache can follow the beams."""
    check_settings(num_beams, max_new_tokens, length_penalty, early_stopping, num_return_sequences)
    if input_ids.dim() != 2 or input_ids.shape[0] != 1 or input_ids.shape[1] == 0:
        raise ValueError(f"input_ids must be one non-empty prompt of shape (1, seq), got {tuple(input_ids.shape)}")
    prompt_len = input_ids.shape[1]
    max_length = prompt_len + max_new_tokens
    keep = max(2, 1 + (eos_token_id is not None)) * num_beams  # candidates per step, as transformers
    top_mask = torch.arange(keep) < num_beams  # (keep,) only these may finish this step

    running = input_ids.repeat(num_beams, 1)  # (beams, cur_len)
    running_scores = torch.full((num_beams,), DEAD)  # (beams,) all but one copy start dead
    running_scores[0] = 0.0
    running_nodes = torch.zeros(num_beams, dtype=torch.long)  # (beams,) tree node of each running beam
    fin_seqs: list[torch.Tensor] = [input_ids[0].clone() for _ in range(num_beams)]
    fin_scores = torch.full((num_beams,), DEAD)  # (beams,) length-penalised
    fin_done = torch.zeros(num_beams, dtype=torch.bool)  # (beams,) slot holds a real finished hypothesis
    fin_nodes = torch.full((num_beams,), -1, dtype=torch.long)
    nodes = [Node(0, -1, 0, -1, 0.0, KEPT)]
    improvable = True
    cur_len = prompt_len

    while True:
        logp = torch.log_softmax(step_fn(running).float(), -1)  # (beams, vocab)
        if process is not None:
            logp = process(running, logp)
        vocab = logp.shape[-1]
        if num_beams > vocab or keep > num_beams * vocab:
            raise ValueError(f"num_beams must be at most the vocabulary size {vocab}, got {num_beams}")
        total = (logp + running_scores[:, None]).reshape(-1)  # (beams * vocab,)
        cand_scores, flat = torch.topk(total, keep)  # (keep,)
        beam_of, tok = flat // vocab, flat % vocab  # (keep,) which beam, which token
        cand_seqs = torch.cat([running[beam_of], tok[:, None]], dim=1)  # (keep, cur_len + 1)
        hits = torch.zeros(keep, dtype=torch.bool)  # (keep,) candidate ends here
        if eos_token_id is not None:
            hits |= tok == eos_token_id
        if cur_len + 1 >= max_length:
            hits[:] = True

        # record every candidate whose parent beam was alive (dead copies only exist to fill the batch)
        cand_nodes = torch.full((keep,), -1, dtype=torch.long)  # (keep,)
        for j in range(keep):
            if running_scores[beam_of[j]] <= DEAD / 2:
                continue
            nid = len(nodes)
            nodes.append(Node(nid, int(running_nodes[beam_of[j]]), cur_len + 1 - prompt_len, int(tok[j]),
                              float(cand_scores[j]), PRUNED))
            cand_nodes[j] = nid

        # next running beams: the best candidates that did not end
        run_scores = cand_scores + hits.float() * DEAD  # (keep,)
        nxt = torch.topk(run_scores, num_beams)[1]  # (beams,)
        # finished set: merge in the candidates that ended this step among the top num_beams
        just_done = hits & top_mask  # (keep,)
        pen = cand_scores / ((cur_len + 1 - prompt_len) ** length_penalty)  # (keep,)
        full = bool(fin_done.all()) and early_stopping is True
        pen = pen + (DEAD if full else 0.0) + (0.0 if improvable else DEAD) + (~just_done).float() * DEAD
        merged_scores = torch.cat([fin_scores, pen])  # (beams + keep,)
        best = torch.topk(merged_scores, num_beams)[1]  # (beams,)
        merged_seqs = fin_seqs + [cand_seqs[j] for j in range(keep)]
        merged_done = torch.cat([fin_done, just_done])
        merged_nodes = torch.cat([fin_nodes, cand_nodes])
        fin_seqs = [merged_seqs[int(i)] for i in best]
        fin_scores, fin_done, fin_nodes = merged_scores[best], merged_done[best], merged_nodes[best]

        running, running_scores = cand_seqs[nxt], run_scores[nxt]
        if reorder is not None:
            reorder(beam_of[nxt])  # (beams,) parent rows of the new running beams
        running_nodes = cand_nodes[nxt]
        for j in nxt.tolist():
            if cand_nodes[j] >= 0 and not hits[j]:
                nodes[int(cand_nodes[j])].status = KEPT
        for j in range(keep):
            if cand_nodes[j] >= 0 and hits[j]:
                nodes[int(cand_nodes[j])].status = ENDED
        cur_len += 1

        # transformers' early-stop heuristic: can the best running beam still beat the worst finished one?
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

    returned = range(num_return_sequences)
    for i in returned:
        if fin_nodes[i] >= 0:
            nodes[int(fin_nodes[i])].status = FINISHED
    return BeamResult([fin_seqs[i] for i in returned], [float(fin_scores[i]) for i in returned], nodes,
                      [int(fin_nodes[i]) for i in returned])
