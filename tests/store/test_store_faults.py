"""The store under faults: damaged files, lost or stale index rows, concurrent writers, killed writers."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
from conftest import make_mlp
from store_helpers import WORKER, concurrent_registers, flip_byte

from reuse.errors import StoreCorrupt
from reuse.store import ModelStore, h5file

ROOT = Path(__file__).resolve().parents[2]


def _kernel(path, layer="hidden1"):
    with h5py.File(path) as f:
        return h5file.layer_weight_datasets(f, layer, path)[0].name


def test_flipped_weight_byte_is_detected_by_load_check_and_layer_reads(store, tiny_model):
    info = store.register(tiny_model, "base")
    store.register(tiny_model, "base")
    flip_byte(info.path, _kernel(info.path), at=5)
    with pytest.raises(StoreCorrupt, match=rf"{info.path}: checksum mismatch in weight .*hidden1"):
        store.load("base:1")
    with pytest.raises(StoreCorrupt, match="checksum mismatch"):
        store.read_layer_weights("base:1", ["hidden1"])
    assert len(store.read_layer_weights("base:1", ["hidden2"])["hidden2"]) == 2  # other layers still readable
    store.load("base:2")
    report = store.check()
    assert not report.ok
    assert [(f.ref, f.ok) for f in report.files] == [("base:1", False), ("base:2", True)]
    assert (
        "checksum mismatch in weight" in report.files[0].problem and str(info.path) in report.files[0].problem
    )
    repaired = store.check(repair=True)
    assert not repaired.ok and info.path.exists()  # reported, never deleted


def test_damaged_model_config_is_detected(store, tiny_model):
    info = store.register(tiny_model, "base")
    with h5py.File(info.path, "r+") as f:
        f.attrs["model_config"] = h5file.as_text(f.attrs["model_config"]).replace(
            '"units": 16', '"units": 17'
        )
    with pytest.raises(StoreCorrupt, match="checksum mismatch in model_config"):
        store.load("base")
    with pytest.raises(StoreCorrupt, match="model_config"):
        store.model_config("base")


def test_truncated_file_gives_clear_error(store, tiny_model):
    info = store.register(tiny_model, "base")
    os.truncate(info.path, info.path.stat().st_size // 2)
    with pytest.raises(StoreCorrupt, match=str(info.path)):
        store.load("base")
    assert not store.check().ok


def test_index_is_rebuilt_when_missing_or_garbage(store, tiny_model):
    for name in ("a", "a", "b"):
        store.register(tiny_model, name, description=name)
    expected = [i.to_dict() for i in store.versions("a")]
    store.index.path.unlink()
    assert [i.to_dict() for i in store.versions("a")] == expected
    assert [i.ref for i in store.list()] == ["a:2", "b:1"]
    assert store.index.exists()
    store.index.path.write_bytes(b"this is not a database" * 100)
    assert [i.ref for i in store.list()] == ["a:2", "b:1"]
    assert store.check().ok


def test_list_versions_and_info_open_no_model_file(store, tiny_model):
    store.register(tiny_model, "a")
    store.register(tiny_model, "b")
    before = ([i.to_dict() for i in store.list()], [i.to_dict() for i in store.versions("a")],
              store.info("b").to_dict(), store.layers("b"))
    # every byte zeroed; size and mtime (the index's key) kept
    for info in (store.info("a"), store.info("b")):
        st = info.path.stat()
        info.path.write_bytes(bytes(st.st_size))
        os.utime(info.path, ns=(st.st_atime_ns, st.st_mtime_ns))
    fresh = ModelStore(store.root)  # whatever opened a version file would now fail or answer differently
    after = ([i.to_dict() for i in fresh.list()], [i.to_dict() for i in fresh.versions("a")],
             fresh.info("b").to_dict(), fresh.layers("b"))
    assert after == before
    with pytest.raises(StoreCorrupt, match="cannot be opened as HDF5"):  # the files are unreadable indeed
        fresh.model_config("b")


def test_index_reconciles_rows_missing_or_stale(store, tiny_model):
    store.register(tiny_model, "a")
    info2 = store.register(tiny_model, "a")
    # As if a crash came between the rename and the index update: the file is there, the row is not.
    with sqlite3.connect(store.index.path) as con:
        con.execute("DELETE FROM versions WHERE version = 2")
    gone = store.register(tiny_model, "b")
    gone.path.unlink()  # a file removed behind the store's back leaves a stale row
    report = store.check()
    assert report.missing_from_index == ("a:2",) and report.stale_in_index == ("b:1",)
    assert not report.ok
    assert [i.ref for i in store.list()] == ["a:2"]
    assert store.info("a:2") == info2
    assert store.check().ok


def _temp_files_of_a_dead_and_a_live_writer(store, model):
    """A version of "a", plus a temp file whose writer's pid is gone and one whose writer (us) runs."""
    store.register(model, "a")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = store.root / "a" / f".tmp-{dead.pid}-{'0' * 32}.h5"
    leftover.write_bytes(b"partial")
    live = store.root / "a" / f".tmp-{os.getpid()}-{'1' * 32}.h5"
    live.write_bytes(b"in progress")
    return leftover, live


