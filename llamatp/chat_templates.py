"""Chat templates known by name: llama.cpp's built-in ones (its `llm_chat_apply_template`), by the
names it gives them, written as Jinja templates that render exactly llama.cpp's text. Like
llama.cpp's, they spell out their special tokens rather than use bos_token and eos_token."""

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
