"""The CLI's commands and what they print. Only :mod:`aicp.cli` imports this package;
nothing below the command line imports upward into it.
"""
