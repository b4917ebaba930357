"""lmscope Streamlit entry point (pages are added by the app work)."""
import streamlit as st

st.set_page_config(page_title="lmscope", layout="wide")
st.title("lmscope")
st.write("Look inside BERT- and GPT-2-style language models.")
