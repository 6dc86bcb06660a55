"""Row sources: arrays read a batch at a time from .npy, uncompressed .npz members and .h5 datasets, their
splits, pickling for worker processes, the memory budget's guard on reading a source whole, and uploads
checked without holding them."""

from __future__ import annotations

import pickle
import zipfile

import h5py
import numpy as np
import pytest

from reuse.data import load_data
from reuse.data.rows import FileRows, H5Rows, IndexedRows, fingerprint, is_lazy, npy_rows, read_rows
from reuse.data.stream import ahead, shared
from reuse.errors import InvalidInput, ResourceExhausted
from reuse.memory import MemoryBudget, parse_mb, process_rss, set_process_budget

INDEXES = [
    np.array([0, 1, 2]),            # in order
    np.array([9, 2, 2, 5, 0]),      # any order, repeats
    np.array([], dtype=np.int64),   # nothing
    np.arange(10)[::-1],            # every row, reversed
]


@pytest.fixture
def arr(rng):
    return rng.normal(size=(10, 3, 2)).astype(np.float32)


@pytest.mark.parametrize("index", INDEXES, ids=["ordered", "shuffled-repeats", "empty", "reversed"])
def test_every_source_reads_the_rows_asked_for(tmp_path, arr, index):
    np.save(tmp_path / "x.npy", arr)
    np.savez(tmp_path / "d.npz", x=arr, y=np.arange(10))
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"] = arr
    sources = [npy_rows(tmp_path / "x.npy"), load_data(tmp_path / "d.npz").x,
               H5Rows(tmp_path / "d.h5", "x", arr.shape, arr.dtype), IndexedRows(arr, np.arange(10))]
    for src in sources:
        assert is_lazy(src) and src.shape == arr.shape and len(src) == 10
        np.testing.assert_array_equal(read_rows(src, index), arr[index])
        np.testing.assert_array_equal(src[2:7:2], arr[2:7:2])
        np.testing.assert_array_equal(np.asarray(src), arr)


def test_npz_members_stored_are_read_by_row_compressed_ones_in_memory(tmp_path, arr):
    np.savez(tmp_path / "plain.npz", x=arr, y=np.arange(10))
    np.savez_compressed(tmp_path / "packed.npz", x=arr, y=np.arange(10))
    plain, packed = load_data(tmp_path / "plain.npz"), load_data(tmp_path / "packed.npz")
    assert isinstance(plain.x, FileRows) and isinstance(packed.x, np.ndarray)
    assert isinstance(plain.y, np.ndarray)  # labels are always in memory
    np.testing.assert_array_equal(np.asarray(plain.x), packed.x)


def test_h5_features_are_read_by_slice(tmp_path, arr):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"], f["y"] = arr, np.arange(10)
    ds = load_data(tmp_path / "d.h5")
    assert isinstance(ds.x, H5Rows) and ds.y.tolist() == list(range(10))


def test_refusals_name_the_file(tmp_path, arr):
    np.save(tmp_path / "f.npy", np.asfortranarray(arr))
    with pytest.raises(InvalidInput,
                       match=r"f\.npy: is stored in Fortran order, which cannot be read by rows"):
        load_data(tmp_path / "f.npy", require_labels=False)
    np.save(tmp_path / "t.npy", arr)
    data = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[:-40])
    with pytest.raises(InvalidInput,
                       match=r"t\.npy: the file holds \d+ bytes, fewer than the \d+ its array header "
                                           r"promises \(truncated\?\)"):
        load_data(tmp_path / "t.npy", require_labels=False)
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(InvalidInput, match=r"junk\.npy: cannot be read as a NumPy array"):
        load_data(tmp_path / "junk.npy", require_labels=False)


def test_sources_survive_pickling_and_reopen_their_file(tmp_path, arr):
    np.savez(tmp_path / "d.npz", x=arr, y=np.arange(10))
    src = load_data(tmp_path / "d.npz").x
    src.read(np.array([1]))  # opens the file
    again = pickle.loads(pickle.dumps(src))
    assert len(pickle.dumps(src)) < 1000  # a path and a position, not the data
    np.testing.assert_array_equal(again.read(np.array([3, 1])), arr[[3, 1]])
    assert fingerprint(again) == fingerprint(src)


