"""Export: the kept, removed (or leaked) items at the current ε, as downloads and (unless the explorer is
read-only) as files in the results folder."""

from __future__ import annotations

import streamlit as st

import semdedup_app as sa
from semdedup_app.markdown import escape_markdown
from semdedup_core import SemDedupError
from semdedup_core.explore import export as sd_export

sa.page_setup("Export")

res = sa.require_results()
e = sa.eps()
st.title("Export")
n_rem = res.n_removed(e)
st.write(
    f"At ε = {e:.4f}: **{sa.fmt_int(res.n_items - n_rem)} kept**, **{sa.fmt_int(n_rem)} removed**. "
    "Exports are lists of ids (and paths) with each item's score (`max_sim`) and the earlier item it is "
    "most similar to (`dup_of`). Your input data is never changed. In CSV files a cell that a spreadsheet "
    "would run as a formula (starting with `=`, `+`, `-`, `@`) is written with a `'` in front."
)
if res.has_reference:
    st.write(
        f"**{sa.fmt_int(res.n_leaked(e))} leaked**: similar to a held-out item above 1 − ε; their export lists "
        "each with the held-out item (`ref_id`) and the similarity (`ref_sim`)."
    )
c1, c2, c3, c4 = st.columns(4)
which_options = sd_export.WHICH if res.has_reference else tuple(w for w in sd_export.WHICH if w != "leaked")
if st.session_state.get("exp_which") not in which_options:
    st.session_state.pop("exp_which", None)
which = c1.radio("Items", which_options, key="exp_which", horizontal=True)
fmt = c2.radio("Format", sd_export.FORMATS, key="exp_fmt", horizontal=True)
txt_options = [c for c in ("id", "path") if c in res.columns]
txt_column = c3.radio("TXT lists", txt_options, key="exp_txt", horizontal=True, disabled=fmt != "txt")
rule = c4.radio(
    "Rule",
    sa.REMOVAL_RULES,
    key="exp_rule",
    horizontal=True,
    help=" ".join(f"{name}: {sa.rule_words(name)}." for name in sa.REMOVAL_RULES)
    + " (Leaked items do not depend on the rule.)",
    disabled=which == "leaked",
)
if which == "leaked":
    rule = "paper"
name = sd_export.file_name(e, which, fmt, txt_column if fmt == "txt" else "id", rule)
labels = sa.audit.store(res)
if rule == "audited":
    st.caption(f"Verdicts from {escape_markdown(str(labels.path))} (choose another store on Review).")
try:
    st.dataframe(sd_export.export_frame(res, e, which, rule, labels, limit=20), hide_index=True)  # the first rows
except SemDedupError as exc:
    sa.error(exc)
    st.stop()

n_rows = sd_export.export_count(res, e, which, rule, labels)
d1, d2 = st.columns(2)
with d1:
    if n_rows > sa.DOWNLOAD_ROWS:  # a browser download is built in the app's memory: large lists go to a file
        st.caption(
            f"{sa.fmt_int(n_rows)} rows is more than a download from the explorer holds "
            f"({sa.fmt_int(sa.DOWNLOAD_ROWS)}): write it into the results folder (written a block at a time), or "
            f"run `python -m semdedup_core export {escape_markdown(str(res.path))} --eps {e:.4f} --which {which} "
            f"--format {fmt}{' --rule ' + rule if rule != 'paper' else ''}`."
        )
    elif st.button("Prepare download", key="exp_prepare"):
        st.session_state["exp_ready"] = (str(res.path), e, which, fmt, txt_column, rule)
    if n_rows <= sa.DOWNLOAD_ROWS and st.session_state.get("exp_ready") == (
        str(res.path),
        e,
        which,
        fmt,
        txt_column,
        rule,
    ):
        st.download_button(
            f"Download {name}",
            data=sa.export_bytes(
                res, e, which, fmt, txt_column if fmt == "txt" else "id", rule, str(labels.path), labels.stamp()
            ),
            file_name=name,
            key="exp_download",
        )
with d2:
    if not sa.gate.allowed("write-export", res.path):
        st.caption("This explorer is read-only: exports are downloads only.")
    elif st.button("Write into the results folder", key="exp_write"):
        try:
            with st.spinner(f"Writing {sa.fmt_int(n_rows)} rows…"):
                path = sa.gate.write_export(res, e, which, fmt, txt_column if fmt == "txt" else "id", rule, labels)
            st.success(f"Wrote {escape_markdown(str(path))}")
        except (SemDedupError, OSError) as exc:
            sa.error(f"could not write the export: {exc}")

# -- the deduplicated dataset: the kept part of the run's own input, in its own format ----------------------
st.subheader("The deduplicated dataset")
offer = sa.apply_offer(res, e)
if offer is None:
    st.caption(
        "This run deduplicated an embedding matrix: it has no raw input to write a deduplicated copy of. "
        "Export the kept ids above and filter your data with them."
    )
    st.stop()
rule_apply = rule if which != "leaked" else "paper"
st.write(
    f"`semdedup apply` writes the items kept at ε = {e:.4f} under the {rule_apply} rule in the input's own "
    f"format ({escape_markdown(offer['kind'])}: {escape_markdown(offer['description'])}). It never overwrites: "
    "the path must be new. Your input is only read."
)
a1, a2 = st.columns([3, 2])
target = a1.text_input("Write to (a new path)", value=offer["suggested"], key="exp_apply_out")
mode = a2.radio("Images as", offer["modes"], key="exp_apply_mode", horizontal=True) if offer["modes"] else None
leaked = st.checkbox("Also leave out the leaked items", key="exp_apply_leaked") if res.has_reference else False
st.code(sa.apply_command(res, e, target, rule_apply, str(labels.path), leaked, mode), language="bash")
refused = sa.gate.problem("apply")
if refused is not None:
    st.caption(refused[0].upper() + refused[1:] + ".")
elif st.button("Write the deduplicated dataset", key="exp_apply"):
    try:
        with st.spinner("Writing the kept items…"):
            done = sa.apply_kept(res, e, target, rule_apply, labels, leaked, mode)
        st.success(
            f"Wrote {sa.fmt_int(done.kept)} of {sa.fmt_int(done.items)} items ({sa.fmt_int(done.removed)} removed) "
            f"to {escape_markdown(str(done.out))}"
        )
    except (SemDedupError, OSError) as exc:
        sa.error(f"could not write the deduplicated dataset: {exc}")
