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

from llamatp.errors import LlamatpError

# What llama.cpp uses when the model carries no template.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# llama.cpp trims with C's isspace(), which leaves alone the other whitespace Python's strip() removes.
_WS = "{% set ws = ' \\t\\n\\v\\f\\r' %}"

# "[INST] " opens the first exchange and each one after a reply; a system message goes into it.
# sys_tags: <<SYS>> around a system message; next_inst: what opens a later exchange; strip: trim
# each message.
_LLAMA2 = (
    "{{ '[INST] ' }}"
    "{% for message in messages %}"
    "{% set content = message['content'] | trim(ws) if strip else message['content'] %}"
    "{% if not loop.first and loop.previtem['role'] not in ['system', 'user'] %}{{ next_inst }}{% endif %}"
    "{% if message['role'] == 'system' %}"
    "{{ '<<SYS>>\n' + content + '\n<</SYS>>\n\n' if sys_tags else content + '\n' }}"
    "{% elif message['role'] == 'user' %}{{ content + ' [/INST]' }}"
    "{% else %}{{ content + '</s>' }}"
    "{% endif %}"
    "{% endfor %}"
)

# lead and trail: the spaces around "[INST]"; trim_reply: trim the assistant's messages.
_MISTRAL = (
    "{% for message in messages %}"
    "{% if loop.first or loop.previtem['role'] not in ['system', 'user'] %}"
    "{{ lead + '[INST]' + trail }}"
    "{% endif %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ message['content'] + lead + '[/INST]' }}"
    "{% else %}{{ trail + (message['content'] | trim(ws) if trim_reply else message['content']) + '</s>' }}"
    "{% endif %}"
    "{% endfor %}"
)

_MISTRAL_V7 = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{{ '[SYSTEM_PROMPT]' + space + message['content'] + '[/SYSTEM_PROMPT]' }}"
    "{% elif message['role'] == 'user' %}{{ '[INST]' + space + message['content'] + '[/INST]' }}"
    "{% else %}{{ space + message['content'] + '</s>' }}"
    "{% endif %}"
    "{% endfor %}"
)

_VICUNA = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ system_prefix + message['content'] + system_end }}"
    "{% elif message['role'] == 'user' %}{{ 'USER: ' + message['content'] + '\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ 'ASSISTANT: ' + message['content'] + '</s>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