def test_check_repair_rebuilds_index_and_removes_dead_writers_temp_files(store, tiny_model):
    leftover, live = _temp_files_of_a_dead_and_a_live_writer(store, tiny_model)
    stray = store.root / "a" / "notes.txt"
    stray.write_text("mine")
    store.index.path.unlink()
    report = store.check()
    assert report.temp_files == (str(leftover),) and report.stray_files == (str(stray),)
    assert report.index_unreadable and not report.ok
    fixed = store.check(repair=True)
    assert fixed.ok and fixed.removed_temp_files == (str(leftover),)
    assert not leftover.exists() and live.exists() and stray.exists()
    assert store.check().ok


def test_dead_writers_temp_file_is_a_note_and_the_next_write_sweeps_it(store, tiny_model):
    leftover, live = _temp_files_of_a_dead_and_a_live_writer(store, tiny_model)
    report = store.check()
    assert report.ok and report.temp_files == (str(leftover),)
    assert report.to_dict()["notes"] == [f"temp file of a writer that is gone: {leftover} (the next write to "
                                         "its folder, or --repair, removes it)"]
    out = subprocess.run([sys.executable, str(ROOT / "cli.py"), "store", "check", "--store", str(store.root)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    assert f"note: temp file of a writer that is gone: {leftover}" in out.stdout and "OK" in out.stdout
    store.register(tiny_model, "a")
    assert not leftover.exists() and live.exists()
    live.unlink()
    assert store.check().temp_files == ()


def test_concurrent_registrations_from_processes_get_distinct_versions(tmp_path):
    root = tmp_path / "store"
    refs = concurrent_registers(str(root), "shared", 2, 4, timeout=240)
    assert sorted(refs) == sorted(f"shared:{v}" for v in range(1, 9))
    store = ModelStore(root)
    infos = store.versions("shared")
    assert [i.version for i in infos] == list(range(1, 9))
    assert len({i.description for i in infos}) == 4  # four writers, two versions each
    report = store.check()
    assert report.ok and len(report.files) == 8


def test_register_killed_mid_write_leaves_no_partial_version(tmp_path):
    root = tmp_path / "store"
    delays = [0.05, 0.3, 0.8]
    procs = [subprocess.Popen([sys.executable, str(WORKER), "forever", str(root), "big"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in delays]
    ready_at = []
    for p in procs:
        line = p.stdout.readline()
        assert line.strip() == "ready", p.stderr.read()[-2000:]
        ready_at.append(time.monotonic())
    for p, start, delay in sorted(zip(procs, ready_at, delays, strict=True), key=lambda t: t[1] + t[2]):
        time.sleep(max(0.0, start + delay - time.monotonic()))
        p.send_signal(signal.SIGKILL)
    for p in procs:
        p.wait(timeout=60)
        p.stdout.close()
        p.stderr.close()
        assert p.returncode == -signal.SIGKILL
    store = ModelStore(root)
    visible = sorted(v for (_, v) in store._scan(["big"]))
    assert visible == list(range(1, len(visible) + 1))  # contiguous, every one complete (checked below)
    store.list()  # a reader adds the row of a version whose writer died between the rename and the index
    report = store.check()
    # Each writer is always inside a register (the loop has no pause), so kills leave partial temp files:
    # notes, not damage, and the next write to the folder sweeps them.
    assert report.damaged == () and report.ok, report
    assert report.temp_files and len(report.notes) == len(report.temp_files)
    new = store.register(make_mlp(), "big")
    assert new.version == len(visible) + 1 and not list((root / "big").glob(".tmp-*"))
    assert store.check().temp_files == () and store.check().ok
    if visible:
        store.load(f"big:{visible[-1]}")
