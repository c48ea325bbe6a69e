"""semdedup explorer: ``streamlit run app.py [-- --results DIR]`` (or ``SEMDEDUP_RESULTS=DIR``)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub from the app

import streamlit as st  # noqa: E402

import semdedup_app as sa  # noqa: E402

st.set_page_config(page_title="semdedup explorer", page_icon=":material/content_copy:", layout="wide")
sa.init_state()

pages = {
    "home": st.Page(sa.PAGES["home"], title="Home", icon=":material/home:", default=True),
    "threshold": st.Page(sa.PAGES["threshold"], title="Threshold", icon=":material/tune:"),
    "pairs": st.Page(sa.PAGES["pairs"], title="Pairs", icon=":material/compare:"),
    "clusters": st.Page(sa.PAGES["clusters"], title="Clusters", icon=":material/category:"),
    "map": st.Page(sa.PAGES["map"], title="Map", icon=":material/scatter_plot:"),
    "export": st.Page(sa.PAGES["export"], title="Export", icon=":material/download:"),
    "story": st.Page(sa.PAGES["story"], title="Stakeholder view", icon=":material/campaign:"),
}
page = st.navigation(list(pages.values()))

page.run()
