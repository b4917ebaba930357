"""Train: a small BERT, RoBERTa, ALBERT, GPT-2 or ELMo on a built-in or uploaded corpus, watched live.

Training runs in its own process through the server's job queue (`model.jobs`): at most
LMSCOPE_MAX_TRAINING_JOBS at once, the rest wait with their place shown; each browser session sees and
controls only its own jobs. The page only reads the files a run writes (events.jsonl, checkpoints): the
live panel polls them every POLL_S seconds. A finished model is listed as `runs/<job>` in every page's
model picker. Scrub the checkpoints with the slider to see how a probe sentence's predictions changed.

Keys: `arch`, `preset`, `corpus` (toyworld | pydoc | upload | path), `corpus_path`, `steps`, `probe`,
`chars` (ELMo: character-CNN input).
"""
from __future__ import annotations

import streamlit as st

from app import common, state
from app.figures import training as F
from app.figures.generation import candidates_figure
from app.widgets import jobs as W
from model import jobs as J
from model.errors import LmscopeError
from model.results import Prediction
from model.train.config import MLM_ARCHS
from model.train.layout import complete_checkpoints
from model.train.presets import PRESETS
from model.train.progress import progress_of

POLL_S = 2.0  # live panel refresh while a job is queued or running
CORPORA = ("toyworld", "pydoc", "upload", "path")
CORPUS_HELP = {"toyworld": "the embedded toy world: generated sentences with agreement to learn (no file needed)",
               "pydoc": "real English: CPython's own documentation (the text behind help())",
               "upload": "your .txt (blank line between documents) or .jsonl ({\"text\": ...} per line)",
               "path": "a .txt / .jsonl file on the server, inside the allowed corpus folders"}
PROBES = {True: "the dogs near the cat [MASK] .", False: "the dogs near the"}
MAX_TREND_CHECKPOINTS = 6  # the trend over checkpoints loads each one (they stay cached)


def _corpus(owner: str) -> str | None:
    """The corpus widgets; returns what to pass as --corpus, or None (with a message) when not ready."""
    kind = state.radio("Corpus", "corpus", CORPORA, "toyworld", help="\n\n".join(f"**{k}**: {v}" for k, v in CORPUS_HELP.items()))
    st.caption(CORPUS_HELP[kind])
    if kind in J.BUILTIN_CORPORA:
        return kind
    if kind == "upload":
        return W.upload(owner, "Corpus file (.txt or .jsonl, at most {limit})", ["txt", "jsonl"], "train_upload",
                        "Upload a corpus file to train on it.")
    path = state.text_input("Corpus path on the server", "corpus_path", "")
    st.caption("Allowed folders: " + ", ".join(f"`{r}`" for r in J.corpus_roots()))
    if not path.strip():
        return None
    try:
        return str(J.check_corpus_path(path.strip(), owner))
    except LmscopeError as e:
        st.error(str(e))
        return None


def _form(queue: J.JobQueue, owner: str) -> None:
    st.subheader("New training run")
    c = st.columns(3)
    with c[0]:
        arch = state.selectbox("Architecture", "arch", J.ARCHS, "gpt2",
                               help="bert: MLM + next-sentence; roberta: MLM with dynamic masking; albert: MLM + sentence "
                                    "order, shared layers; gpt2: causal LM; elmo: forward + backward LSTM LMs")
        chars = arch == "elmo" and state.toggle(
            "Character input (char-CNN)", "chars", False,
            help="ELMo reads each token's characters through a CNN, as the original did, instead of a table "
                 "of token embeddings: tokens spelled alike start out alike")
    with c[1]:
        preset = state.radio("Preset", "preset", J.PRESETS, "tiny")
        p = PRESETS[preset]
        st.caption(f"{p.layers} layers x {p.hidden} wide, {p.heads} heads, vocabulary {p.vocab_size}, "
                   f"{p.seq_len} tokens x {p.batch_size} per step")
    with c[2]:
        steps = state.number_input("Steps", "steps", 1, J.MAX_STEPS, p.steps)
    corpus = _corpus(owner)
    request = dict(arch=arch, preset=preset, corpus=corpus or "toyworld", steps=int(steps))
    if chars:
        request["char_cnn"] = True
    st.button("Start training", type="primary", disabled=corpus is None, key="train_start",
              on_click=W.submit, args=(queue, owner, request, "train"))


def _job_table(jobs: list[J.Job], shown: J.Job, shown_status: str) -> None:
    """Every job of this session; the one in the panel below with the panel's status (one reading of its log)."""
    rows = [{"job": j.id, "model": j.request.get("arch"), "corpus": j.request.get("corpus", "").rsplit("/", 1)[-1],
             "status": shown_status if j.id == shown.id else j.label, "note": j.message} for j in jobs]
    st.dataframe(rows, hide_index=True)


