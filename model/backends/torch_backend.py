"""The torch backend: a transformers model run on the CPU, with attention recorded as queries and keys.

How attention weights are obtained: transformers 5 dispatches every attention layer through
`AttentionInterface`. We register one more implementation, "lmscope" (model.backends.recording), that (1) records the layer's
query, key, mask and scale when an inspection asks for it, and (2) computes the layer's output with
PyTorch's fused `scaled_dot_product_attention` — the same output eager attention gives (to ~1e-6).
`kernels.attention.attention_probs` later turns the recorded Q/K into exactly the probabilities eager
attention computes (tests compare with `output_attentions` of an eager model to 1e-5). The recorded Q/K
themselves are handed out too (`ForwardOutput.qk`, for bertviz's neuron view). So weights always
exist, the forward pass costs what a forward without attentions costs, and maps are computed one layer
at a time when a page looks at them. One layer's maps alone (`layer_attention`) stop the forward pass
right after that layer.

Models whose attention layers do not go through `AttentionInterface` are loaded with
`attn_implementation="eager"` and `output_attentions=True` instead (checked by a probe at load time).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from kernels.attention import attention_probs
from model import capabilities, families
from model.backends.base import Backend, Decoder, ForwardOutput
from model.backends.recording import IMPLEMENTATION, RECORDER, Recording, StopForward  # noqa: F401 (model.load)
from model.capabilities import PAIR_KINDS
from model.errors import InputError, Unavailable

# ---------------------------------------------------------------------------------------------------
# Per-family heads: which module turns a hidden state into vocabulary logits, and which gives NSP/SOP.
# Applying heads ourselves (instead of the model's own forward) lets us compute logits only where needed.


def _bert_mlm(m, h):
    return m.cls.predictions(h)


def _distilbert_mlm(m, h):
    return m.vocab_projector(m.vocab_layer_norm(m.activation(m.vocab_transform(h))))


MLM_HEADS: dict[str, Callable[[nn.Module, torch.Tensor], torch.Tensor]] = {
    "BertForMaskedLM": _bert_mlm,
    "BertForPreTraining": _bert_mlm,
    "RobertaForMaskedLM": lambda m, h: m.lm_head(h),
    "AlbertForMaskedLM": lambda m, h: m.predictions(h),
    "AlbertForPreTraining": lambda m, h: m.predictions(h),
    "DistilBertForMaskedLM": _distilbert_mlm,
}
CAUSAL_HEADS: dict[str, Callable[[nn.Module, torch.Tensor], torch.Tensor]] = {
    "GPT2LMHeadModel": lambda m, h: m.lm_head(h),
}
PAIR_HEADS: dict[str, tuple[str, Callable[[nn.Module, torch.Tensor], torch.Tensor]]] = {
    "BertForPreTraining": (PAIR_KINDS["BertForPreTraining"], lambda m, pooled: m.cls.seq_relationship(pooled)),
    "AlbertForPreTraining": (PAIR_KINDS["AlbertForPreTraining"], lambda m, pooled: m.sop_classifier(pooled)),
}
# Final norm applied to intermediate layers for the logit lens (GPT-2 is pre-LN; its last hidden state
# already went through ln_f). Post-LN encoders need none.
LENS_NORMS: dict[str, Callable[[nn.Module], nn.Module]] = {
    "GPT2LMHeadModel": lambda m: m.transformer.ln_f,
}
# Which architectures load, and what each can show, is decided in model.capabilities (torch-free, shared
# with model.describe); the head tables above cover exactly its lists (tests/model/test_describe.py checks).
BASE_MODELS = set(capabilities.BASE_MODELS)
SUPPORTED = set(capabilities.SUPPORTED)


class TorchBackend(Backend):
    """A transformers model in eval mode. `forward` is thread-safe: no module state changes."""

    kind = "torch"

    def __init__(self, model: nn.Module, architecture: str, *, task: str | None = None, record_attention: bool = True):
        self.model = model.eval()
        self.architecture = architecture
        cfg = model.config
        self.num_layers = int(getattr(cfg, "num_hidden_layers", 0) or getattr(cfg, "n_layer", 0))
        self.num_heads = int(getattr(cfg, "num_attention_heads", 0) or getattr(cfg, "n_head", 0))
        self.num_kv_heads = int(getattr(cfg, "num_key_value_heads", 0) or self.num_heads)  # < num_heads: GQA
        self.vocab_size = int(cfg.vocab_size)
        self.max_positions = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
        seed = architecture in MLM_HEADS or architecture in CAUSAL_HEADS or architecture in BASE_MODELS
        self.task = task or ("causal-lm" if architecture in CAUSAL_HEADS else "masked-lm" if architecture in MLM_HEADS
                             else "encoder")
        # a decoder: its attention layers say so (is_causal), whatever the family
        self.causal = architecture in CAUSAL_HEADS or architecture == "GPT2Model" or bool(getattr(cfg, "is_decoder", False)) \
            or (not seed and any(getattr(m, "is_causal", False) is True for m in model.modules()))
        self._head = MLM_HEADS.get(architecture) or CAUSAL_HEADS.get(architecture)
        if self._head is None and self.task != "encoder":
            mods = families.head_modules(model)  # checked against the model's own logits by probe_heads
            self._head = (lambda m, h, _mods=mods: families.apply_head(_mods, h)) if mods else None
        self.has_lm_head = self._head is not None
        self.pair_kind, self._pair = PAIR_HEADS.get(architecture, (None, None))
        self.has_pair_head = self._pair is not None
        self._lens_norm = LENS_NORMS.get(architecture, lambda m: None)(model)
        self._seed = seed
        # RoBERTa-style positions (RoBERTa, XLM-RoBERTa, CamemBERT...) start after the padding index: the
        # first padding_idx + 1 rows of the position table are never used by a real token
        emb = getattr(model.base_model, "embeddings", None)
        pad = getattr(emb, "padding_idx", None)
        self.position_offset = pad + 1 if hasattr(emb, "create_position_ids_from_input_ids") and isinstance(pad, int) else 0
        # rotary positions (Llama, Qwen2, ModernBERT, ...): the recorded queries and keys are the rotated ones,
        # which is what the attention layer scores (the interface receives them after apply_rotary_pos_emb)
        self.rotary = any("rotary" in type(m).__name__.lower() for m in model.modules())
        self.has_lens = self.has_lm_head
        self.reasons: dict[str, str] = {}  # view -> why it is missing, found at load time
        self.record_attention = record_attention

    @property
    def head_fn(self) -> Callable[[nn.Module, torch.Tensor], torch.Tensor] | None:
        """(model, hidden (..., hidden)) -> logits (..., vocab): the LM head found (and checked by
        `probe_heads`); None without one. The ONNX export traces it as FILE.head.onnx."""
        return self._head

    @property
    def lens_norm(self) -> nn.Module | None:
        """The final norm the logit lens applies to intermediate layers; None for post-LN models."""
        return self._lens_norm

    @torch.inference_mode()
    def probe_heads(self, ids: torch.Tensor) -> list[str]:
        """Check the LM head found in the module against the model's own forward, and find the final norm the
        logit lens needs (the norm module that maps the last layer's output to the last hidden state).
        Seed architectures use their checked tables. Returns load warnings; fills `reasons`."""
        if self._seed or self._head is None:
            return []
        token = RECORDER.set(None)
        try:
            stack = next((m for m in self.model.base_model.modules() if isinstance(m, nn.ModuleList) and len(m)), None)
            captured = []
            hook = stack[-1].register_forward_hook(lambda mod, inp, out: captured.append(out[0] if isinstance(out, tuple) else out)) \
                if stack is not None else None
            try:
                full = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True, return_dict=True)
                last = full.hidden_states[-1]  # (1, seq, hidden)
                mine = self._head(self.model, last).float()
                same = mine.shape == full.logits.shape and torch.allclose(mine, full.logits.float(), atol=1e-3, rtol=1e-3)
            except Exception:  # a head that needs more than the hidden state, or a forward without logits
                same = False
            finally:
                if hook is not None:
                    hook.remove()
        finally:
            RECORDER.reset(token)
        if not same:
            self._head, self.has_lm_head, self.has_lens = None, False, False
            why = f"{self.architecture}'s output head could not be applied apart from its forward pass"
            self.reasons.update(mlm=why, causal=why, lens=why)
            return [why + ": predictions are unavailable"]
        pre = captured[-1] if captured else None
        if pre is None or torch.allclose(pre, last, atol=1e-5):
            self._lens_norm = None  # post-LN (or no norm): the last layer's output is the last hidden state
            return []
        for norm in families.norm_candidates(self.model):
            try:
                if torch.allclose(norm(pre), last, atol=1e-4, rtol=1e-4):
                    self._lens_norm = norm
                    return []
            except Exception:  # a norm of another width (e.g. relative-position embeddings)
                continue
        self.has_lens = False
        self.reasons["lens"] = (f"logit lens: lmscope cannot find the final norm of {self.architecture} that maps its "
                                "last layer to the output head")
        return []

    # -- forward ------------------------------------------------------------------------------------
    def _run_base(self, input_ids, attention_mask, token_type_ids, record: list | None, *, output_attentions: bool = False,
                  stop_after: int | None = None):
        """The base model's forward with the recorder set (`record` collects each layer's Q/K; None: no
        recording); returns its output, or None when the recording stopped it after layer `stop_after`."""
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and "token_type_ids" in self._base_forward_args():
            kwargs["token_type_ids"] = token_type_ids
        # A causal model needs query positions == key positions for the dropped mask to mean "causal".
        token = RECORDER.set(Recording(record, unpadded=bool(attention_mask.all()), stop_after=stop_after))
        try:
            return self.model.base_model(
                **kwargs,
                output_hidden_states=True,  # the last one is needed for the LM head anyway
                output_attentions=output_attentions,
                return_dict=True,
            )
        except StopForward:
            return None
        finally:
            RECORDER.reset(token)

    def _check_recorded(self, record: list, expected: int) -> None:
        if len(record) != expected:
            raise RuntimeError(f"recorded {len(record)} attention layers, expected {expected}; "
                               "this architecture's attention does not go through transformers' AttentionInterface")

    @torch.inference_mode()
    def forward(self, input_ids, attention_mask=None, token_type_ids=None, *, attentions=True, hidden_states=True):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        record = [] if (attentions and self.record_attention) else None
        out = self._run_base(input_ids, attention_mask, token_type_ids, record,
                             output_attentions=bool(attentions and not self.record_attention))
        hs = list(out.hidden_states) if out.hidden_states is not None else [out.last_hidden_state]
        last = out.last_hidden_state  # (batch, seq, hidden)

        attn_fns = qk_fns = None
        if attentions:
            if self.record_attention:
                self._check_recorded(record, self.num_layers)
                attn_fns = [self._lazy_probs(q, k, mask, scale, causal, attention_mask) for q, k, mask, scale, causal in record]
                qk_fns = [self._lazy_qk(q, k, scale) for q, k, _, scale, _ in record]
            elif out.attentions is not None:
                attn_fns = [(lambda heads=None, a=a: (a if heads is None else a[:, heads]).float()) for a in out.attentions]

        logits_fn = None
        if self._head is not None:
            head = self._head

            def logits_fn(positions: torch.Tensor, _last=last) -> torch.Tensor:
                with torch.inference_mode():
                    return head(self.model, _last[:, positions, :]).float()  # (batch, n, vocab)

        pair_logits = None
        if self._pair is not None and getattr(out, "pooler_output", None) is not None:
            with torch.inference_mode():
                pair_logits = self._pair(self.model, out.pooler_output).float()  # (batch, 2)

        return ForwardOutput(
            hidden_states=hs if hidden_states else [last],
            logits_fn=logits_fn,
            attention=attn_fns,
            qk=qk_fns,
            pair_logits=pair_logits,
        )

    @property
    def stops_early(self) -> bool:
        """`layer_attention` stops the forward after the layer asked for (attention through the recording hook)."""
        return self.record_attention

    @torch.inference_mode()
    def layer_attention(self, input_ids, attention_mask=None, token_type_ids=None, *, layer):
        """One layer's attention callable, equal to `forward(...).attention[layer]`, from a forward pass that the
        recording hook ends right after `layer` (the eager fallback runs the whole forward)."""
        if not self.record_attention:
            return super().layer_attention(input_ids, attention_mask, token_type_ids, layer=layer)
        if not 0 <= layer < self.num_layers:
            raise InputError(f"layer {layer} is out of range: this model has layers 0..{self.num_layers - 1}")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        record: list = []
        self._run_base(input_ids, attention_mask, token_type_ids, record, stop_after=layer)
        self._check_recorded(record, layer + 1)
        q, k, mask, scale, causal = record[layer]
        return self._lazy_probs(q, k, mask, scale, causal, attention_mask)

    def _lazy_probs(self, q, k, mask, scale, causal, attention_mask):
        def compute(heads: list[int] | None = None) -> torch.Tensor:
            """(batch, heads, query, key) probabilities of the given heads (all when None)."""
            qh, kh = q, k
            if heads is not None:
                group = q.shape[1] // k.shape[1]  # grouped-query attention shares key heads
                qh, kh = q[:, heads], k[:, [h // group for h in heads]]
            with torch.inference_mode():
                return attention_probs(qh, kh, scale=scale, additive_mask=mask, key_padding=attention_mask.bool(),
                                       causal=causal)

        return compute

    @staticmethod
    def _lazy_qk(q, k, scale):
        def get(heads: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor, float]:
            """(query, key, scale) of the given heads (all when None); key heads repeated to match queries."""
            hs = list(range(q.shape[1])) if heads is None else list(heads)
            group = q.shape[1] // k.shape[1]  # grouped-query attention: key head h // group serves query head h
            with torch.inference_mode():
                qh = q if heads is None else q[:, hs]  # (batch, head, seq, dim)
                kh = k if heads is None and group == 1 else k[:, [h // group for h in hs]]  # (batch, head, seq, dim)
                return qh.float(), kh.float(), float(q.shape[-1] ** -0.5 if scale is None else scale)

        return get

    def qk_unavailable(self) -> str | None:
        if self.record_attention:
            return None
        return (f"{self.architecture}'s attention layers do not go through transformers' AttentionInterface, so they "
                "run eagerly and report probabilities only, not the queries and keys they are computed from")

    def _base_forward_args(self) -> set[str]:
        import inspect as _inspect

        if not hasattr(self, "_fwd_args"):
            self._fwd_args = set(_inspect.signature(self.model.base_model.forward).parameters)
        return self._fwd_args

    # -- differentiable access (attribution, neuron activations) -----------------------------------------
    def input_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(batch, seq) int64 -> (batch, seq, hidden) word embeddings (no positions / segments), with grad."""
        return self.model.get_input_embeddings()(input_ids)

    def logits_from_embeddings(self, inputs_embeds: torch.Tensor, positions: torch.Tensor,
                               token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Differentiable LM logits (batch, n, vocab) at `positions` (n,) from word embeddings
        (batch, seq, hidden) of unpadded rows (the model adds positions and segments itself). Runs outside
        inference mode and records nothing; call it under `torch.enable_grad()` to differentiate."""
        if self._head is None:
            raise Unavailable("this model has no language-model head")
        kwargs: dict[str, Any] = {"inputs_embeds": inputs_embeds,
                                  "attention_mask": torch.ones(inputs_embeds.shape[:2], dtype=torch.long)}
        if token_type_ids is not None and "token_type_ids" in self._base_forward_args():
            kwargs["token_type_ids"] = token_type_ids.expand(inputs_embeds.shape[0], -1)
        token = RECORDER.set(None)
        try:
            last = self.model.base_model(**kwargs, return_dict=True).last_hidden_state  # (batch, seq, hidden)
        finally:
            RECORDER.reset(token)
        return self._head(self.model, last[:, positions, :]).float()

    # -- logit lens ------------------------------------------------------------------------------------
    @torch.inference_mode()
    def lens(self, hidden: torch.Tensor, layer: int) -> torch.Tensor:
        if self._head is None:
            raise Unavailable("this model has no language-model head")
        if self._lens_norm is not None and layer < self.num_layers:
            hidden = self._lens_norm(hidden)
        return self._head(self.model, hidden).float()

    @torch.inference_mode()
    def next_token_logits(self, input_ids, attention_mask=None):
        out = self.forward(input_ids, attention_mask, attentions=False, hidden_states=False)
        return out.logits_at(torch.tensor([input_ids.shape[1] - 1]))[:, 0, :]

    # -- incremental decoding ------------------------------------------------------------------------------
    def decoder(self, input_ids: torch.Tensor) -> Decoder | None:
        """A decoder over the model's own key/value cache, for every causal LM; None for everything else."""
        if self.task != "causal-lm" or self._head is None or "past_key_values" not in self._base_forward_args():
            return None  # (a state-space model keeps another kind of cache: generation recomputes the prefix)
        return _TorchDecoder(self, input_ids)


class _TorchDecoder(Decoder):
    """The transformers model's own `past_key_values` (a DynamicCache created by the first call and kept
    here only, so the shared backend and its modules are never mutated). Each model call runs the base
    model on the tokens not yet read (the prefix first, then one per step), with `use_cache=True`; GPT-2
    then takes position ids from the cache length, which is right because rows are never padded. The LM
    head runs on the last position only. The attention recorder is explicitly off during these calls."""

    def __init__(self, backend: TorchBackend, input_ids: torch.Tensor):
        super().__init__(input_ids, backend.max_positions)
        self._backend = backend
        self._cache = None  # transformers Cache after the first model call
        self._last: torch.Tensor | None = None  # (batch, hidden) last hidden state once run
        self._memo: torch.Tensor | None = None  # (batch, vocab) logits for the current length

    def _read(self, ids: torch.Tensor) -> None:
        token = RECORDER.set(None)  # never record (or drop the mask of) a decoding step
        try:
            with torch.inference_mode():
                out = self._backend.model.base_model(input_ids=ids, past_key_values=self._cache, use_cache=True,
                                                     return_dict=True)
        finally:
            RECORDER.reset(token)
        self._cache = out.past_key_values
        self._last, self._memo = out.last_hidden_state[:, -1, :], None  # (batch, hidden)

    def _logits(self) -> torch.Tensor:
        if self._memo is None:
            with torch.inference_mode():
                self._memo = self._backend._head(self._backend.model, self._last[:, None, :])[:, 0, :].float()
        return self._memo

    def _select(self, idx: torch.Tensor) -> None:
        with torch.inference_mode():
            self._cache.reorder_cache(idx)
            self._last = self._last.index_select(0, idx)
            if self._memo is not None:
                self._memo = self._memo.index_select(0, idx)
