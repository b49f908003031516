"""Reference logits from Hugging Face transformers, which reads and dequantizes GGUF files on its own.

Loading a model takes seconds, so logits are kept on disk, keyed by the file's content, the
transformers version and the token ids: later test runs read them back instead.
"""

import functools
import hashlib
import os
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, PreTrainedModel

from llamatp.models import cache_dir


@functools.cache
def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@functools.lru_cache(maxsize=2)
def _load(gguf_path: Path) -> PreTrainedModel:
    # gemma3 files load as the text-only Gemma3ForCausalLM; llama files as LlamaForCausalLM.
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    return model.eval()


def hf_logits(gguf_path: Path, token_ids: list[int]) -> torch.Tensor:
    """float32 logits [len(token_ids), vocab] of the GGUF model at `gguf_path`, computed on CPU."""
    gguf_path = gguf_path.resolve()
    key = f"{_file_sha256(gguf_path)} {transformers.__version__} {token_ids}"
    cached = cache_dir() / "hf-logits" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.pt"
    if cached.is_file():
        return torch.load(cached)
    with torch.inference_mode():
        logits = _load(gguf_path)(torch.tensor([token_ids])).logits[0].float().contiguous()
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(f".{cached.name}.{os.getpid()}.part")
    torch.save(logits, partial)
    os.replace(partial, cached)  # concurrent runs may race to write it: each write is whole
    return logits
