"""The package version, in a module of its own so that `aicp --version` imports nothing else."""

__version__ = "0.1.0"
SCHEMA_VERSION = "1"  # of the event stream and the --json envelopes (here: importing it costs nothing)
