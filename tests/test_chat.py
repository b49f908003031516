"""Chat templates render like Hugging Face's, in a sandbox, and turn by turn for conversation mode."""

from datetime import datetime

import pytest
from transformers.utils.chat_template_utils import render_jinja_template

from llamatp.chat import ChatSession, chosen_template, render_chat
from llamatp.chat_templates import CHATML_TEMPLATE, NAMED_TEMPLATES
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


# llama.cpp's tests/test-chat-template.cpp: its conversation, and the text llama.cpp's built-in
# templates give for it (with add_generation_prompt true).
LLAMA_CPP_CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant"},
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi there"},
    {"role": "user", "content": "Who are you"},
    {"role": "assistant", "content": "   I am an assistant   "},
    {"role": "user", "content": "Another question"},
]

LLAMA_CPP_TEXT = {
    "chatml": "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n<|im_start|>assistant\n",
    "llama2": "[INST] You are a helpful assistant\nHello [/INST]Hi there</s>[INST] Who are you [/INST]   I am an assistant   </s>[INST] Another question [/INST]",
    "llama2-sys-bos": "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s><s>[INST] Who are you [/INST]   I am an assistant   </s><s>[INST] Another question [/INST]",
    "llama2-sys-strip": "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>[INST] Who are you [/INST]I am an assistant</s>[INST] Another question [/INST]",
    "mistral-v1": " [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s> [INST] Who are you [/INST]    I am an assistant   </s> [INST] Another question [/INST]",
    "mistral-v3": "[INST] You are a helpful assistant\n\nHello[/INST] Hi there</s>[INST] Who are you[/INST] I am an assistant</s>[INST] Another question[/INST]",
    "mistral-v3-tekken": "[INST]You are a helpful assistant\n\nHello[/INST]Hi there</s>[INST]Who are you[/INST]   I am an assistant   </s>[INST]Another question[/INST]",
    "mistral-v7": "[SYSTEM_PROMPT] You are a helpful assistant[/SYSTEM_PROMPT][INST] Hello[/INST] Hi there</s>[INST] Who are you[/INST]    I am an assistant   </s>[INST] Another question[/INST]",
    "phi3": "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi there<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   <|end|>\n<|user|>\nAnother question<|end|>\n<|assistant|>\n",
    "phi4": "<|im_start|>system<|im_sep|>You are a helpful assistant<|im_end|><|im_start|>user<|im_sep|>Hello<|im_end|><|im_start|>assistant<|im_sep|>Hi there<|im_end|><|im_start|>user<|im_sep|>Who are you<|im_end|><|im_start|>assistant<|im_sep|>   I am an assistant   <|im_end|><|im_start|>user<|im_sep|>Another question<|im_end|><|im_start|>assistant<|im_sep|>",
    "monarch": "system\nYou are a helpful assistant</s>\n<s>user\nHello</s>\n<s>assistant\nHi there</s>\n<s>user\nWho are you</s>\n<s>assistant\n   I am an assistant   </s>\n<s>user\nAnother question</s>\n<s>assistant\n",
    "gemma": "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\nI am an assistant<end_of_turn>\n<start_of_turn>user\nAnother question<end_of_turn>\n<start_of_turn>model\n",
    "orion": "Human: You are a helpful assistant\n\nHello\n\nAssistant: </s>Hi there</s>Human: Who are you\n\nAssistant: </s>   I am an assistant   </s>Human: Another question\n\nAssistant: </s>",
    "openchat": "You are a helpful assistant<|end_of_turn|>GPT4 Correct User: Hello<|end_of_turn|>GPT4 Correct Assistant: Hi there<|end_of_turn|>GPT4 Correct User: Who are you<|end_of_turn|>GPT4 Correct Assistant:    I am an assistant   <|end_of_turn|>GPT4 Correct User: Another question<|end_of_turn|>GPT4 Correct Assistant:",
    "vicuna": "You are a helpful assistant\n\nUSER: Hello\nASSISTANT: Hi there</s>\nUSER: Who are you\nASSISTANT:    I am an assistant   </s>\nUSER: Another question\nASSISTANT:",
    "vicuna-orca": "SYSTEM: You are a helpful assistant\nUSER: Hello\nASSISTANT: Hi there</s>\nUSER: Who are you\nASSISTANT:    I am an assistant   </s>\nUSER: Another question\nASSISTANT:",
    "deepseek": "You are a helpful assistant### Instruction:\nHello\n### Response:\nHi there\n<|EOT|>\n### Instruction:\nWho are you\n### Response:\n   I am an assistant   \n<|EOT|>\n### Instruction:\nAnother question\n### Response:\n",
    "deepseek2": "You are a helpful assistant\n\nUser: Hello\n\nAssistant: Hi there<｜end▁of▁sentence｜>User: Who are you\n\nAssistant:    I am an assistant   <｜end▁of▁sentence｜>User: Another question\n\nAssistant:",
    "command-r": "<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>You are a helpful assistant<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>Hello<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>Hi there<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>Who are you<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>I am an assistant<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>Another question<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
    "llama3": "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    "minicpm": "You are a helpful assistant<用户>Hello<AI>Hi there<用户>Who are you<AI>I am an assistant<用户>Another question<AI>",
    "granite": "<|start_of_role|>system<|end_of_role|>You are a helpful assistant<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Hello<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>Hi there<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Who are you<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>   I am an assistant   <|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Another question<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>",
    "megrez": "<|role_start|>system<|role_end|>You are a helpful assistant<|turn_end|><|role_start|>user<|role_end|>Hello<|turn_end|><|role_start|>assistant<|role_end|>Hi there<|turn_end|><|role_start|>user<|role_end|>Who are you<|turn_end|><|role_start|>assistant<|role_end|>   I am an assistant   <|turn_end|><|role_start|>user<|role_end|>Another question<|turn_end|><|role_start|>assistant<|role_end|>",
    "chatglm3": "[gMASK]sop<|system|>\n You are a helpful assistant<|user|>\n Hello<|assistant|>\n Hi there<|user|>\n Who are you<|assistant|>\n    I am an assistant   <|user|>\n Another question<|assistant|>",
    "chatglm4": "[gMASK]<sop><|system|>\nYou are a helpful assistant<|user|>\nHello<|assistant|>\nHi there<|user|>\nWho are you<|assistant|>\n   I am an assistant   <|user|>\nAnother question<|assistant|>\n",
    "glmedge": "<|system|>\nYou are a helpful assistant<|user|>\nHello<|assistant|>\nHi there<|user|>\nWho are you<|assistant|>\n   I am an assistant   <|user|>\nAnother question<|assistant|>",
    "gigachat": "<s>You are a helpful assistant<|message_sep|>user<|role_sep|>Hello<|message_sep|>available functions<|role_sep|>[]<|message_sep|>assistant<|role_sep|>Hi there<|message_sep|>user<|role_sep|>Who are you<|message_sep|>available functions<|role_sep|>[]<|message_sep|>assistant<|role_sep|>   I am an assistant   <|message_sep|>user<|role_sep|>Another question<|message_sep|>available functions<|role_sep|>[]<|message_sep|>assistant<|role_sep|>",
    "yandex": " Пользователь: Hello\n\n Ассистент: Hi there\n\n Пользователь: Who are you\n\n Ассистент:    I am an assistant   \n\n Пользователь: Another question\n\n Ассистент:[SEP]",
    "bailing": "<role>SYSTEM</role>You are a helpful assistant<role>HUMAN</role>Hello<role>ASSISTANT</role>Hi there<role>HUMAN</role>Who are you<role>ASSISTANT</role>   I am an assistant   <role>HUMAN</role>Another question<role>ASSISTANT</role>",
    "seed_oss": "<seed:bos>system\nYou are a helpful assistant<seed:eos><seed:bos>user\nHello<seed:eos><seed:bos>assistant\nHi there<seed:eos><seed:bos>user\nWho are you<seed:eos><seed:bos>assistant\nI am an assistant<seed:eos><seed:bos>user\nAnother question<seed:eos><seed:bos>assistant\n",
    # test-chat-template.cpp has no case for these; their text follows llm_chat_apply_template.
    "llama2-sys": "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>[INST] Who are you [/INST]   I am an assistant   </s>[INST] Another question [/INST]",
    "mistral-v7-tekken": "[SYSTEM_PROMPT]You are a helpful assistant[/SYSTEM_PROMPT][INST]Hello[/INST]Hi there</s>[INST]Who are you[/INST]   I am an assistant   </s>[INST]Another question[/INST]",
    "falcon3": "<|system|>\nYou are a helpful assistant\n<|user|>\nHello\n<|assistant|>\nHi there\n<|user|>\nWho are you\n<|assistant|>\n   I am an assistant   \n<|user|>\nAnother question\n<|assistant|>\n",
    "zephyr": "<|system|>\nYou are a helpful assistant<|endoftext|>\n<|user|>\nHello<|endoftext|>\n<|assistant|>\nHi there<|endoftext|>\n<|user|>\nWho are you<|endoftext|>\n<|assistant|>\n   I am an assistant   <|endoftext|>\n<|user|>\nAnother question<|endoftext|>\n<|assistant|>\n",
    "deepseek3": "You are a helpful assistant\n\n<｜User｜>Hello<｜Assistant｜>Hi there<｜end▁of▁sentence｜><｜User｜>Who are you<｜Assistant｜>   I am an assistant   <｜end▁of▁sentence｜><｜User｜>Another question<｜Assistant｜>",
    "exaone3": "[|system|]You are a helpful assistant[|endofturn|]\n[|user|]Hello\n[|assistant|]Hi there[|endofturn|]\n[|user|]Who are you\n[|assistant|]I am an assistant[|endofturn|]\n[|user|]Another question\n[|assistant|]",
    "llama4": "<|header_start|>system<|header_end|>\n\nYou are a helpful assistant<|eot|><|header_start|>user<|header_end|>\n\nHello<|eot|><|header_start|>assistant<|header_end|>\n\nHi there<|eot|><|header_start|>user<|header_end|>\n\nWho are you<|eot|><|header_start|>assistant<|header_end|>\n\nI am an assistant<|eot|><|header_start|>user<|header_end|>\n\nAnother question<|eot|><|header_start|>assistant<|header_end|>\n\n",
    "exaone4": "[|system|]You are a helpful assistant[|endofturn|]\n[|user|]Hello\n[|assistant|]Hi there[|endofturn|]\n[|user|]Who are you\n[|assistant|]I am an assistant[|endofturn|]\n[|user|]Another question\n[|assistant|]",
    "rwkv-world": "System: You are a helpful assistant\n\nUser: Hello\n\nAssistant: Hi there\n\nUser: Who are you\n\nAssistant: I am an assistant\n\nUser: Another question\n\nAssistant:",
    "bailing-think": "<role>SYSTEM</role>You are a helpful assistant<role>HUMAN</role>Hello<role>ASSISTANT</role>Hi there<role>HUMAN</role>Who are you<role>ASSISTANT</role>   I am an assistant   <role>HUMAN</role>Another question<role>ASSISTANT</role><think>",
    "bailing2": "<role>SYSTEM</role>You are a helpful assistant<|role_end|><role>HUMAN</role>Hello<|role_end|><role>ASSISTANT</role>Hi there<|role_end|><role>HUMAN</role>Who are you<|role_end|><role>ASSISTANT</role>   I am an assistant   <|role_end|><role>HUMAN</role>Another question<|role_end|><role>ASSISTANT</role>",
    "smolvlm": "<|im_start|>You are a helpful assistant\n\nUser: Hello<end_of_utterance>\nAssistant: Hi there<end_of_utterance>\nUser: Who are you<end_of_utterance>\nAssistant:    I am an assistant   <end_of_utterance>\nUser: Another question<end_of_utterance>\nAssistant:",
    "hunyuan-moe": "<|startoftext|>You are a helpful assistant<|extra_4|><|startoftext|>Hello<|extra_0|>Hi there<|eos|><|startoftext|>Who are you<|extra_0|>   I am an assistant   <|eos|><|startoftext|>Another question<|extra_0|>",
    "gpt-oss": "<|start|>system<|message|>You are a helpful assistant<|end|><|start|>user<|message|>Hello<|end|><|start|>assistant<|message|>Hi there<|return|><|start|>user<|message|>Who are you<|end|><|start|>assistant<|message|>   I am an assistant   <|return|><|start|>user<|message|>Another question<|end|><|start|>assistant",
    "hunyuan-dense": "You are a helpful assistant<｜hy_place▁holder▁no▁3｜><｜hy_User｜>Hello<｜hy_Assistant｜><｜hy_Assistant｜>Hi there<｜hy_place▁holder▁no▁2｜><｜hy_User｜>Who are you<｜hy_Assistant｜><｜hy_Assistant｜>   I am an assistant   <｜hy_place▁holder▁no▁2｜><｜hy_User｜>Another question<｜hy_Assistant｜>",
    "kimi-k2": "<|im_system|>system<|im_middle|>You are a helpful assistant<|im_end|><|im_user|>user<|im_middle|>Hello<|im_end|><|im_assistant|>assistant<|im_middle|>Hi there<|im_end|><|im_user|>user<|im_middle|>Who are you<|im_end|><|im_assistant|>assistant<|im_middle|>   I am an assistant   <|im_end|><|im_user|>user<|im_middle|>Another question<|im_end|><|im_assistant|>assistant<|im_middle|>",
    "grok-2": "System: You are a helpful assistant<|separator|>\n\nHuman: Hello<|separator|>\n\nAssistant: Hi there<|separator|>\n\nHuman: Who are you<|separator|>\n\nAssistant:    I am an assistant   <|separator|>\n\nHuman: Another question<|separator|>\n\nAssistant:",
    "pangu-embedded": "[unused9]系统：You are a helpful assistant[unused10][unused9]用户：Hello[unused10][unused9]助手：Hi there[unused10][unused9]用户：Who are you[unused10][unused9]助手：   I am an assistant   [unused10][unused9]用户：Another question[unused10][unused9]助手：",
    "granite-4.0": "<|start_of_role|>system<|end_of_role|>You are a helpful assistant<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Hello<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>Hi there<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Who are you<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>   I am an assistant   <|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Another question<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>",
    "granite-4.1": "<|start_of_role|>system<|end_of_role|>You are a helpful assistant<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Hello<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>Hi there<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Who are you<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>   I am an assistant   <|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Another question<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>",
    "exaone-moe": "<|system|>\nYou are a helpful assistant<|endofturn|>\n<|user|>\nHello<|endofturn|>\n<|assistant|>\nHi there<|endofturn|>\n<|user|>\nWho are you<|endofturn|>\n<|assistant|>\nI am an assistant<|endofturn|>\n<|user|>\nAnother question<|endofturn|>\n<|assistant|>\n",
    "deepseek-ocr": "You are a helpful assistantHelloHi thereWho are you   I am an assistant   Another question",
    "hunyuan-ocr": "<｜hy_begin▁of▁sentence｜>You are a helpful assistant<｜hy_place▁holder▁no▁3｜>Hello<｜hy_User｜>Hi there<｜hy_Assistant｜>Who are you<｜hy_User｜>   I am an assistant   <｜hy_Assistant｜>Another question<｜hy_User｜>",
    "hunyuan-vl": "<｜hy_begin▁of▁sentence｜>You are a helpful assistant<｜hy_place▁holder▁no▁3｜>Hello<｜hy_User｜>Hi there<｜hy_Assistant｜>Who are you<｜hy_User｜>   I am an assistant   <｜hy_Assistant｜>Another question<｜hy_User｜>",
    "solar-open": "<|begin|>system<|content|>You are a helpful assistant<|end|><|begin|>user<|content|>Hello<|end|><|begin|>assistant<|content|>Hi there<|end|><|begin|>user<|content|>Who are you<|end|><|begin|>assistant<|content|>   I am an assistant   <|end|><|begin|>user<|content|>Another question<|end|><|begin|>assistant",
}

