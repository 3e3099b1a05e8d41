"""``Content-Disposition: attachment`` for any filename (RFC 6266, RFC 5987).

A filename is stored as it was given, in any script. An HTTP header carries Latin-1 at
most (and a control character not at all), so the name goes out twice: as an ASCII
fallback in ``filename=`` for old clients, and exactly, as percent-encoded UTF-8, in
``filename*=``, which clients that know it prefer.
"""

from __future__ import annotations

import re
from urllib.parse import quote

__all__ = ["attachment"]

# what the quoted ``filename=`` cannot carry as it is: anything outside printable ASCII,
# the quote and backslash that would end or escape it, and the percent sign that some
# clients decode there (RFC 6266, appendix D)
_NOT_PLAIN = re.compile(r'[^\x20-\x7e]|["\\%]')
# RFC 5987 attr-char, besides letters and digits (which quote() never encodes)
_ATTR_CHARS = "!#$&+-.^_`|~"


def attachment(filename: str) -> str:
    """The header value that offers ``filename`` for download."""
    fallback = _NOT_PLAIN.sub("_", filename)
    encoded = quote(filename, safe=_ATTR_CHARS, errors="replace")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