def _live(queue: J.JobQueue, owner: str, job_id: str, was_active: frozenset) -> None:
    """The job table, then progress, numbers and curves of one job, all from one reading of the jobs and the
    job's files. Re-run every POLL_S seconds while any job is queued or running (see `render`); when the
    set of active jobs changes (one ended, or Resume, a button in here, started one again) the whole page
    is redrawn, which starts or stops the polling and refreshes the buttons, checkpoints and model list."""
    try:
        jobs = queue.jobs(owner)
        job = next(j for j in jobs if j.id == job_id)
    except (LmscopeError, StopIteration) as e:
        st.error(str(e) or f"no such job: {job_id}")
        return
    if frozenset(j.id for j in jobs if j.state in J.ACTIVE) != was_active:
        st.rerun(scope="app")
    events = J.read_events(queue.dir(job_id))
    prog = progress_of(events, job.total_steps)
    status = f"running {prog.step}/{job.total_steps}" if job.state == "running" else job.label
    _job_table(jobs, job, status)
    if job.state == "queued":
        st.info(f"Waiting in the queue: place {job.place}. It starts when a running job ends "
                f"(at most {queue.max_running} at once on this server).")
    elif job.state == "running" and not events:
        st.info("Starting: reading the corpus and training the tokenizer…")
    if job.state in J.ACTIVE:
        text = status + (f" — {job.message}" if job.message else "")
    else:
        text = job.message or job.label
    st.progress(prog.fraction, text=text)
    m = st.columns(5)
    m[0].metric("step", f"{prog.step} / {prog.total_steps or job.total_steps}")
    m[1].metric("train loss", "–" if prog.loss is None else f"{prog.loss:.3f}")
    m[2].metric("held-out perplexity", "–" if prog.perplexity is None else f"{prog.perplexity:.1f}")
    m[3].metric("tokens / s", "–" if prog.tokens_per_s is None else f"{prog.tokens_per_s:,.0f}")
    m[4].metric("time left", F.format_duration(prog.eta_s) if job.state == "running" else "–")
    if events:
        common.show(F.loss_figure(events), f"loss-{job_id}", download=job.state not in J.ACTIVE)
    if job.state == "failed":
        st.error(job.message)
    elif job.state == "finished":
        st.success(f"Finished. The model is listed as **{queue.model_name(job_id)}** in the model picker of every page.")
    W.stop_resume(queue, owner, job, "train")


def _probe_predictions(path: str, probe: str, mlm: bool) -> list[Prediction] | None:
    loaded = common.load(path)
    if loaded is None:
        return None
    insp = common.inspect_text(loaded, probe, top_k=10, summaries=False)
    if insp is None:
        return None
    if mlm:
        if not insp.masks:
            st.warning("The probe has no mask: write [MASK] where the model should fill in a word.")
            return None
        return insp.masks[0].predictions
    if insp.next_tokens is None:
        return None
    last = max(i for i, t in enumerate(insp.tokens) if not t.special) if any(not t.special for t in insp.tokens) else -1
    return [Prediction(t, int(i), float(p)) for t, i, p in zip(insp.next_tokens[last], insp.next_ids[last], insp.next_probs[last])]


def _history(queue: J.JobQueue, job: J.Job) -> None:
    cks = complete_checkpoints(queue.dir(job.id))
    st.subheader("Training history")
    if not cks:
        st.caption(f"No checkpoint yet: they appear every {max(1, job.total_steps // 10)} steps (the newest few are kept).")
        return
    mlm = job.request.get("arch") in MLM_ARCHS
    probe = state.text_input("Probe sentence" + (" (with [MASK])" if mlm else " (the model continues it)"), "probe", PROBES[mlm])
    steps = [s for s, _ in cks]
    chosen = st.select_slider("Checkpoint (step)", options=steps, value=steps[-1], key=f"train_ckpt_{job.id}") \
        if len(steps) > 1 else steps[0]
    path = str(dict(cks)[chosen])
    preds = _probe_predictions(path, probe, mlm)
    if preds is None:
        return
    title = f"step {chosen}: " + ("what fills the mask" if mlm else "the next token")
    common.show(candidates_figure(preds, preds[0], title=title), f"probe-{job.id}", download=False)
    if 1 < len(cks) <= MAX_TREND_CHECKPOINTS:
        rows = []
        for s, p in cks:
            got = preds if s == chosen else _probe_predictions(str(p), probe, mlm)
            if got is not None:
                rows.append((s, got))
        st.caption("The probe's top tokens at every kept checkpoint:")
        common.show(F.checkpoint_predictions_figure(rows, highlight=chosen), f"probe-trend-{job.id}", download=False)


def render() -> None:
    st.title("Train a small model")
    for key in ("model", "text"):  # not used here, but kept in the URL for the other pages
        if state.get(key) is not None:
            state.put(key, state.get(key))
    owner, queue = W.owner(), W.queue()
    W.show_note("train")
    _form(queue, owner)
    jobs = W.my_jobs(queue, owner, "Your jobs")
    if jobs is None:
        return
    job = W.pick_job(jobs, "train")
    active = frozenset(j.id for j in jobs if j.state in J.ACTIVE)
    st.fragment(_live, run_every=POLL_S if active else None)(queue, owner, job.id, active)
    W.list_once(job)
    _history(queue, job)


render()
