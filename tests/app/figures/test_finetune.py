"""app/figures/finetune.py (the Fine-tune page's figures) on hand-made results."""
import numpy as np

from app.figures import finetune as FF
from model.classify import Prediction
from model.finetune_compare import HeadShift


def test_confusion_and_curves_show_the_numbers_given():
    fig = FF.confusion_figure([[5, 1], [0, 6]], ["cooking", "<b>sport</b>"])
    assert [list(r) for r in fig.data[0].z] == [[5, 1], [0, 6]] and "&lt;b&gt;sport&lt;/b&gt;" in fig.data[0].x
    events = [{"type": "eval", "step": s, "accuracy": a, "total_steps": 20} for s, a in ((10, 0.6), (20, 0.9))]
    fig = FF.heldout_figure(events, 0.5)
    assert list(fig.data[0].y) == [0.6, 0.9] and fig.layout.shapes[0].y0 == 0.5
    assert list(FF.class_probs_figure([Prediction("a", 0.7), Prediction("b", 0.3)]).data[0].y) == [0.7, 0.3]


def test_head_shift_grid_outlines_the_head_that_moved_most():
    thumbs = np.zeros((2, 3, 4, 4), np.float32)
    thumbs[1, 2] = 1.0
    s = HeadShift(tokens=[], shift=np.array([[0, 0, 0], [0, 0, 0.4]], np.float32), diff_thumbs=thumbs,
                  ranking=[(1, 2, 0.4), (0, 0, 0.0)], max_diff=0.8)
    fig = FF.head_shift_grid(s)
    assert "How each head's attention changed" in fig.layout.title.text and len(fig.layout.shapes) == 1
    assert FF.shift_table(s).iloc[0].tolist() == [1, 2, 0.4]


def test_record_table_for_each_task():
    common = {"steps": 10, "trainable_parameters": 5, "parameters": 10, "wall_time_s": 1.0}
    clf = FF.record_table({"task": "classify", "heldout": {"accuracy": 0.9}, "majority_baseline": 0.5,
                           "majority_label": "a", "train_examples": 8, "heldout_examples": 2, **common})
    assert "0.900" in clf["value"].tolist()
    lm = FF.record_table({"task": "lm", "heldout": {"perplexity": 3.0}, "heldout_before": {"perplexity": 5.0}, **common})
    assert lm["value"].tolist()[:2] == ["5.00", "3.00"]
    d = FF.record_table({"task": "distill", "heldout": {"perplexity": 4.0, "agreement": 0.75}, "teacher_parameters": 100,
                         "student_parameters": 10, "teacher_heldout": {"perplexity": 3.0},
                         "speed": {"teacher_tokens_per_s": 10, "student_tokens_per_s": 40, "speedup": 4.0}, **common})
    assert "0.750" in d["value"].tolist() and any("4.00x" in v for v in d["value"])
