"""Fine-tune: turn a pretrained model into a sentence classifier, continue its LM training on new text, or
distill a smaller student from it; then see what changed inside.

Jobs run as separate processes in the same queue as the Train page (`model.jobs`, requests from
`model.finetune_jobs`), one `lmscope finetune` / `lmscope distill` each; the page reads the files they write.
Finished models are listed as `runs/<job>` on every page. For a finished job: the held-out accuracy against
the majority-class baseline and the confusion matrix, the label probabilities of a typed text, and which
attention heads moved most between the base and the fine-tuned model on that text (|difference| per head,
drawn like the all-heads grid); for LM fine-tuning and distillation the two models' next-token (or mask)
distributions for the same input, with the student's size, speed and agreement with its teacher.

Keys: `ftmode` (classify | lm | distill), `model` (base / teacher), `ftdata`, `fttask`, and `fttext`.
"""
from __future__ import annotations

import json

import streamlit as st

from app import common, state
from app.figures import finetune as FF
from app.figures.generation import candidates_figure
from app.figures.training import loss_figure
from app.widgets import jobs as W
from model import finetune_jobs as FJ
from model import jobs as J
from model.errors import LmscopeError
from model.train.labelled import BUILTIN_TASKS
from model.train.progress import progress_of

POLL_S = 2.0
MODES = {"classify": "Classify sentences", "lm": "Continue LM training", "distill": "Distill a smaller student"}
KINDS = ("finetune", "distill")
FREEZE = {"none": "train everything", "lowest": "freeze the lowest layers", "head": "train the new head only"}
TEXT = {"classify": "Whisk the eggs and bake the cake in the oven.", "lm": "the dogs near the", "distill": "the dogs near the"}
DEFAULT_STEPS = {"classify": 60, "lm": 100, "distill": 200}


def _labelled_data(owner: str) -> str | None:
    """Built-in task, upload or typed examples -> what to pass as --data (None after a message)."""
    kind = state.radio("Examples", "ftdata", ("built-in", "upload", "typed"), "built-in")
    if kind == "built-in":
        task = state.selectbox("Built-in task", "fttask", list(BUILTIN_TASKS), "toy-agreement")
        st.caption(BUILTIN_TASKS[task])
        return task
    if kind == "upload":
        return W.upload(owner, 'A .csv (columns text, label) or .jsonl ({{"text", "label"}} per line), at most {limit}',
                        ["csv", "jsonl"], "ft_upload", "Upload a file of labelled examples.", save=FJ.save_labelled_upload)
    typed = st.text_area("One example per line, `label: text`", key="ft_typed", height=160,
                         placeholder="sport: the striker scored a late goal\ncooking: bake the bread for an hour")
    if not typed.strip():
        st.info("Type a few examples of at least two labels.")
        return None
    try:
        W.guard_uploads(owner)
        return str(FJ.save_typed_examples(owner, typed))
    except LmscopeError as e:
        st.error(str(e))
        return None


def _corpus(owner: str) -> str | None:
    kind = state.radio("Text", "ftdata", ("toyworld", "pydoc", "upload"), "toyworld")
    if kind != "upload":
        return kind
    return W.upload(owner, "A .txt (blank line between documents) or .jsonl corpus, at most {limit}", ["txt", "jsonl"],
                    "ft_corpus", "Upload a corpus file.")


def _form(queue: J.JobQueue, owner: str, mode: str) -> None:
    label = "Teacher" if mode == "distill" else "Base model"
    base = common.pick_model("model", label, common.prefers("attention"), sidebar=False)  # not ELMo
    if base is None:
        return
    data = _labelled_data(owner) if mode == "classify" else _corpus(owner)
    c = st.columns(3)
    steps = int(c[0].number_input("Steps", min_value=1, max_value=J.MAX_STEPS, value=DEFAULT_STEPS[mode],
                                  key=f"ft_steps_{mode}"))
    request: dict = {"kind": "distill" if mode == "distill" else "finetune", "corpus": data or "", "steps": steps}
    if mode == "distill":
        request["teacher"] = base
        request["alpha"] = float(c[1].slider("alpha (weight of the teacher)", 0.0, 1.0, 0.5, 0.1, key="ft_alpha",
                                             help="0: the student learns from the data alone (the baseline)"))
        request["temperature"] = float(c[2].number_input("temperature", 0.5, 20.0, 1.0, 0.5, key="ft_temp"))
        request["lr"] = 1e-3
    else:
        request.update(base=base, task=mode, lr=1e-4 if mode == "classify" else 5e-5)
        freeze = c[1].radio("Freeze", list(FREEZE), format_func=FREEZE.get, key="ft_freeze")
        if freeze == "head":
            request["head_only"] = True
        elif freeze == "lowest":
            request["freeze_layers"] = int(c[2].number_input("Layers to freeze", 1, 48, 1, key="ft_frozen"))
    st.button("Start", type="primary", disabled=data is None, key="ft_start", on_click=W.submit,
              args=(queue, owner, request, "ft"))


