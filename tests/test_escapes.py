"""Escapes in prompts are processed as llama.cpp's string_process_escapes does."""

from __future__ import annotations

import pytest

from llamatp.escapes import process_escapes


@pytest.mark.parametrize("typed, meant", [
    (r"a\nb", "a\nb"),
    (r"\r\t", "\r\t"),
    (r"it\'s \"so\"", "it's \"so\""),
    (r"C:\\dir", "C:\\dir"),
    (r"\x41\x62", "Ab"),
    (r"\xc3\xa9", "é"),  # bytes, so that two of them make one character
    (r"\x4", r"\x4"),  # not two hex digits: kept
    (r"\q", r"\q"),  # not an escape: kept
    ("end\\", "end\\"),  # a last backslash: kept
    ("é\\n", "é\n"),
])  # fmt: skip
def test_escapes_become_the_characters_they_name(typed: str, meant: str) -> None:
    assert process_escapes(typed) == meant
