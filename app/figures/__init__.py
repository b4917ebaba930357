"""Result objects -> plotly figures, tables and small HTML snippets, one module per page (attention,
tokenization, masked_lm, generation and beam_tree, compare, training, finetune, probes, beyond). Pure
functions: no Streamlit, no torch, so each is unit-tested without a browser.

Shared by all: `text` (how a token is shown and how text is escaped for plotly and HTML) and `style` (type
sizes and the colours several pages use).
"""
