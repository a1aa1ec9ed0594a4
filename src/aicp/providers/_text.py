"""Text a remote model produced (a transcript, a description, a prompt), kept as a step output.

The text itself flows to the next step (a ``text`` output); it is also
written next to the media outputs as ``.txt``, with the provider's whole
answer as ``.json`` (word timings, token usage), so a run's folder holds
everything it paid for. Both files appear atomically.
"""

from __future__ import annotations

import json
from typing import Any


def save_text(ctx: Any, text: str, raw: Any, suffix: str = "") -> list[str]:
    """Write ``text`` and the raw answer; return their paths."""
    paths = []
    for ext, content in (("txt", text if text.endswith("\n") else text + "\n"),
                         ("json", json.dumps(raw, indent=2, ensure_ascii=False) + "\n")):
        with ctx.atomic_output(ext, suffix) as tmp:
            tmp.write_text(content, encoding="utf-8")
        paths.append(str(ctx.output_path(ext, suffix)))
    return paths
