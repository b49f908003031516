"""Render a conversation with the model's Jinja chat template.

A template read from a GGUF file is untrusted input, so it runs in Jinja's immutable sandbox,
with the helpers Hugging Face templates expect (`raise_exception`, `strftime_now`, a `tojson`
that does not escape HTML). Any error it raises becomes a one-line LlamatpError.
"""

import functools
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llamatp.chat_templates import CHATML_TEMPLATE, NAMED_TEMPLATES
from llamatp.errors import LlamatpError


def chosen_template(text: str | None, path: Path | None) -> str | None:
    """The template that --chat-template (Jinja text, or a name in NAMED_TEMPLATES) or
    --chat-template-file give, checked now; None: the model's own."""
    if text is not None and path is not None:
        raise LlamatpError("give --chat-template or --chat-template-file, not both")
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise LlamatpError(f"cannot read chat template file {path}: {getattr(e, 'strerror', None) or e}") from None
    elif text is not None and re.fullmatch(r"[\w.-]+", text):
        if text not in NAMED_TEMPLATES:
            raise LlamatpError(f"--chat-template {text}: no template has that name (known: "
                               f"{', '.join(sorted(NAMED_TEMPLATES))}); give the template's Jinja text, "
                               "or --chat-template-file")
        text = NAMED_TEMPLATES[text]
    if text is not None:
        _compile(text)
    return text


def _raise_exception(message: str) -> None:
    raise jinja2.TemplateError(message)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


@functools.cache
def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


@functools.lru_cache(maxsize=8)
def _compile(template: str) -> jinja2.Template:
    try:
        return _environment().from_string(template)
    except jinja2.TemplateSyntaxError as e:
        raise LlamatpError(f"chat template: line {e.lineno}: {_one_line(e.message)}") from None


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


def render_chat(
    template: str | None,
    messages: list[dict[str, str]],
    *,
    bos_token: str,
    eos_token: str,
    add_generation_prompt: bool = True,
) -> str:
    """The text of `messages` (dicts with "role" and "content") as the template lays it out.

    `template` is the GGUF's `tokenizer.chat_template`; when the model has none (None or
    empty), ChatML is used, as llama.cpp does. With `add_generation_prompt` the text ends
    with the header of the assistant's reply.
    """
    compiled = _compile(template or CHATML_TEMPLATE)
    try:
        return compiled.render(
            messages=messages,
            bos_token=bos_token,
            eos_token=eos_token,
            add_generation_prompt=add_generation_prompt,
        )
    except Exception as e:  # the template is code: whatever it raises is its own error
        raise LlamatpError(f"chat template: {_one_line(e) or type(e).__name__}") from None


class ChatSession:
    """A conversation rendered turn by turn for conversation mode (`-cnv`).

    `add` returns only the text the model has not seen yet: the whole conversation is rendered
    again and the part already rendered is cut off, as llama.cpp's `common_chat_format_single`
    does. The model's replies are recorded with `add_reply`; their text, ending with the
    end-of-turn token, is already in the model's context.
    """

    def __init__(
        self,
        template: str | None,
        *,
        bos_token: str,
        eos_token: str,
        tokenizer_adds_bos: bool = False,
    ) -> None:
        """`tokenizer_adds_bos`: drop a leading `bos_token` from the rendering, because the
        tokenizer adds BOS itself and the model would otherwise see two."""
        self.template = template
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.tokenizer_adds_bos = tokenizer_adds_bos
        self.messages: list[dict[str, str]] = []

    def add(self, role: str, content: str) -> str:
        """Append a message and return the text to feed the model next.

        After a user message the text ends with the assistant's header, ready to generate.
        """
        past = self._render(add_generation_prompt=False) if self.messages else ""
        follows_reply = bool(self.messages) and self.messages[-1]["role"] == "assistant"
        self.messages.append({"role": role, "content": content})
        add_generation_prompt = role == "user"
        new_text = self._render(add_generation_prompt)[len(past) :]
        # A reply stops at its end-of-turn token, so the newline the template puts after it
        # was never generated; feed it before the next turn.
        if add_generation_prompt and follows_reply and past.endswith("\n"):
            return "\n" + new_text
        return new_text

    def add_reply(self, content: str) -> None:
        """Record the assistant's generated reply (its text without the end-of-turn token)."""
        self.messages.append({"role": "assistant", "content": content})

    def _render(self, add_generation_prompt: bool) -> str:
        text = render_chat(
            self.template,
            self.messages,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
            add_generation_prompt=add_generation_prompt,
        )
        if self.tokenizer_adds_bos and self.bos_token and text.startswith(self.bos_token):
            return text[len(self.bos_token) :]
        return text
