"""What an explorer computes from a finished results folder: pairs, groups and chains, 2-D maps,
exports. No Streamlit: the app draws what these functions return.

Imports the engine; never ``ingest``, the CLI or the app.
"""