# What the model generates for the reply "Hi there" in each named template's layout: after a
# space where the template puts one, up to its end-of-turn text.
GENERATED_REPLY = {
    "chatml": "Hi there<|im_end|>",
    "llama2": "Hi there</s>",
    "llama2-sys": "Hi there</s>",
    "llama2-sys-bos": "Hi there</s>",
    "llama2-sys-strip": "Hi there</s>",
    "mistral-v1": " Hi there</s>",
    "mistral-v3": " Hi there</s>",
    "mistral-v3-tekken": "Hi there</s>",
    "mistral-v7": " Hi there</s>",
    "mistral-v7-tekken": "Hi there</s>",
    "phi3": "Hi there<|end|>",
    "phi4": "Hi there<|im_end|>",
    "falcon3": "Hi there",
    "zephyr": "Hi there<|endoftext|>",
    "monarch": "Hi there</s>",
    "gemma": "Hi there<end_of_turn>",
    "orion": "Hi there</s>",
    "openchat": " Hi there<|end_of_turn|>",
    "vicuna": " Hi there</s>",
    "vicuna-orca": " Hi there</s>",
    "deepseek": "Hi there\n<|EOT|>",
    "deepseek2": " Hi there<｜end▁of▁sentence｜>",
    "deepseek3": "Hi there<｜end▁of▁sentence｜>",
    "command-r": "Hi there<|END_OF_TURN_TOKEN|>",
    "llama3": "Hi there<|eot_id|>",
    "minicpm": "Hi there",
    "exaone3": "Hi there[|endofturn|]",
    "granite": "Hi there<|end_of_text|>",
    "megrez": "Hi there<|turn_end|>",
    "llama4": "Hi there<|eot|>",
    "chatglm3": "\n Hi there",
    "chatglm4": "Hi there",
    "glmedge": "\nHi there",
    "exaone4": "Hi there[|endofturn|]",
    "rwkv-world": " Hi there\n\n",
    "gigachat": "Hi there<|message_sep|>",
    "yandex": " Hi there\n\n",
    "bailing": "Hi there",
    "bailing-think": "Hi there",
    "bailing2": "Hi there<|role_end|>",
    "smolvlm": " Hi there<end_of_utterance>",
    "hunyuan-moe": "Hi there<|eos|>",
    "gpt-oss": "<|message|>Hi there<|return|>",
    "hunyuan-dense": "Hi there<｜hy_place▁holder▁no▁2｜>",
    "kimi-k2": "Hi there<|im_end|>",
    "seed_oss": "Hi there<seed:eos>",
    "grok-2": " Hi there<|separator|>",
    "pangu-embedded": "Hi there[unused10]",
    "granite-4.0": "Hi there<|end_of_text|>",
    "granite-4.1": "Hi there<|end_of_text|>",
    "exaone-moe": "Hi there<|endofturn|>",
    "deepseek-ocr": "Hi there",
    "hunyuan-ocr": "Hi there<｜hy_Assistant｜>",
    "hunyuan-vl": "Hi there<｜hy_Assistant｜>",
    "solar-open": "<|content|>Hi there<|end|>",
}