def test_a_changed_file_gets_a_new_fingerprint(tmp_path, arr):
    np.save(tmp_path / "x.npy", arr)
    before = fingerprint(npy_rows(tmp_path / "x.npy"))
    np.save(tmp_path / "x.npy", arr + 1)
    assert fingerprint(npy_rows(tmp_path / "x.npy")) != before
    assert fingerprint(arr) == fingerprint(arr.copy()) != fingerprint(arr + 1)


def test_shared_writes_arrays_in_memory_once_and_keeps_sources(tmp_path, arr):
    np.savez(tmp_path / "d.npz", x=arr, y=np.arange(10))
    lazy = load_data(tmp_path / "d.npz")
    assert shared(lazy, tmp_path / "copy.npz") is lazy and not (tmp_path / "copy.npz").exists()
    memory = load_data(tmp_path / "d.npz")
    memory = type(memory)(np.asarray(memory.x), memory.y, memory.source)
    out = shared(memory, tmp_path / "copy.npz")
    assert isinstance(out.x, FileRows) and (tmp_path / "copy.npz").exists()
    np.testing.assert_array_equal(np.asarray(out.x), arr)


def test_reading_a_source_whole_is_refused_past_the_budget(tmp_path):
    np.save(tmp_path / "big.npy", np.zeros((1000, 1000), np.float32))  # 3.8 MiB
    src = npy_rows(tmp_path / "big.npy")
    try:
        set_process_budget(str(process_rss() // 2**20 + 4))  # a few MiB left
        with pytest.raises(ResourceExhausted,
                           match=r"big\.npy: reading all 1000 rows at once needs 3\.8 MiB, "
                                                    r"more than the memory budget leaves"):
            np.asarray(src)
        assert src[5:7].shape == (2, 1000)  # batches still read
    finally:
        set_process_budget(None)


@pytest.mark.parametrize(("value", "ok"), [("512", True), ("1", True), ("0", False), ("-5", False),
                                           ("1.5", False), ("lots", False), ("", False)])
def test_memory_mb_values(value, ok):
    if ok:
        assert parse_mb(value, "--memory-mb") == int(value)
        assert MemoryBudget.from_settings(value).total == int(value) * 2**20
    else:
        with pytest.raises(InvalidInput, match="--memory-mb must be a whole number of megabytes, at least 1"):
            parse_mb(value, "--memory-mb")


def test_read_ahead_keeps_order_and_raises_where_the_batch_is_taken():
    assert list(ahead(lambda k: k * 2, range(5))) == [0, 2, 4, 6, 8]

    def read(k: int) -> int:
        if k == 3:
            raise InvalidInput("row 3 is bad")
        return k

    got = []
    with pytest.raises(InvalidInput, match="row 3 is bad"):
        for v in ahead(read, range(6)):
            got.append(v)
    assert got == [0, 1, 2]


def test_uploaded_npz_is_checked_by_streaming_and_a_damaged_member_is_named(tmp_path, store):
    from reuse.store.uploads import DatasetStore, Upload

    np.savez_compressed(tmp_path / "d.npz", x=np.zeros((500, 50), np.float32), y=np.zeros(500, np.int64))
    raw = bytearray((tmp_path / "d.npz").read_bytes())
    with zipfile.ZipFile(tmp_path / "d.npz") as z:
        info = z.getinfo("x.npy")
        start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    raw[start + info.compress_size // 2] ^= 0xFF  # flip a byte inside the compressed member
    datasets = DatasetStore(store)
    with Upload(store.state_dir / "uploads", 10**8) as up:
        up.write(bytes(raw))
        with pytest.raises(InvalidInput, match=r"uploaded dataset is not a readable npz file"):
            datasets.put(up, "damaged", fmt="npz")
    assert datasets.list() == []
    good = (tmp_path / "g.npy")
    np.save(good, np.ones((4, 3), np.float32))
    with Upload(store.state_dir / "uploads", 10**8) as up:
        up.write(good.read_bytes())
        info = datasets.put(up, "feats", fmt="npy")
    assert info.format == "npy" and isinstance(load_data(info.path, require_labels=False).x, FileRows)
