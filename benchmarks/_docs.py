"""The one way a benchmark writes its generated section into a Markdown page."""

from __future__ import annotations

import sys
from pathlib import Path


def replace_section(doc: Path, begin: str, end: str, body: str, *, create: bool = True,
                    after: str | None = None) -> bool:
    """Put ``body`` between the ``begin`` / ``end`` marker lines of ``doc``, replacing what was
    there (the text around the markers is kept as it is). Without the markers the section is
    inserted after the line ``after`` (e.g. another section's end marker) when the page has it, else
    appended (``create``), or the page is left alone with a note on stderr. Returns whether the
    page was written."""
    doc = Path(doc)
    text = doc.read_text() if doc.exists() else ""
    block = begin + "\n\n" + body.strip("\n") + "\n\n" + end
    if begin in text and end in text:
        pre, rest = text.split(begin, 1)
        text = pre + block + rest.split(end, 1)[1]
    elif create and after and after in text:
        pre, rest = text.split(after, 1)
        text = pre + after + "\n\n" + block + "\n\n" + rest.lstrip("\n")
    elif create:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        print(f"{doc}: markers missing, not updated", file=sys.stderr)
        return False
    doc.write_text(text)
    return True
