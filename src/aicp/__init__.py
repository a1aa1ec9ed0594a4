"""aicp: multi-step content pipelines, every step in its own supervised worker process.

The public API is small and re-exported here; it is loaded lazily, so that
``import aicp`` (and ``aicp --version``) costs almost nothing::

    import aicp
    chain = aicp.load_chain("pipeline.yaml")
    result = aicp.run_chain(chain, input="a lighthouse at dawn")
    print(result.success, result.outputs)

Every error the package raises for the user's input is an :class:`AicpError`
subclass exported here, with the exit code the CLI would use (``.exit_code``).
"""

from aicp._version import __version__

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs every worker ~10 ms
if TYPE_CHECKING:
    from aicp._chain.load import load_chain
    from aicp._chain.model import Chain, Step
    from aicp._context import StepContext, StepFailed
    from aicp._errors import (AicpError, ChainError, CredentialsError, ExitCode, MissingInputError,
                              NotConfirmed, OutputError, ProviderError, UsageError)
    from aicp._process.cancel import Cancel
    from aicp._run.run import run_chain
    from aicp._run.record import RunRecordError
    from aicp._run.results import ChainResult

# name -> the module that defines it; imported on first use (see __getattr__)
_LAZY = {
    "load_chain": "aicp._chain.load", "Chain": "aicp._chain.model", "Step": "aicp._chain.model",
    "run_chain": "aicp._run.run", "ChainResult": "aicp._run.results",
    "Cancel": "aicp._process.cancel", "StepContext": "aicp._context", "StepFailed": "aicp._context",
    "AicpError": "aicp._errors", "ChainError": "aicp._errors", "CredentialsError": "aicp._errors",
    "ExitCode": "aicp._errors", "MissingInputError": "aicp._errors", "NotConfirmed": "aicp._errors",
    "ProviderError": "aicp._errors", "UsageError": "aicp._errors", "RunRecordError": "aicp._run.record",
    "OutputError": "aicp._errors",
}

__all__ = ["AicpError", "Cancel", "Chain", "ChainError", "ChainResult", "CredentialsError", "ExitCode",
           "MissingInputError", "NotConfirmed", "OutputError", "ProviderError", "RunRecordError", "Step", "StepContext",
           "StepFailed", "UsageError", "__version__", "load_chain", "run_chain"]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aicp' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
