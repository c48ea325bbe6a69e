"""The SemDeDup engine: from an embedding matrix to a results folder, and questions asked of one.

Lowest layer of ``semdedup_core``: it imports nothing from ``ingest``, ``explore`` or the CLI.
"""
