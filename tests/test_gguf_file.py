"""The GGUF header reader: real files read as gguf.GGUFReader reads them; a broken or hostile
file fails with one clear line, never a traceback, a long loop or a large allocation."""

from __future__ import annotations

import struct
import tracemalloc
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from gguf import GGUFReader, GGUFWriter, quants
from gguf.constants import GGMLQuantizationType
from hypothesis import given, settings
from hypothesis import strategies as st

from llamatp import gguf_file
from llamatp.errors import LlamatpError
from llamatp.gguf_file import Access, GGUFFile

Q = GGMLQuantizationType

# One value of every metadata type, arrays of numbers and strings among them.
SMALL_METADATA: dict[str, tuple[str, Any]] = {
    "test.u8": ("add_uint8", 7), "test.i8": ("add_int8", -3), "test.u16": ("add_uint16", 300),
    "test.i16": ("add_int16", -300), "test.u32": ("add_uint32", 70000), "test.i32": ("add_int32", -70000),
    "test.u64": ("add_uint64", 2**40), "test.i64": ("add_int64", -(2**40)), "test.f32": ("add_float32", 0.5),
    "test.f64": ("add_float64", 1e-300), "test.bool": ("add_bool", True), "test.str": ("add_string", "héllo"),
    "test.ints": ("add_array", [1, 2, 3]), "test.floats": ("add_array", [0.25, 1.5]),
    "test.strs": ("add_array", ["a", "bc", ""]),
}  # fmt: skip


def small_tensors() -> dict[str, tuple[np.ndarray, GGMLQuantizationType, tuple[int, ...]]]:
    """Contents, type and shape (torch order) of a 1-D, a 2-D, a 3-D and a quantized tensor."""
    rng = np.random.default_rng(0)
    q8 = quants.quantize(rng.standard_normal((2, 64)).astype(np.float32), Q.Q8_0)
    return {
        "w.f32": (rng.standard_normal((4, 8)).astype(np.float32), Q.F32, (4, 8)),
        "b.f16": (rng.standard_normal(16).astype(np.float16), Q.F16, (16,)),
        "w3.f32": (rng.standard_normal((2, 3, 8)).astype(np.float32), Q.F32, (2, 3, 8)),
        "w.q8_0": (q8, Q.Q8_0, (2, 64)),
    }


def write_small_gguf(path: Path, alignment: int | None = None) -> Path:
    """A valid GGUF of under 2 KB with SMALL_METADATA and small_tensors()."""
    writer = GGUFWriter(path, "llama")
    for key, (method, value) in SMALL_METADATA.items():
        getattr(writer, method)(key, value)
    if alignment is not None:
        writer.add_custom_alignment(alignment)
    for name, (data, qtype, _) in small_tensors().items():
        writer.add_tensor(name, data, raw_dtype=qtype if data.dtype == np.uint8 else None)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def small_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_small_gguf(tmp_path_factory.mktemp("gguf") / "small.gguf")


@pytest.fixture(scope="module")
def smollm2_reader(smollm2_path: Path) -> GGUFReader:
    return GGUFReader(smollm2_path)


# --- reading valid files -----------------------------------------------------------------


def test_small_file_gives_back_what_was_written(small_gguf: Path) -> None:
    gguf = GGUFFile(small_gguf)
    assert gguf.architecture == "llama"
    for key, (_, value) in SMALL_METADATA.items():
        assert gguf.metadata[key] == value, key
    for name, (data, qtype, shape) in small_tensors().items():
        info = gguf.tensor(name)
        assert (info.qtype, info.shape) == (qtype, shape)
        assert info.offset % 32 == 0
        assert gguf.raw(name).tobytes() == data.tobytes()


def test_smollm2_metadata_matches_gguf_reader(smollm2_path: Path, smollm2_reader: GGUFReader) -> None:
    gguf = GGUFFile(smollm2_path)
    expected = {k: f.contents() for k, f in smollm2_reader.fields.items() if not k.startswith("GGUF.")}
    assert gguf.metadata.keys() == expected.keys()
    for key, value in expected.items():
        assert gguf.metadata[key] == value, key


