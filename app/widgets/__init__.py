"""Embedded views that plotly does not draw: bertviz's head and model views, offline (`bertviz_view`)."""
