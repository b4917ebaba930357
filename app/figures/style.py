"""Type sizes, line metrics and the colours that several pages' figures share, so the pages agree."""

BASE_FONT = 12  # plotly's default type size (px)
LECTURE_FONT = 18  # app.common.show's figure type size in lecture mode
LECTURE_TITLE_FONT = 24  # and its titles' (4/3 of the type)
LINE = 1.3  # a line of text is this many font sizes tall
TICK_PAD = 8  # px between an axis and its tick labels, and around them

KEPT_COLOR = "#1f77b4"  # plotly blue: tokens still in the running, a model's probabilities, the training loss
PICK_COLOR = "#d62728"  # red: the sampled / chosen token, the held-out loss
TRUTH_COLOR = "#e6550d"  # orange: the token that was masked; the selected token or head
