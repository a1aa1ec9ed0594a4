"""Remote AI providers: model tables (pure data) and the executors that call them.

Nothing here is imported by the worker unless a step actually runs on a
provider, and nothing at module level opens a connection: validation,
``list-models`` and ``estimate-cost`` work offline.
"""
