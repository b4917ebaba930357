"""lmscope kernels: pure torch math (no transformers, no streamlit)."""