# llama.cpp's built-in templates (its llm_chat_apply_template) by the names it gives them, each
# rendering exactly llama.cpp's text. Like llama.cpp's, they spell out their special tokens
# rather than use bos_token and eos_token.
NAMED_TEMPLATES: dict[str, str] = {
    "chatml": CHATML_TEMPLATE,
    "llama2": _WS + "{% set sys_tags, next_inst, strip = false, '[INST] ', false %}" + _LLAMA2,
    "llama2-sys": _WS + "{% set sys_tags, next_inst, strip = true, '[INST] ', false %}" + _LLAMA2,
    "llama2-sys-bos": _WS + "{% set sys_tags, next_inst, strip = true, '<s>[INST] ', false %}" + _LLAMA2,
    "llama2-sys-strip": _WS + "{% set sys_tags, next_inst, strip = true, '[INST] ', true %}" + _LLAMA2,
    "mistral-v1": _WS + "{% set lead, trail, trim_reply = ' ', ' ', false %}" + _MISTRAL,
    "mistral-v3": _WS + "{% set lead, trail, trim_reply = '', ' ', true %}" + _MISTRAL,
    "mistral-v3-tekken": _WS + "{% set lead, trail, trim_reply = '', '', false %}" + _MISTRAL,
    "mistral-v7": "{% set space = ' ' %}" + _MISTRAL_V7,
    "mistral-v7-tekken": "{% set space = '' %}" + _MISTRAL_V7,
    "phi3": (
        "{% for message in messages %}"
        "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
    ),
    "phi4": (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '<|im_sep|>' + message['content'] + '<|im_end|>' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant<|im_sep|>' }}{% endif %}"
    ),
    "falcon3": (
        "{% for message in messages %}"
        "{{ '<|' + message['role'] + '|>\n' + message['content'] + '\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
    ),
    "zephyr": (
        "{% for message in messages %}"
        "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|endoftext|>\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
    ),
    "monarch": (
        "{% for message in messages %}"
        "{{ ('' if loop.first else '<s>') + message['role'] + '\n' + message['content'] + '</s>\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<s>assistant\n' }}{% endif %}"
    ),
    # No system turn: system messages open the next user turn.
    "gemma": _WS + (
        "{% set pending = namespace(system='') %}"
        "{% for message in messages %}"
        "{% if message['role'] == 'system' %}"
        "{% set pending.system = pending.system + message['content'] | trim(ws) %}"
        "{% else %}"
        "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
        "{{ '<start_of_turn>' + role + '\n' }}"
        "{% if pending.system and role != 'model' %}"
        "{{ pending.system + '\n\n' }}{% set pending.system = '' %}"
        "{% endif %}"
        "{{ message['content'] | trim(ws) + '<end_of_turn>\n' }}"
        "{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
    ),
    "orion": (
        "{% set pending = namespace(system='') %}"
        "{% for message in messages %}"
        "{% if message['role'] == 'system' %}{% set pending.system = pending.system + message['content'] %}"
        "{% elif message['role'] == 'user' %}"
        "{{ 'Human: ' + (pending.system + '\n\n' if pending.system else '') }}{% set pending.system = '' %}"
        "{{ message['content'] + '\n\nAssistant: </s>' }}"
        "{% else %}{{ message['content'] + '</s>' }}"
        "{% endif %}"
        "{% endfor %}"
    ),
    "openchat": (
        "{% for message in messages %}"
        "{% if message['role'] == 'system' %}{{ message['content'] + '<|end_of_turn|>' }}"
        "{% else %}"
        "{{ 'GPT4 Correct ' + message['role'][:1] | upper + message['role'][1:] + ': ' }}"
        "{{ message['content'] + '<|end_of_turn|>' }}"
        "{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ 'GPT4 Correct Assistant:' }}{% endif %}"
    ),
    "vicuna": "{% set system_prefix, system_end = '', '\n\n' %}" + _VICUNA,
    "vicuna-orca": "{% set system_prefix, system_end = 'SYSTEM: ', '\n' %}" + _VICUNA,
    "deepseek": (
        "{% for message in messages %}"
        "{% if message['role'] == 'system' %}{{ message['content'] }}"
        "{% elif message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n' }}"
        "{% elif message['role'] == 'assistant' %}{{ '### Response:\n' + message['content'] + '\n<|EOT|>\n' }}"
        "{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
    ),
    "deepseek2": (
        "{% for message in messages %}"
        "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
        "{% elif message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\n\n' }}"
        "{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + '<｜end▁of▁sentence｜>' }}"
        "{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
    ),
    "deepseek3": (
        "{% for message in messages %}"
        "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
        "{% elif message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}"
        "{% elif message['role'] == 'assistant' %}"
        "{{ '<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>' }}"
        "{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<｜Assistant｜>' }}{% endif %}"
    ),
    "command-r": _WS + (
        "{% set tokens = {'system': '<|SYSTEM_TOKEN|>', 'user': '<|USER_TOKEN|>', 'assistant': '<|CHATBOT_TOKEN|>'} %}"
        "{% for message in messages if message['role'] in tokens %}"
        "{{ '<|START_OF_TURN_TOKEN|>' + tokens[message['role']] }}"
        "{{ message['content'] | trim(ws) + '<|END_OF_TURN_TOKEN|>' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>' }}{% endif %}"
    ),
    "llama3": _WS + (
        "{% for message in messages %}"
        "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
        "{{ message['content'] | trim(ws) + '<|eot_id|>' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    ),
    "minicpm": _WS + (
        "{% for message in messages %}"
        "{% if message['role'] == 'user' %}{{ '<用户>' + message['content'] | trim(ws) + '<AI>' }}"
        "{% else %}{{ message['content'] | trim(ws) }}"
        "{% endif %}"
        "{% endfor %}"
    ),
    "exaone3": _WS + (
        "{% for message in messages %}"
        "{% if message['role'] == 'system' %}{{ '[|system|]' + message['content'] | trim(ws) + '[|endofturn|]\n' }}"
        "{% elif message['role'] == 'user' %}{{ '[|user|]' + message['content'] | trim(ws) + '\n' }}"
        "{% elif message['role'] == 'assistant' %}"
        "{{ '[|assistant|]' + message['content'] | trim(ws) + '[|endofturn|]\n' }}"
        "{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '[|assistant|]' }}{% endif %}"
    ),
    "granite": (
        "{% for message in messages %}"
        "{{ '<|start_of_role|>' + message['role'] + '<|end_of_role|>' }}"
        "{% if message['role'] == 'assistant_tool_call' %}{{ '<|tool_call|>' }}{% endif %}"
        "{{ message['content'] + '<|end_of_text|>\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_of_role|>assistant<|end_of_role|>' }}{% endif %}"
    ),
    "megrez": (
        "{% for message in messages %}"
        "{{ '<|role_start|>' + message['role'] + '<|role_end|>' + message['content'] + '<|turn_end|>' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|role_start|>assistant<|role_end|>' }}{% endif %}"
    ),
    "llama4": _WS + (
        "{% for message in messages %}"
        "{{ '<|header_start|>' + message['role'] + '<|header_end|>\n\n' }}"
        "{{ message['content'] | trim(ws) + '<|eot|>' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|header_start|>assistant<|header_end|>\n\n' }}{% endif %}"
    ),
}


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