# Turn by turn, llama.cpp's text for these does not add up to the whole conversation, nor does
# ours, which follows it: the generation prompt is not how the reply is laid out afterwards
# (yandex's "[SEP]", bailing-think's "<think>", hunyuan-dense's second "<｜hy_Assistant｜>"), or a
# blank line follows the reply, where one newline is fed back before the next turn: one too many
# when the model generates the blank line (rwkv-world, yandex), one too few when not (grok-2).
NOT_ADDING_UP = {"yandex", "bailing-think", "hunyuan-dense", "rwkv-world", "grok-2"}


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


@pytest.mark.parametrize(
    ("template", "generated_reply"),
    [
        pytest.param(CHATML, "Hi there<|im_end|>", id="CHATML"),
        pytest.param(GEMMA, "Hi there<end_of_turn>", id="GEMMA"),
    ]
    + [
        pytest.param(
            NAMED_TEMPLATES[name],
            GENERATED_REPLY[name],
            id=name,
            marks=[pytest.mark.xfail(strict=True)] if name in NOT_ADDING_UP else [],
        )
        for name in NAMED_TEMPLATES
    ],
)
def test_turn_by_turn_text_adds_up_to_the_whole_conversation(template: str, generated_reply: str) -> None:
    # What the model sees: each fed text, and each reply as it generated it.
    session = ChatSession(template, bos_token="<bos>", eos_token="<eos>")
    context = session.add("user", "Hello")
    context += generated_reply
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
    """--chat-template: Jinja text as given, or a template by name; nothing given: None (the model's)."""
    assert chosen_template(None, None) is None
    assert chosen_template("chatml", None) == CHATML_TEMPLATE
    assert chosen_template("llama3", None) == NAMED_TEMPLATES["llama3"]
    assert chosen_template("{{ messages[0]['content'] }}", None) == "{{ messages[0]['content'] }}"