def test_smollm2_tensors_match_gguf_reader(smollm2_path: Path, smollm2_reader: GGUFReader) -> None:
    gguf = GGUFFile(smollm2_path)
    assert list(gguf.tensors) == [t.name for t in smollm2_reader.tensors]
    for t in smollm2_reader.tensors:
        info = gguf.tensors[t.name]
        assert info.qtype == t.tensor_type
        assert info.shape == tuple(int(d) for d in reversed(t.shape))  # gguf lists dims innermost first
        assert info.n_elements == t.n_elements
        assert (info.offset, info.nbytes) == (t.data_offset, t.n_bytes)
        assert np.array_equal(gguf.raw(t.name).reshape(-1), t.data.reshape(-1).view(np.uint8)), t.name


@pytest.mark.parametrize("access", ["read", "direct"])
def test_plain_and_direct_reads_give_the_bytes_of_the_memory_map(smollm2_path: Path, access: Access) -> None:
    """Load modes none and dio: each tensor, or a run of its rows, read from the file, no map kept."""
    mapped, read = GGUFFile(smollm2_path), GGUFFile(smollm2_path, access=access)
    assert not hasattr(read, "_data")
    for name in mapped.tensors:
        assert np.array_equal(read.raw(name), mapped.raw(name)), name
    rows = range(5, 17)
    assert np.array_equal(read.raw("token_embd.weight", rows), mapped.raw("token_embd.weight")[5:17])


