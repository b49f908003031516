"""Fixtures shared by the test suite: the real models (downloaded once, then cached) and llama.cpp's vocab files."""

import os
from pathlib import Path

# No GPU in CI: Triton kernels are checked through Triton's interpreter. It must be on
# before anything imports triton; the model itself dispatches to Triton only on CUDA tensors.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from llamatp.models import default_model_path, gemma3_270m_path  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct Q4_1: llama architecture, the default model."""
    return default_model_path(quiet=True)


@pytest.fixture(scope="session")
def gemma3_path() -> Path:
    """Gemma 3 270M Q4_K_M: gemma3 architecture (QK norm, sliding window, embedding scale)."""
    return gemma3_270m_path(quiet=True)


@pytest.fixture(scope="session")
def vocab_dir() -> Path:
    """llama.cpp's ggml-vocab-*.gguf files with their .inp/.out tokenizer cases, kept beside the repository."""
    path = REPO_ROOT.parent / "shared" / "vocab"
    if not path.is_dir():
        pytest.fail(f"vocab folder {path} is missing: it should hold llama.cpp's models/ggml-vocab-* files")
    return path