def _live(queue: J.JobQueue, owner: str, job_id: str, was_active: bool) -> None:
    try:
        job = queue.status(job_id, owner)
    except LmscopeError as e:
        st.error(str(e))
        return
    if was_active and job.state not in J.ACTIVE:
        st.rerun(scope="app")
    events = J.read_events(queue.dir(job_id))
    prog = progress_of(events, job.total_steps)
    if job.state == "queued":
        st.info(f"Waiting in the queue: place {job.place}.")
    st.progress(prog.fraction, text=(job.message or job.label) if job.state not in J.ACTIVE else job.label)
    start = next((e for e in events if e.get("type") in ("start", "resume")), {})
    m = st.columns(4)
    m[0].metric("step", f"{prog.step} / {prog.total_steps or job.total_steps}")
    m[1].metric("train loss", "–" if prog.loss is None else f"{prog.loss:.3f}")
    last = next((e for e in reversed(events) if e.get("type") == "eval"), {})
    if "accuracy" in last:
        m[2].metric("held-out accuracy", f"{last['accuracy']:.3f}")
        m[3].metric("majority class", f"{start.get('majority_baseline', float('nan')):.3f}")
    elif "perplexity" in last:
        m[2].metric("held-out perplexity", f"{last['perplexity']:.2f}")
        if "agreement" in last:
            m[3].metric("top-1 agreement", f"{last['agreement']:.3f}")
    if events:
        c = st.columns(2)
        with c[0]:
            common.show(loss_figure(events), f"ft-loss-{job_id}", download=False)
        with c[1]:
            if start.get("task") == "classify":
                common.show(FF.heldout_figure(events, start.get("majority_baseline")), f"ft-acc-{job_id}", download=False)
            elif start.get("task") == "distill":
                common.show(FF.heldout_figure(events, None, "agreement", "top-1 agreement with the teacher"),
                            f"ft-agree-{job_id}", download=False)
            else:
                before = (start.get("heldout_before") or {}).get("perplexity")
                common.show(FF.heldout_figure(events, before, "perplexity", "held-out perplexity"), f"ft-ppl-{job_id}",
                            download=False)
    if "confusion" in last:
        common.show(FF.confusion_figure(last["confusion"], start.get("labels", [])), f"ft-conf-{job_id}", download=False)
    if job.state == "failed":
        st.error(job.message)
    W.stop_resume(queue, owner, job, "ft")


def _inside(queue: J.JobQueue, job: J.Job) -> None:
    """A finished job: its record, and the base (teacher) beside the result on a typed text."""
    from model.finetune_compare import compare_distributions, head_shift

    name = queue.model_name(job.id)
    try:
        record = json.loads((queue.dir(job.id) / "training_record.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        st.error(f"{name} has no readable training record")
        return
    st.success(f"Finished. The model is listed as **{name}** in the model picker of every page.")
    st.dataframe(FF.record_table(record), hide_index=True)
    task = record.get("task")
    base = job.request.get("base") or job.request.get("teacher")
    text = state.text_input("Text to compare the two models on", "fttext", TEXT.get(task, TEXT["classify"]))
    if not text.strip():
        st.error("The text is empty: type a sentence above.")
        return
    try:
        if task == "classify":
            from model.classify import classify, load_classifier

            preds = classify(load_classifier(name, restrict=True), [text])[0]
            common.show(FF.class_probs_figure(preds, f"{name}: {preds[0].label}"), f"ft-probs-{job.id}", download=False)
        a, b = common.load(base), common.load(name)
        if a is None or b is None:
            return
        if task in ("lm", "distill"):
            d = compare_distributions(a, b, text)
            st.markdown(f"Predictions for {d.where}: probability mass in common **{d.overlap:.2f}**, "
                        f"same most probable token: **{'yes' if d.same_top1 else 'no'}**")
            c = st.columns(2)
            with c[0]:
                common.show(candidates_figure(d.a, d.a[0], title=f"{'teacher' if task == 'distill' else 'base'}: {base}"),
                            f"ft-dist-a-{job.id}", download=False)
            with c[1]:
                common.show(candidates_figure(d.b, d.b[0], title=f"{'student' if task == 'distill' else 'fine-tuned'}: {name}"),
                            f"ft-dist-b-{job.id}", download=False)
        if task != "distill":
            s = head_shift(a, b, text)
            c = st.columns([3, 2])
            with c[0]:
                common.show(FF.head_shift_grid(s), f"ft-heads-{job.id}", download=False)
            with c[1]:
                st.caption("Heads that moved most (mean total-variation distance of their attention rows, 0-1):")
                st.dataframe(FF.shift_table(s), hide_index=True)
    except LmscopeError as e:
        st.error(str(e))


def render() -> None:
    st.title("Fine-tune and distill")
    owner, queue = W.owner(), W.queue()
    W.show_note("ft")
    mode = state.radio("What to do", "ftmode", list(MODES), "classify", format_func=MODES.get)
    _form(queue, owner, mode)
    jobs = W.my_jobs(queue, owner, "Your fine-tuning and distillation jobs", KINDS)
    if jobs is None:
        return
    st.dataframe([{"job": j.id, "from": j.request.get("base") or j.request.get("teacher"),
                   "data": str(j.request.get("corpus", "")).rsplit("/", 1)[-1], "status": j.label, "note": j.message}
                  for j in jobs], hide_index=True)
    job = W.pick_job(jobs, "ft")
    active = job.state in J.ACTIVE
    st.fragment(_live, run_every=POLL_S if active else None)(queue, owner, job.id, active)
    if job.state == "finished":
        W.list_once(job)
        _inside(queue, job)


render()
