"""The one rule for generated blocks in the docs: ``<!-- KIND:NAME -->`` ... ``<!-- /KIND:NAME -->`` is replaced
whole by a script's output, so no number inside it is typed by hand (used by ``sweep_table.py`` and
``claims_table.py``)."""

from __future__ import annotations

import re


def replace_block(text: str, kind: str, name: str, body: str) -> str | None:
    """``text`` with the block ``<!-- KIND:NAME -->`` ... ``<!-- /KIND:NAME -->`` replaced by ``body`` between the
    same markers; ``None`` if ``text`` has no such block."""
    start, end = f"<!-- {kind}:{name} -->", f"<!-- /{kind}:{name} -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        return None
    return pattern.sub(lambda _: f"{start}\n{body}\n{end}", text, count=1)
