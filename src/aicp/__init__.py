"""aicp: multi-step content pipelines, every step in its own supervised worker process.

The public API is small and re-exported here; it is loaded lazily, so that
``import aicp`` (and ``aicp --version``) costs almost nothing::

    import aicp
    chain = aicp.load_chain("pipeline.yaml")
    result = aicp.run_chain(chain, input="a lighthouse at dawn")
    print(result.success, result.outputs)
"""

from __future__ import annotations

from aicp._version import __version__

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs every worker ~10 ms
if TYPE_CHECKING:
    from aicp._run.api import run_chain
    from aicp._context import StepContext, StepFailed
    from aicp._process.cancel import Cancel
    from aicp._chain.load import Chain, Step, load_chain
    from aicp._errors import AicpError, ChainError, ExitCode
    from aicp._run.supervisor import ChainResult

__all__ = ["AicpError", "Cancel", "Chain", "ChainError", "ChainResult", "ExitCode", "Step", "StepContext",
           "StepFailed", "__version__", "load_chain", "run_chain"]

_LAZY = {
    "load_chain": "aicp._chain.load", "Chain": "aicp._chain.load", "Step": "aicp._chain.load",
    "run_chain": "aicp._run.api", "ChainResult": "aicp._run.supervisor",
    "AicpError": "aicp._errors", "ChainError": "aicp._errors", "ExitCode": "aicp._errors",
    "Cancel": "aicp._process.cancel", "StepContext": "aicp._context", "StepFailed": "aicp._context",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aicp' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
