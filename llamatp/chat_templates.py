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

# prefix: what opens the text; sep: what follows a role's tag; reply: the generation prompt.
_GLM = (
    "{{ prefix }}"
    "{% for message in messages %}{{ '<|' + message['role'] + '|>' + sep + message['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}{{ reply }}{% endif %}"
)

# roles: the roles written; messages of other roles are left out.
_EXAONE = (
    "{% for message in messages if message['role'] in roles %}"
    "{{ '[|' + message['role'] + '|]' + message['content'] | trim(ws) }}"
    "{{ '\n' if message['role'] == 'user' else '[|endofturn|]\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '[|assistant|]' }}{% endif %}"
)

# default_system: the system message written when the conversation opens without one; turn_end:
# what ends each message; think: what follows the generation prompt.
_BAILING = (
    "{% if default_system and (not messages or messages[0]['role'] != 'system') %}"
    "{{ '<role>SYSTEM</role>' + default_system + turn_end }}"
    "{% endif %}"
    "{% for message in messages %}"
    "{{ '<role>' + ('HUMAN' if message['role'] == 'user' else message['role'] | upper) + '</role>' }}"
    "{{ message['content'] + turn_end }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<role>ASSISTANT</role>' + think }}{% endif %}"
)

# A tool call is written as the assistant's turn with <|tool_call|> after its header.
_GRANITE_4 = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant_tool_call' %}"
    "{{ '<|start_of_role|>assistant<|end_of_role|><|tool_call|>' }}"
    "{% else %}{{ '<|start_of_role|>' + message['role'] + '<|end_of_role|>' }}"
    "{% endif %}"
    "{{ message['content'] + '<|end_of_text|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_of_role|>assistant<|end_of_role|>' }}{% endif %}"
)

