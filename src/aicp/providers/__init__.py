"""Remote AI providers: the model table (pure data) and the executors that call them.

``models`` is the catalogue of every remote model; ``credentials`` the one
rule for each provider's key; ``_http`` the retries, authentication and error
mapping every provider shares; ``_files`` what they do with files; then one
module per protocol: ``fal_queue`` + ``fal_step`` (the queue executor, also
used for Replicate), ``replicate``, ``gemini``, ``openrouter``.

Nothing here is imported by the worker unless a step actually runs on a
provider, and nothing at module level opens a connection: validation,
``list-models`` and ``estimate-cost`` work offline.
"""