def test_direct_reads_larger_than_one_call_come_in_pieces(smollm2_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read past what one call takes (1 GiB; 12 KiB here) goes on where the last call ended,
    up to the end of the file."""
    monkeypatch.setattr(gguf_file, "DIRECT_IO_CHUNK", 3 * gguf_file.DIRECT_IO_ALIGN)
    mapped, read = GGUFFile(smollm2_path), GGUFFile(smollm2_path, access="direct")
    last = max(mapped.tensors.values(), key=lambda t: t.offset).name
    for name in ("token_embd.weight", "blk.0.attn_q.weight", last):
        assert np.array_equal(read.raw(name), mapped.raw(name)), name


@pytest.mark.parametrize("access", ["read", "direct"])
def test_a_file_cut_short_after_opening_is_an_error_in_reads(tmp_path: Path, smollm2_path: Path,
                                                             access: Access) -> None:
    copy = tmp_path / "model.gguf"
    copy.write_bytes(smollm2_path.read_bytes())
    gguf = GGUFFile(copy, access=access)
    last = max(gguf.tensors.values(), key=lambda t: t.offset)
    with open(copy, "r+b") as f:
        f.truncate(last.offset + 10)
    with pytest.raises(LlamatpError, match=f"ended while reading tensor '{last.name}'"):
        gguf.raw(last.name)


def test_direct_reads_fall_back_to_plain_reads_where_the_file_system_refuses_them(
        smollm2_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gguf_file, "_direct_io_works", lambda path: False)  # as a file system without O_DIRECT
    gguf = GGUFFile(smollm2_path, access="direct")
    assert gguf.access == "read"
    assert "the file system refuses direct I/O; reading through the page cache" in capfd.readouterr().err
    assert np.array_equal(gguf.raw("output_norm.weight"), GGUFFile(smollm2_path).raw("output_norm.weight"))


# --- typed metadata ----------------------------------------------------------------------


def test_typed_metadata_reads_values_of_the_right_type(small_gguf: Path) -> None:
    gguf = GGUFFile(small_gguf)
    assert gguf.integer("test.u64") == 2**40
    assert gguf.integer("test.u8", positive=False) == 7
    assert gguf.number("test.f32") == 0.5
    assert gguf.number("test.u16") == 300.0  # an integer is a number too
    assert gguf.string("test.str") == "héllo"
    assert (gguf.integer("absent", 4), gguf.number("absent", 1e-5), gguf.string("absent", "none")) == (4, 1e-5, "none")


def test_per_layer_array_of_one_value_reads_as_that_value(tmp_path: Path) -> None:
    path = tmp_path / "layers.gguf"
    writer = GGUFWriter(path, "llama")
    writer.add_array("test.same", [9, 9, 9])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    gguf = GGUFFile(path)
    assert gguf.integer("test.same", layers=3) == 9
    with pytest.raises(LlamatpError, match=r"metadata test.same: expected a positive integer, got \[9, 9, 9\]$"):
        gguf.integer("test.same")  # only keys that llama.cpp reads per layer may hold an array


# How a key is read, and how the one-line error ends.
BAD_METADATA = [
    (lambda g: g.integer("test.str"), "metadata test.str: expected a positive integer, got 'héllo'"),
    (lambda g: g.integer("test.f32"), "metadata test.f32: expected a positive integer, got 0.5"),
    (lambda g: g.integer("test.bool"), "metadata test.bool: expected a positive integer, got True"),
    (lambda g: g.integer("test.i8", positive=False), "metadata test.i8: expected a non-negative integer, got -3"),
    (lambda g: g.integer("test.ints", layers=3), "metadata test.ints: expected the same value for every layer, got [1, 2, 3]"),
    (lambda g: g.integer("test.ints", layers=4),
     "metadata test.ints: expected a positive integer or an array of 4, one per layer, got [1, 2, 3]"),
    (lambda g: g.number("test.i64"), f"metadata test.i64: expected a positive number, got {-(2**40)}"),
    (lambda g: g.number("test.strs"), "metadata test.strs: expected a positive number, got ['a', 'bc', '']"),
    (lambda g: g.string("test.u32"), "metadata test.u32: expected a string, got 70000"),
    (lambda g: g.integer("absent"), "lacks metadata key 'absent'"),
]  # fmt: skip


@pytest.mark.parametrize("read, message", [pytest.param(r, m, id=m) for r, m in BAD_METADATA])
def test_metadata_of_the_wrong_type_is_one_clear_error(small_gguf: Path, read: Callable[[GGUFFile], Any],
                                                      message: str) -> None:
    with pytest.raises(LlamatpError) as error:
        read(GGUFFile(small_gguf))
    assert str(error.value).startswith(str(small_gguf))
    assert str(error.value).endswith(message)


def test_long_values_are_cut_short_in_messages(small_gguf: Path) -> None:
    gguf = GGUFFile(small_gguf)
    gguf.metadata["test.long"] = list(range(1000))
    with pytest.raises(LlamatpError, match=r"got \[0, 1, 2, .*\.\.\.$") as error:
        gguf.integer("test.long")
    assert len(str(error.value)) < 200


# --- broken files ------------------------------------------------------------------------


def value_type_offset(data: bytearray, key: str) -> int:
    """Where the u32 value type of metadata `key` sits (right after the key's bytes)."""
    return data.index(key.encode()) + len(key)


def tensor_info_fields(data: bytearray, name: str) -> tuple[int, int]:
    """Offsets of the first dimension (u64) and of the type id (u32) in `name`'s tensor info."""
    after_name = data.index(name.encode() + b"\x02\x00\x00\x00") + len(name)  # a 2-D tensor
    return after_name + 4, after_name + 4 + 2 * 8


def put(fmt: str, offset: int | Callable[[bytearray], int], value: int) -> Callable[[bytearray], None]:
    """A corruption: write `value` as `fmt` at `offset`, or at the offset that `offset(data)` finds."""

    def patch(data: bytearray) -> None:
        struct.pack_into(fmt, data, offset if isinstance(offset, int) else offset(data), value)

    return patch


def rename_tensor_with_unknown_type(data: bytearray) -> None:
    """A newline in a tensor name must not break the message over two lines."""
    put("<I", lambda d: tensor_info_fields(d, "w.f32")[1], 200)(data)
    data[data.index(b"w.f32")] = ord("\n")


CORRUPTIONS = [
    ("bad magic", put("<I", 0, int.from_bytes(b"GGML", "little")), "bad magic"),
    ("version 4", put("<I", 4, 4), "unsupported GGUF version 4"),
    ("version 1", put("<I", 4, 1), "unsupported GGUF version 1"),
    ("huge tensor count", put("<Q", 8, 2**63), "exceed the file size"),
    ("huge metadata count", put("<Q", 16, 2**40), "exceed the file size"),
    ("huge string length", put("<Q", lambda d: value_type_offset(d, "test.str") + 4, 2**62), "header ends early"),
    ("huge array count", put("<Q", lambda d: value_type_offset(d, "test.ints") + 8, 2**61), f"array of {2**61} items"),
    ("unknown value type", put("<I", lambda d: value_type_offset(d, "test.u8"), 99), "unknown metadata value type 99"),
    ("unknown array item type", put("<I", lambda d: value_type_offset(d, "test.ints") + 4, 77), "unknown metadata value type 77"),
    ("nested array", put("<I", lambda d: value_type_offset(d, "test.ints") + 4, 9), "nested metadata arrays"),
    ("unknown tensor type", put("<I", lambda d: tensor_info_fields(d, "w.f32")[1], 200), "tensor 'w.f32' has unknown type id 200"),
    ("empty dimension", put("<Q", lambda d: tensor_info_fields(d, "w.f32")[0], 0), "tensor 'w.f32' has an empty dimension"),
    ("huge dimension", put("<Q", lambda d: tensor_info_fields(d, "w.f32")[0], 2**40), "tensor 'w.f32' data runs past the end of the file"),
    ("row not whole blocks", put("<Q", lambda d: tensor_info_fields(d, "w.q8_0")[0], 48), "not a whole number of Q8_0 blocks"),
    ("newline in a name", rename_tensor_with_unknown_type, r"tensor '\n.f32' has unknown type id 200"),
]  # fmt: skip


@pytest.mark.parametrize("corrupt, message", [pytest.param(c, m, id=i) for i, c, m in CORRUPTIONS])
def test_corrupt_header_is_one_clear_error(small_gguf: Path, tmp_path: Path, corrupt: Callable, message: str) -> None:
    data = bytearray(small_gguf.read_bytes())
    corrupt(data)
    path = tmp_path / "corrupt.gguf"
    path.write_bytes(data)
    with pytest.raises(LlamatpError) as error:
        GGUFFile(path)
    assert str(error.value).startswith(f"{path} is not a valid GGUF file: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_other_power_of_two_alignment_is_read(tmp_path: Path) -> None:
    gguf = GGUFFile(write_small_gguf(tmp_path / "aligned.gguf", alignment=64))
    assert all(t.offset % 64 == 0 for t in gguf.tensors.values())
    assert gguf.raw("b.f16").tobytes() == small_tensors()["b.f16"][0].tobytes()


@pytest.mark.parametrize("alignment", [0, 48, 2**32 - 1])
def test_alignment_must_be_a_power_of_two(tmp_path: Path, alignment: int) -> None:
    path = write_small_gguf(tmp_path / "aligned.gguf", alignment=64)
    data = bytearray(path.read_bytes())
    put("<I", value_type_offset(data, "general.alignment") + 4, alignment)(data)
    path.write_bytes(data)
    with pytest.raises(LlamatpError, match=f"general.alignment must be a power of two, got {alignment}$"):
        GGUFFile(path)


def test_missing_file_or_a_directory(tmp_path: Path) -> None:
    with pytest.raises(LlamatpError, match="model file not found: .*absent.gguf"):
        GGUFFile(tmp_path / "absent.gguf")
    with pytest.raises(LlamatpError, match="model file .* is a directory"):
        GGUFFile(tmp_path)


def test_text_file_is_not_gguf(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("This is a text file, not a model.\n" * 10)
    with pytest.raises(LlamatpError, match=r"notes.txt is not a valid GGUF file: bad magic \(expected 'GGUF'\)"):
        GGUFFile(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.touch()
    with pytest.raises(LlamatpError, match="cannot read .*empty.gguf"):
        GGUFFile(path)


# Where to cut the real file, from its size and where its tensor data starts, and what is said.
HEADER_CUT = "header ends early|exceeds the file size"
DATA_CUT = "runs past the end of the file"
TRUNCATIONS = {
    "in the magic": (lambda size, data_start: 2, HEADER_CUT),
    "in the counts": (lambda size, data_start: 20, HEADER_CUT),
    "in the metadata": (lambda size, data_start: data_start // 2, HEADER_CUT),
    "after the header": (lambda size, data_start: data_start, DATA_CUT),
    "in the tensor data": (lambda size, data_start: size // 2, DATA_CUT),
    "one byte short": (lambda size, data_start: size - 1, DATA_CUT),
}


@pytest.mark.parametrize("where", TRUNCATIONS)
def test_truncated_file(smollm2_path: Path, smollm2_reader: GGUFReader, tmp_path: Path, where: str) -> None:
    cut_at, message = TRUNCATIONS[where]
    data_start = min(t.data_offset for t in smollm2_reader.tensors)
    cut = cut_at(smollm2_path.stat().st_size, data_start)
    path = tmp_path / "truncated.gguf"
    with open(smollm2_path, "rb") as src:
        path.write_bytes(src.read(cut))
    with pytest.raises(LlamatpError, match=f"is not a valid GGUF file: .*({message})"):
        GGUFFile(path)


# --- fuzzing -----------------------------------------------------------------------------

# A clean load may keep a few Python objects per byte of header (a list item per array byte,
# a dict entry per key); anything that trusts a length it read allocates far more.
TRACED_BYTES_PER_FILE_BYTE = 64
TRACED_BYTES_SLACK = 64 * 1024
INTERESTING_U64 = [0, 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1]


def field_offsets(data: bytes) -> list[int]:
    """Offsets of the header's numeric fields: the counts, each string's length, and the few
    u32/u64 fields after each key and tensor name (value types, array counts, dims, type ids)."""
    starts = [4, 8, 16]
    for name in [*SMALL_METADATA, "general.architecture", *small_tensors()]:
        at = data.index(name.encode())
        starts += [at - 8, at + len(name)]
    return sorted({start + k for start in starts for k in range(0, 28, 4) if start + k + 8 <= len(data)})


@settings(max_examples=300, deadline=timedelta(seconds=1))
@given(st.data())
def test_mutated_files_load_cleanly_or_fail_with_one_line(small_gguf: Path, tmp_path_factory: pytest.TempPathFactory,
                                                          data: st.DataObject) -> None:
    original = small_gguf.read_bytes()
    mutated = bytearray(original)
    fields = st.sampled_from(field_offsets(original))
    byte_edit = st.tuples(st.just("<B"), fields | st.integers(0, len(original) - 1), st.integers(0, 255))
    u64_edit = st.tuples(st.just("<Q"), fields | st.integers(0, len(original) - 8),
                         st.sampled_from(INTERESTING_U64) | st.integers(0, 2**64 - 1))
    for fmt, offset, value in data.draw(st.lists(byte_edit | u64_edit, min_size=1, max_size=4), label="edits"):
        struct.pack_into(fmt, mutated, offset, value)
    cut = data.draw(st.none() | st.integers(0, len(original)), label="cut")
    if cut is not None:
        del mutated[cut:]
    path = tmp_path_factory.getbasetemp() / "mutated.gguf"
    path.write_bytes(mutated)

    tracemalloc.start()
    try:
        gguf = GGUFFile(path)
    except LlamatpError as e:
        assert "\n" not in str(e)
        return
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < TRACED_BYTES_PER_FILE_BYTE * len(mutated) + TRACED_BYTES_SLACK
    for name, info in gguf.tensors.items():
        assert info.offset + info.nbytes <= len(mutated)
        assert gguf.raw(name).nbytes == info.nbytes
