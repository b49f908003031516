"""Chat templates render like Hugging Face's, in a sandbox, and turn by turn for conversation mode."""

from datetime import datetime

import pytest
from transformers.utils.chat_template_utils import render_jinja_template

from llamatp.chat import CHATML_TEMPLATE, ChatSession, chosen_template, render_chat
from llamatp.errors import LlamatpError

# Written with block tags on their own, indented lines: trim_blocks and lstrip_blocks must
# remove those lines entirely.
CHATML = """\
{% for message in messages %}
<|im_start|>{{ message['role'] }}
{{ message['content'] }}<|im_end|>
  {% endfor %}
  {% if add_generation_prompt %}
<|im_start|>assistant
  {% endif %}
"""

# Gemma's template, as shipped in its GGUF files.
GEMMA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)

CONVERSATION = [
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi there"},
    {"role": "user", "content": "How are you?"},
]

CHATML_TEXT = (
    "<|im_start|>system\nBe brief.<|im_end|>\n"
    "<|im_start|>user\nHello<|im_end|>\n"
    "<|im_start|>assistant\nHi there<|im_end|>\n"
    "<|im_start|>user\nHow are you?<|im_end|>\n"
    "<|im_start|>assistant\n"
)

GEMMA_TEXT = (
    "<bos><start_of_turn>user\nHello<end_of_turn>\n"
    "<start_of_turn>model\nHi there<end_of_turn>\n"
    "<start_of_turn>user\nHow are you?<end_of_turn>\n"
    "<start_of_turn>model\n"
)

WITH_SYSTEM = [{"role": "system", "content": "Be brief."}, *CONVERSATION]


def render(template: str | None, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    return render_chat(
        template, messages, bos_token="<bos>", eos_token="<eos>", add_generation_prompt=add_generation_prompt
    )


def test_chatml_renders_the_exact_text() -> None:
    assert render(CHATML, WITH_SYSTEM) == CHATML_TEXT


def test_without_generation_prompt_the_text_ends_after_the_last_message() -> None:
    assert render(CHATML, WITH_SYSTEM, add_generation_prompt=False) == CHATML_TEXT.removesuffix(
        "<|im_start|>assistant\n"
    )


def test_gemma_renders_the_exact_text() -> None:
    assert render(GEMMA, CONVERSATION) == GEMMA_TEXT


def test_a_model_without_a_template_gets_chatml() -> None:
    assert render(None, WITH_SYSTEM) == CHATML_TEXT
    assert render("", WITH_SYSTEM) == CHATML_TEXT


@pytest.mark.parametrize(
    ("template", "messages"), [(CHATML, WITH_SYSTEM), (GEMMA, CONVERSATION), (CHATML_TEMPLATE, WITH_SYSTEM)]
)
def test_rendering_matches_transformers(template: str, messages: list[dict[str, str]]) -> None:
    rendered, _ = render_jinja_template(
        [messages], chat_template=template, add_generation_prompt=True, bos_token="<bos>", eos_token="<eos>"
    )
    assert render(template, messages) == rendered[0]


def test_raise_exception_in_a_template_is_a_user_error() -> None:
    with pytest.raises(LlamatpError, match=r"^chat template: System role not supported$"):
        render(GEMMA, WITH_SYSTEM)


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ messages.__class__.__init__.__globals__ }}",
        "{{ messages.append({'role': 'user', 'content': 'injected'}) }}",
        "{% set d = {} %}{{ d.update(a=1) }}",
    ],
)
def test_sandbox_violations_are_one_line_user_errors(template: str) -> None:
    with pytest.raises(LlamatpError, match=r"^chat template: ") as caught:
        render(template, CONVERSATION)
    assert "\n" not in str(caught.value)


def test_syntax_errors_are_one_line_user_errors_with_the_line() -> None:
    with pytest.raises(LlamatpError, match=r"^chat template: line 2: ") as caught:
        render("{{ bos_token }}\n{% for message in messages %}", CONVERSATION)
    assert "\n" not in str(caught.value)


def test_runtime_errors_in_a_template_are_user_errors() -> None:
    with pytest.raises(LlamatpError, match=r"^chat template: "):
        render("{{ messages[0]['content'] + 1 }}", CONVERSATION)


def test_tojson_neither_escapes_html_nor_non_ascii_and_keeps_key_order() -> None:
    template = "{{ {'b': 'é <x> & \"q\"', 'a': [1, 2]} | tojson }}|{{ {'k': 1} | tojson(indent=2) }}"
    assert render(template, []) == '{"b": "é <x> & \\"q\\"", "a": [1, 2]}|{\n  "k": 1\n}'


def test_strftime_now_formats_the_current_date() -> None:
    assert render("{{ strftime_now('%Y-%m') }}", []) == datetime.now().strftime("%Y-%m")


def test_loop_controls_are_available() -> None:
    template = "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.content }}{% endfor %}"
    assert render(template, CONVERSATION) == "Hello"


@pytest.mark.parametrize(("template", "end_of_turn"), [(CHATML, "<|im_end|>"), (GEMMA, "<end_of_turn>")])
def test_turn_by_turn_text_adds_up_to_the_whole_conversation(template: str, end_of_turn: str) -> None:
    # What the model sees: each fed text, and each reply it generated up to its end-of-turn token.
    session = ChatSession(template, bos_token="<bos>", eos_token="<eos>")
    context = session.add("user", "Hello")
    context += "Hi there" + end_of_turn
    session.add_reply("Hi there")
    context += session.add("user", "How are you?")
    assert context == render(template, CONVERSATION)


def test_the_second_user_turn_feeds_only_its_own_text() -> None:
    session = ChatSession(CHATML, bos_token="<bos>", eos_token="<eos>")
    assert session.add("system", "Be brief.") == "<|im_start|>system\nBe brief.<|im_end|>\n"
    assert session.add("user", "Hello") == "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
    session.add_reply("Hi there")
    # The newline after the reply's <|im_end|> was not generated, so it comes first.
    assert session.add("user", "How are you?") == (
        "\n<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_a_leading_bos_is_dropped_when_the_tokenizer_adds_one() -> None:
    session = ChatSession(GEMMA, bos_token="<bos>", eos_token="<eos>", tokenizer_adds_bos=True)
    assert session.add("user", "Hello") == "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n"


def test_a_chosen_template_is_the_models_unless_given() -> None:
    """--chat-template: Jinja text as given, or chatml by name; nothing given: None (the model's)."""
    assert chosen_template(None, None) is None
    assert chosen_template("chatml", None) == CHATML_TEMPLATE
    assert chosen_template("{{ messages[0]['content'] }}", None) == "{{ messages[0]['content'] }}"
