"""The one HDF5 guard and the one atomic writer, at the depth and in the cases each caller relies on."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from reuse.atomic import atomic_path, write_json_atomic
from reuse.data import load_data
from reuse.errors import AlreadyExists, InvalidInput, StoreCorrupt
from reuse.h5guard import check_tree


def _file_with(path, damage):
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros((2, 3), "f4")
        f["deep/real"] = np.zeros(2)
        damage(f)
    return path


@pytest.mark.parametrize(("label", "damage", "text"), [
    ("soft", lambda f: f["deep"].__setitem__("a/b", h5py.SoftLink("/x")), "'deep/a/b' is a link (SoftLink)"),
    ("external", lambda f: f["deep"].__setitem__("e", h5py.ExternalLink("/etc/passwd", "/")),
     "'deep/e' is a link (ExternalLink)"),
    ("bomb", lambda f: f.create_dataset("deep/bomb", shape=(10**6, 10**5), dtype="f4"), "declares"),
])
def test_the_guard_refuses_links_and_bombs_at_any_depth(tmp_path, label, damage, text):
    path = _file_with(tmp_path / f"{label}.h5", damage)
    with h5py.File(path, "r") as f, pytest.raises(StoreCorrupt, match="refused") as err:
        check_tree(f, path, StoreCorrupt)
    assert text in str(err.value)
    with pytest.raises(InvalidInput, match="refused"):  # the data reader uses the same rules
        load_data(path)


def test_the_guard_returns_every_dataset(tmp_path):
    path = _file_with(tmp_path / "ok.h5", lambda f: None)
    with h5py.File(path, "r") as f:
        assert sorted(ds.name for ds in check_tree(f, path, InvalidInput)) == ["/deep/real", "/x"]


def test_atomic_writes_leave_the_old_file_or_the_new_one(tmp_path):
    target = tmp_path / "a.json"
    write_json_atomic(target, {"b": 1, "a": 2})
    assert target.read_text() == '{"a": 2, "b": 1}'
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer died")
    assert target.read_text() == '{"a": 2, "b": 1}'
    with pytest.raises(AlreadyExists), atomic_path(target, overwrite=False) as tmp:
        tmp.write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
