"""From raw data (image folders, tables, embedding shards) to embeddings, then through the engine.

Imports the engine; never ``explore``, the CLI or the app.
"""
