"""What runs inside the child: the worker's main and the warm template it is forked from.
This side is import-light, like trio's ``_core``: it imports only ``aicp._worker.main``,
``aicp._context`` and ``aicp._targets``, because every import here is paid per step.
"""
