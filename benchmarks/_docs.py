"""The one way a benchmark writes its generated section into a Markdown page."""

from __future__ import annotations

import sys
from pathlib import Path


def replace_section(doc: Path, begin: str, end: str, body: str, *, create: bool = True) -> bool:
    """Put ``body`` between the ``begin`` / ``end`` marker lines of ``doc``, replacing what was
    there (the text around the markers is kept as it is). Without the markers the section is
    appended (``create``) or the page is left alone with a note on stderr. Returns whether the
    page was written."""
    doc = Path(doc)
    text = doc.read_text() if doc.exists() else ""
    block = begin + "\n\n" + body.strip("\n") + "\n\n" + end
    if begin in text and end in text:
        pre, rest = text.split(begin, 1)
        text = pre + block + rest.split(end, 1)[1]
    elif create:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        print(f"{doc}: markers missing, not updated", file=sys.stderr)
        return False
    doc.write_text(text)
    return True