# HunyuanVL and HunyuanOCR: tags follow the text they close; only a first system message is kept,
# and there is no generation prompt.
_HUNYUAN_VL = (
    "{{ '<｜hy_begin▁of▁sentence｜>' }}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] == 'system' %}"
    "{{ message['content'] + '<｜hy_place▁holder▁no▁3｜>' }}"
    "{% elif message['role'] == 'user' %}{{ message['content'] + '<｜hy_User｜>' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + '<｜hy_Assistant｜>' }}"
    "{% endif %}"
    "{% endfor %}"
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
    # No template: the messages' text, one after another.
    "deepseek-ocr": "{% for message in messages %}{{ message['content'] }}{% endfor %}",
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
    "chatglm3": "{% set prefix, sep, reply = '[gMASK]sop', '\n ', '<|assistant|>' %}" + _GLM,
    "chatglm4": "{% set prefix, sep, reply = '[gMASK]<sop>', '\n', '<|assistant|>\n' %}" + _GLM,
    "glmedge": "{% set prefix, sep, reply = '', '\n', '<|assistant|>' %}" + _GLM,
    "minicpm": _WS + (
        "{% for message in messages %}"
        "{% if message['role'] == 'user' %}{{ '<用户>' + message['content'] | trim(ws) + '<AI>' }}"
        "{% else %}{{ message['content'] | trim(ws) }}"
        "{% endif %}"
        "{% endfor %}"
    ),
    "exaone3": _WS + "{% set roles = ['system', 'user', 'assistant'] %}" + _EXAONE,
    "exaone4": _WS + "{% set roles = ['system', 'user', 'assistant', 'tool'] %}" + _EXAONE,
    "exaone-moe": _WS + (
        "{% for message in messages if message['role'] in ['system', 'user', 'assistant', 'tool'] %}"
        "{{ '<|' + message['role'] + '|>\n' + message['content'] | trim(ws) + '<|endofturn|>\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
    ),
    # The reply's header follows a last user message, whatever add_generation_prompt says.
    "rwkv-world": _WS + (
        "{% set names = {'system': 'System', 'user': 'User', 'assistant': 'Assistant'} %}"
        "{% for message in messages if message['role'] in names %}"
        "{{ names[message['role']] + ': ' + message['content'] | trim(ws) + '\n\n' }}"
        "{% endfor %}"
        "{% if messages and messages[-1]['role'] == 'user' %}{{ 'Assistant:' }}{% endif %}"
    ),
    "granite": (
        "{% for message in messages %}"
        "{{ '<|start_of_role|>' + message['role'] + '<|end_of_role|>' }}"
        "{% if message['role'] == 'assistant_tool_call' %}{{ '<|tool_call|>' }}{% endif %}"
        "{{ message['content'] + '<|end_of_text|>\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_of_role|>assistant<|end_of_role|>' }}{% endif %}"
    ),
    "granite-4.0": _GRANITE_4,
    "granite-4.1": _GRANITE_4,
    # Only a first system message is kept.
    "gigachat": (
        "{{ '<s>' }}"
        "{% for message in messages %}"
        "{% if loop.first and message['role'] == 'system' %}{{ message['content'] + '<|message_sep|>' }}"
        "{% elif message['role'] == 'user' %}"
        "{{ 'user<|role_sep|>' + message['content'] + '<|message_sep|>' }}"
        "{{ 'available functions<|role_sep|>[]<|message_sep|>' }}"
        "{% elif message['role'] == 'assistant' %}"
        "{{ 'assistant<|role_sep|>' + message['content'] + '<|message_sep|>' }}"
        "{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant<|role_sep|>' }}{% endif %}"
    ),
    "megrez": (
        "{% for message in messages %}"
        "{{ '<|role_start|>' + message['role'] + '<|role_end|>' + message['content'] + '<|turn_end|>' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|role_start|>assistant<|role_end|>' }}{% endif %}"
    ),
    "yandex": (
        "{% for message in messages %}"
        "{% if message['role'] == 'user' %}{{ ' Пользователь: ' + message['content'] + '\n\n' }}"
        "{% elif message['role'] == 'assistant' %}{{ ' Ассистент: ' + message['content'] + '\n\n' }}"
        "{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ ' Ассистент:[SEP]' }}{% endif %}"
    ),
    "bailing": "{% set default_system, turn_end, think = '', '', '' %}" + _BAILING,
    "bailing-think": "{% set default_system, turn_end, think = '', '', '<think>' %}" + _BAILING,
    "bailing2": "{% set default_system, turn_end, think = 'detailed thinking off', '<|role_end|>', '' %}" + _BAILING,
    "llama4": _WS + (
        "{% for message in messages %}"
        "{{ '<|header_start|>' + message['role'] + '<|header_end|>\n\n' }}"
        "{{ message['content'] | trim(ws) + '<|eot|>' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|header_start|>assistant<|header_end|>\n\n' }}{% endif %}"
    ),
    "smolvlm": (
        "{{ '<|im_start|>' }}"
        "{% for message in messages %}"
        "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
        "{% elif message['role'] == 'user' %}{{ 'User: ' + message['content'] + '<end_of_utterance>\n' }}"
        "{% else %}{{ 'Assistant: ' + message['content'] + '<end_of_utterance>\n' }}"
        "{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
    ),
    "hunyuan-moe": (
        "{% for message in messages %}"
        "{% if message['role'] == 'system' %}{{ '<|startoftext|>' + message['content'] + '<|extra_4|>' }}"
        "{% elif message['role'] == 'assistant' %}{{ message['content'] + '<|eos|>' }}"
        "{% else %}{{ '<|startoftext|>' + message['content'] + '<|extra_0|>' }}"
        "{% endif %}"
        "{% endfor %}"
    ),
    "gpt-oss": (
        "{% for message in messages %}"
        "{{ '<|start|>' + message['role'] + '<|message|>' + message['content'] }}"
        "{{ '<|return|>' if message['role'] == 'assistant' else '<|end|>' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start|>assistant' }}{% endif %}"
    ),
    # Only a first system message is kept, and a reply opens with <｜hy_Assistant｜> again although
    # the user's turn ends with it.
    "hunyuan-dense": (
        "{% for message in messages %}"
        "{% if loop.first and message['role'] == 'system' %}"
        "{{ message['content'] + '<｜hy_place▁holder▁no▁3｜>' }}"
        "{% elif message['role'] == 'user' %}{{ '<｜hy_User｜>' + message['content'] + '<｜hy_Assistant｜>' }}"
        "{% elif message['role'] == 'assistant' %}"
        "{{ '<｜hy_Assistant｜>' + message['content'] + '<｜hy_place▁holder▁no▁2｜>' }}"
        "{% endif %}"
        "{% endfor %}"
    ),
    "hunyuan-vl": _HUNYUAN_VL,
    "hunyuan-ocr": _HUNYUAN_VL,  # the name llama.cpp gave it before hunyuan-vl
    "kimi-k2": (
        "{% set headers = {'system': '<|im_system|>system', 'user': '<|im_user|>user',"
        " 'assistant': '<|im_assistant|>assistant', 'tool': '<|im_system|>tool'} %}"
        "{% for message in messages %}"
        "{% if message['role'] in headers %}{{ headers[message['role']] + '<|im_middle|>' }}{% endif %}"
        "{{ message['content'] + '<|im_end|>' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_assistant|>assistant<|im_middle|>' }}{% endif %}"
    ),
    "seed_oss": _WS + (
        "{% for message in messages %}"
        "{{ '<seed:bos>' + message['role'] + '\n' }}"
        "{{ message['content'] | trim(ws) if message['role'] == 'assistant' else message['content'] }}"
        "{{ '<seed:eos>' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<seed:bos>assistant\n' }}{% endif %}"
    ),
    "grok-2": _WS + (
        "{% for message in messages %}"
        "{% if message['role'] == 'system' %}{{ 'System: ' + message['content'] | trim(ws) + '<|separator|>\n\n' }}"
        "{% elif message['role'] == 'user' %}{{ 'Human: ' + message['content'] | trim(ws) + '<|separator|>\n\n' }}"
        "{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + '<|separator|>\n\n' }}"
        "{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
    ),
    "pangu-embedded": (
        "{% set names = {'system': '系统', 'user': '用户', 'assistant': '助手', 'tool': '工具',"
        " 'function': '方法'} %}"
        "{% if messages and messages[0]['role'] != 'system' %}{{ '[unused9]系统：[unused10]' }}{% endif %}"
        "{% for message in messages if message['role'] in names %}"
        "{{ '[unused9]' + names[message['role']] + '：' + message['content'] + '[unused10]' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '[unused9]助手：' }}{% endif %}"
    ),
    "solar-open": (
        "{% for message in messages %}"
        "{{ '<|begin|>' + message['role'] + '<|content|>' + message['content'] + '<|end|>' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|begin|>assistant' }}{% endif %}"
    ),
}
