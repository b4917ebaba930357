"""The export's check: onnxruntime runs the graphs on sample inputs and every output must equal torch's.

Sample inputs: one row, and a right-padded batch of three rows of different lengths. The error of an output
is max |onnx - torch| / max(1, max |torch|) over real positions only (absolute for attention probabilities
and O(1) logits; relative for the large logits and hidden states of real GPT-2 checkpoints).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.onnx.wrappers import DecoderModule, ExportSpec, GraphModule, HeadModule, empty_cache

TOLERANCE = 1e-4  # max |onnx - torch| / max(1, max |torch|); measured here: <= 2e-7 on the tiny models, 1e-5 MiniLM

# Sample texts for tracing and the parity check; the mask word is swapped for the tokenizer's mask token.
TEXTS = [
    ("the quick brown fox jumps over the lazy dog.", "a student types a sentence."),
    ("hello world", None),
    ("attention heads look at other tokens in the sentence, and the dogs near the cat run.", "the cat sleeps."),
]
MASK_WORD = "fox"


def sample_batches(tok, spec: ExportSpec, max_len: int) -> list[dict[str, torch.Tensor]]:
    """Two sample inputs: one row, and a right-padded batch of three rows of different lengths.
    Each is {input_ids, attention_mask[, token_type_ids]}: (batch, seq) int64."""
    mask = tok.mask_token if spec.task in ("masked-lm", "pretraining") else None
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0

    def row(a: str, b: str | None) -> tuple[list[int], list[int]]:
        if mask:
            a = a.replace(MASK_WORD, mask)
        enc = tok(a, b, truncation=True, max_length=max_len) if (b and spec.segments) else \
            tok(a + (" " + b if b else ""), truncation=True, max_length=max_len)
        ids = enc["input_ids"]
        return ids, enc.get("token_type_ids") or [0] * len(ids)

    def batch(pairs) -> dict[str, torch.Tensor]:
        rows = [row(a, b) for a, b in pairs]
        n = max(len(ids) for ids, _ in rows)
        b = {"input_ids": torch.tensor([ids + [pad] * (n - len(ids)) for ids, _ in rows]),
             "attention_mask": torch.tensor([[1] * len(ids) + [0] * (n - len(ids)) for ids, _ in rows])}
        if spec.segments:
            b["token_type_ids"] = torch.tensor([tt + [0] * (n - len(tt)) for _, tt in rows])
        return b

    return [batch(TEXTS[:1]), batch(TEXTS)]


def run_torch(graph: GraphModule, head: HeadModule | None, spec: ExportSpec, batches) -> list[dict[str, torch.Tensor]]:
    """The reference: the traced module itself, plus the LM head on the last and a middle hidden state."""
    results = []
    with torch.inference_mode():
        for b in batches:
            r = dict(zip(spec.outputs, graph(*[b[k] for k in spec.inputs])))
            if head is not None:
                r.update(_head_outputs(lambda h, norm: head(h, torch.tensor(norm)), r["hidden_states"], head.norm is not None))
            results.append(r)
    return results


def _head_outputs(run, hidden_states, has_norm: bool) -> dict[str, Any]:
    """The head graph's two uses: logits from the last hidden state, and the lens on a middle layer."""
    mid = hidden_states.shape[0] // 2
    return {"head": run(hidden_states[-1], False), "lens": run(hidden_states[mid], has_norm)}


def session(f: Path, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(str(f), so, providers=["CPUExecutionProvider"])


def run_onnx(main: Path, head: Path | None, spec: ExportSpec, batches) -> list[dict[str, torch.Tensor]]:
    sess = session(main)
    head_sess = session(head) if head is not None else None
    results = []
    for b in batches:
        outs = sess.run(spec.outputs, {k: b[k].numpy() for k in spec.inputs})
        r = {k: torch.from_numpy(v) for k, v in zip(spec.outputs, outs)}
        if head_sess is not None:
            def run(h, norm):
                feed = {"hidden": h.numpy()}
                if len(head_sess.get_inputs()) > 1:
                    feed["apply_norm"] = np.array(norm)
                return torch.from_numpy(head_sess.run(["logits"], feed)[0])
            r.update(_head_outputs(run, r["hidden_states"], len(head_sess.get_inputs()) > 1))
        results.append(r)
    return results


def compare(got, want, batches) -> dict[str, float]:
    """Output name -> max |got - want| / max(1, max |want|) over all batches, real positions only."""
    err: dict[str, float] = {}
    for g, w, b in zip(got, want, batches):
        real = b["attention_mask"].bool()  # (batch, seq)
        for k, ref in w.items():
            x = g[k]
            if k == "attentions":  # (layer, batch, head, query, key): real query rows
                sel = real[None, :, None, :].expand(ref.shape[:4])
                d, r = (x - ref).abs()[sel], ref[sel]
            elif k == "hidden_states":  # (layer + 1, batch, seq, hidden)
                sel = real[None].expand(ref.shape[:3])
                d, r = (x - ref).abs()[sel], ref[sel]
            elif k == "pair_logits":
                d, r = (x - ref).abs(), ref
            else:  # (batch, seq, ...)
                d, r = (x - ref).abs()[real], ref[real]
            e = float(d.max() / max(1.0, float(r.abs().max())))
            err[k] = max(err.get(k, 0.0), e)
    return err


def decoder_samples(batches) -> list[torch.Tensor]:
    """Unpadded (batch, n) ids to check the decoder on: the one-row sample, and the three-row sample cut to
    its shortest row (generation never pads)."""
    b = batches[-1]
    return [batches[0]["input_ids"], b["input_ids"][:, : int(b["attention_mask"].sum(1).min())]]


def _decode(run, ids: torch.Tensor, empty) -> dict[str, torch.Tensor]:
    """The two kinds of call generation makes: the prompt but its last token with an empty cache, then
    that token with the cache it returned. run(ids, keys, values) -> (logits, keys, values)."""
    first, keys, values = run(ids[:, :-1], empty(ids.shape[0]), empty(ids.shape[0]))
    last, keys, values = run(ids[:, -1:], keys, values)
    return {"prompt": first, "step": last, "present_keys": keys, "present_values": values}


def check_decoder(dec: DecoderModule, f: Path, batches, reference) -> float:
    """max relative error of FILE.decoder.onnx: against the torch module on the same calls, and its logits
    after the last token against the full graph's torch logits there (the same model, computed twice)."""
    empty = empty_cache(dec.model.config)
    sess = session(f)

    def torch_call(ids, keys, values):
        with torch.inference_mode():
            return dec(ids, keys, values)

    def onnx_call(ids, keys, values):
        outs = sess.run(None, {"input_ids": ids.numpy(), "past_keys": keys.numpy(), "past_values": values.numpy()})
        return [torch.from_numpy(o) for o in outs]

    def rel(got: torch.Tensor, want: torch.Tensor) -> float:
        return float((got - want).abs().max() / max(1.0, float(want.abs().max())))

    err = 0.0
    for ids, ref in zip(decoder_samples(batches), reference):
        want, got = _decode(torch_call, ids, empty), _decode(onnx_call, ids, empty)
        err = max([err, rel(got["step"], ref["logits"][: ids.shape[0], ids.shape[1] - 1])]
                  + [rel(got[k], want[k]) for k in want])
    return err