@pytest.mark.parametrize("name", NAMED_TEMPLATES)
def test_named_templates_give_llama_cpps_text(name: str) -> None:
    """As llama.cpp's built-in templates, which spell out their tokens: bos_token and eos_token unused."""
    assert render(NAMED_TEMPLATES[name], LLAMA_CPP_CONVERSATION) == LLAMA_CPP_TEXT[name]


def test_granite_3_and_4_write_a_tool_call_differently() -> None:
    messages = [{"role": "assistant_tool_call", "content": "[]"}]
    assert render(NAMED_TEMPLATES["granite"], messages, add_generation_prompt=False) == (
        "<|start_of_role|>assistant_tool_call<|end_of_role|><|tool_call|>[]<|end_of_text|>\n"
    )
    for name in ("granite-4.0", "granite-4.1"):
        assert render(NAMED_TEMPLATES[name], messages, add_generation_prompt=False) == (
            "<|start_of_role|>assistant<|end_of_role|><|tool_call|>[]<|end_of_text|>\n"
        )


def test_trimming_templates_trim_only_what_c_isspace_matches() -> None:
    messages = [{"role": "user", "content": "\u3000\xa0Hello\t\v\f\r\n "}]
    assert render(NAMED_TEMPLATES["llama3"], messages, add_generation_prompt=False) == (
        "<|start_header_id|>user<|end_header_id|>\n\n\u3000\xa0Hello<|eot_id|>"
    )


def test_an_unknown_template_name_is_a_one_line_error_listing_the_known_names() -> None:
    with pytest.raises(LlamatpError, match=r"^--chat-template llama5: no template has that name") as caught:
        chosen_template("llama5", None)
    message = str(caught.value)
    assert "\n" not in message
    assert "(known: " + ", ".join(sorted(NAMED_TEMPLATES)) + ")" in message
    assert message.endswith("give the template's Jinja text, or --chat-template-file")
