"""A chain file becomes an immutable, validated plan: loading, the step-type catalogue,
and how a run's input is resolved. Nothing here starts a process.
"""
