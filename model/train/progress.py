"""A run's latest numbers (step, losses, speed, time left, status) summarised from its events, as the Train
and Fine-tune pages show them while the run writes events.jsonl (`model.jobs.read_events`). Pure, no torch.

    >>> p = progress_of([{"type": "start", "step": 0, "total_steps": 10},
    ...                  {"type": "step", "step": 5, "loss": 2.5, "eta_s": 3.0}])
    >>> p.status, p.fraction, p.loss, p.eta_s
    ('training', 0.5, 2.5, 3.0)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Progress:
    """The latest numbers of a run, from its events."""

    step: int
    total_steps: int
    loss: float | None
    tokens_per_s: float | None
    eta_s: float | None
    heldout_loss: float | None
    perplexity: float | None
    accuracy: float | None
    status: str  # "waiting" (no events yet), "training", "evaluated", "done", "stopped", "error"

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0


def progress_of(events: Sequence[dict], total_steps: int = 0) -> Progress:
    """Summarise an events list (any prefix of a run's events.jsonl)."""
    step_ev = next((e for e in reversed(events) if e.get("type") == "step"), None)
    eval_ev = next((e for e in reversed(events) if e.get("type") == "eval"), None)
    last = events[-1]["type"] if events else "waiting"
    total = next((e["total_steps"] for e in reversed(events) if e.get("total_steps")), total_steps)
    status = {"start": "training", "resume": "training", "step": "training", "eval": "training",
              "checkpoint": "training"}.get(last, last)
    return Progress(step=int(events[-1].get("step", 0)) if events else 0, total_steps=int(total or 0),
                    loss=step_ev["loss"] if step_ev else None,
                    tokens_per_s=step_ev.get("tokens_per_s") if step_ev else None,
                    eta_s=step_ev.get("eta_s") if step_ev and status == "training" else None,
                    heldout_loss=eval_ev["loss"] if eval_ev else None,
                    perplexity=eval_ev.get("perplexity") if eval_ev else None,
                    accuracy=eval_ev.get("accuracy") if eval_ev else None, status=status)
