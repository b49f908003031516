"""Escape sequences in prompts, processed as llama.cpp processes them (its `-e`, on by default)."""

from __future__ import annotations

import re

_NAMED = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("'"): b"'", ord('"'): b'"', ord("\\"): b"\\"}


def process_escapes(text: str) -> str:
    """llama.cpp's string_process_escapes: \\n \\r \\t \\' \\" \\\\ and \\xHH (one byte); any other
    backslash is kept as it is."""
    raw, out, i = text.encode(), bytearray(), 0
    while i < len(raw):
        if raw[i] == ord("\\") and i + 1 < len(raw):
            if raw[i + 1] in _NAMED:
                out += _NAMED[raw[i + 1]]
                i += 2
                continue
            if raw[i + 1] == ord("x") and re.fullmatch(rb"[0-9a-fA-F]{2}", raw[i + 2 : i + 4]):
                out.append(int(raw[i + 2 : i + 4], 16))
                i += 4
                continue
        out.append(raw[i])
        i += 1
    return out.decode("utf-8", errors="replace")
