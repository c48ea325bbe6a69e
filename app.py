"""semdedup explorer, and its Home page: ``streamlit run app.py [-- --results DIR]`` (or
``SEMDEDUP_RESULTS=DIR``). The other pages are Streamlit's ``pages/`` files; every page, this one
included, starts from the ``semdedup_app`` package (state, cached views, the sidebar and its navigation).

Home: open a results folder, build an offline demo, or start a run in the background. In read-only mode
(``-- --read-only``, for sharing the app) Home only lists the shared results folders: no path box, no
demos to build, no runs. Every folder it opens and every run it starts passes :mod:`semdedup_app.gate`.
"""

from __future__ import annotations

import streamlit as st

import semdedup_app as sa  # sets HF_HUB_OFFLINE before any model can load
from semdedup_app.markdown import escape_markdown
from semdedup_core import SemDedupError

sa.page_setup("Home")
st.title("semdedup explorer")
st.write(
    "See what SemDeDup would remove from a dataset, tune ε while watching the consequences, and check "
    "every removal against the item that caused it."
)

res = sa.current_results()
sa.sidebar(res)
if res is not None:
    counts = res.run.get("counts", {})
    st.success(
        f"Open: **{escape_markdown(str(res.path))}** — {sa.fmt_int(res.n_items)} items in "
        f"{sa.fmt_int(res.n_clusters)} clusters (largest {sa.fmt_int(counts.get('largest_cluster', 0))})."
    )
    first_look = res.run.get("first_look")
    if first_look:
        st.info(
            f"**First look**: {sa.fmt_int(res.n_items)} of the {sa.fmt_int(first_look.get('items_total', 0))} items "
            "(up to half of them items that share rare words with another, the rest a random sample), embedded and "
            "deduplicated exactly as the whole demo will be. The whole demo is being built in the background and "
            "replaces this view by itself when it is done (the sidebar shows how far it is)."
        )
    c1, c2, c3 = st.columns(3)
    c1.page_link(sa.PAGES["threshold"], label="Tune ε", icon=":material/tune:")
    c2.page_link(sa.PAGES["pairs"], label="Audit the pairs", icon=":material/compare:")
    c3.page_link(sa.PAGES["stakeholder"], label="Stakeholder view", icon=":material/campaign:")
    e = sa.eps()
    examples = sa.showcase(res, e).head(3)
    if not examples.empty:
        st.subheader(f"What it removes at ε = {e:.4g}: a few examples")
        sa.show_pairs(res, examples, e)


# -- open a folder -------------------------------------------------------------------------------------
READ_ONLY = sa.read_only()
st.subheader("Open a results folder")


def _open_typed() -> None:
    typed = st.session_state.get("home_path", "").strip()
    if typed:
        sa.open_folder(typed)


if READ_ONLY:
    st.caption("This explorer is read-only: it shows the results folders it shares; nothing is run or written.")
    for i, path in enumerate(sa.shared_folders()[:50]):
        a, b = st.columns([6, 1])
        a.text(sa.isolate(path.name))
        if b.button("Open", key=f"home_shared_{i}"):
            sa.open_folder(path)
            st.rerun()
    st.stop()

with st.form("home_open"):
    st.text_input("Results folder", key="home_path", placeholder="/path/to/results")
    st.form_submit_button("Open", on_click=_open_typed)

recent = sa.jobs.recent_runs()  # those the gate lets this session open
if recent:
    st.caption("Recent runs")
    for i, path in enumerate(recent[:10]):
        a, b = st.columns([6, 1])
        a.text(sa.isolate(str(path)))
        if b.button("Open", key=f"home_recent_{i}"):
            sa.open_folder(path)
            st.rerun()


# -- offline demos -------------------------------------------------------------------------------------
if st.session_state.get("sd_waiting_demo") and res is None:
    st.info(
        f"Building the offline **{st.session_state['sd_waiting_demo']}** demo (first start only: embedding on a "
        "2-core CPU takes a few minutes; the text demo opens a first look at part of it within about a minute). "
        "It opens here by itself; progress is below."
    )
demos = sa.demo_entries()  # those the gate lets this session open
if demos:
    st.subheader("Offline demos")
for demo in demos:
    kind, folder, built = demo["kind"], demo["folder"], demo["built"]
    a, b = st.columns([6, 1])
    if demo["building"]:
        a.write(f"**{kind}** demo — building in the background (progress below)")
        continue
    a.write(
        f"**{kind}** demo — "
        + ("built" if built else "not built yet (runs offline in the background; embedding on a CPU takes a while)")
    )
    if built:
        if b.button("Open", key=f"home_demo_open_{kind}"):
            sa.open_folder(folder)
            st.rerun()
    elif b.button("Build", key=f"home_demo_build_{kind}"):
        sa.build_demo(kind)


# -- start a run ---------------------------------------------------------------------------------------
st.subheader("Start a run")
with st.form("home_run"):
    source = st.text_input(
        "Embeddings (.npy, n × d) or a data folder/file",
        key="home_src",
        help="An .npy file is deduplicated as it is; anything else is read as raw data and embedded with the encoder.",
    )
    encoder = st.text_input("Encoder (raw data only)", key="home_encoder", value="")
    c1, c2, c3 = st.columns(3)
    k = c1.number_input("Clusters k", min_value=1, value=100, step=1, key="home_k")
    keep = c2.selectbox("Keep policy", ["hard", "easy", "random"], key="home_keep")
    seed = c3.number_input("Seed", min_value=0, value=0, step=1, key="home_seed")
    out = st.text_input("Results folder to write", key="home_out", placeholder=str(sa.jobs.home() / "runs" / "my-run"))
    submitted = st.form_submit_button("Start")
if submitted:
    try:
        job = sa.jobs.start_run(source, encoder, int(k), keep, int(seed), out)  # the gate checks input and output
        st.success(f"Started: writing {escape_markdown(job['out'])}")
    except SemDedupError as exc:
        sa.error(exc)


# -- runs in the background (polled; survives a browser refresh) ---------------------------------------
@st.fragment(run_every=1.0)
def running_jobs() -> None:
    if sa.open_awaited_demo():  # its first look, or the whole demo once built
        st.rerun(scope="app")
    all_jobs = sa.jobs.list_jobs()
    if not all_jobs:
        return
    st.subheader("Runs started here")
    for job in all_jobs[:8]:
        label = escape_markdown(job["label"])
        info = job["progress_info"] or {}
        if job["state"] == "running":
            total = max(1, int(info.get("total", 1)))
            frac = min(1.0, max(0.0, int(info.get("done", 0)) / total))
            st.progress(frac, text=f"{label}: {info.get('stage', 'starting')} {info.get('done', 0)}/{total}")
        elif job["state"] == "complete":
            a, b = st.columns([6, 1])
            a.write(f":material/check_circle: **{label}** finished — {escape_markdown(job['out'])}")
            if b.button("Open", key=f"home_job_{job['id']}"):
                sa.open_folder(job["out"])
                st.rerun(scope="app")
            wanted = [st.session_state.get("sd_waiting_demo") or "text"]
            if st.session_state.get("sd_results_dir") is None and job["kind"] == "demo" and job["args"] == wanted:
                sa.open_folder(job["out"])  # with nothing open, open the awaited demo once it is built
                st.session_state["sd_waiting_demo"] = None
                st.rerun(scope="app")
        else:
            st.error(f"{label}: {job['state']} (exit status {job['rc']})")
            if job["log_tail"]:
                st.code(job["log_tail"][-1500:], language=None)


running_jobs()
