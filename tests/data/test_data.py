"""Data loading and checks against a model: real files in tmp_path, real Keras models."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from conftest import make_mlp

from reuse.data import check_for_model, load_data, output_kind, split_validation
from reuse.data.builtin import with_split
from reuse.errors import InvalidInput


def _write_npz(path, x, y=None):
    arrays = {"x": x} if y is None else {"x": x, "y": y}
    np.savez(path, **arrays)
    return path


def test_npz_roundtrip(tmp_path, rng):
    x = rng.normal(size=(10, 8)).astype(np.float32)
    y = rng.integers(0, 3, size=10)
    ds = load_data(_write_npz(tmp_path / "d.npz", x, y))
    np.testing.assert_array_equal(ds.x, x)
    np.testing.assert_array_equal(ds.y, y)
    assert ds.class_names is None


def test_npz_with_pickled_objects_is_refused(tmp_path):
    np.savez(tmp_path / "bad.npz", x=np.array([{"a": 1}], dtype=object), y=np.array([0]))
    with pytest.raises(InvalidInput, match="bad.npz: cannot be read as .npz"):
        load_data(tmp_path / "bad.npz")


def test_csv_without_header_label_last(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("0.1,0.2,1\n0.3,0.4,0\n0.5,0.6,2\n")
    ds = load_data(p)
    assert ds.x.shape == (3, 2) and ds.y.tolist() == [1, 0, 2]


def test_csv_header_and_label_by_name_and_string_labels(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("kind,a,b\ncat,1,2\ndog,3,4\ncat,5,6\n")
    ds = load_data(p, label="kind")
    assert ds.x.tolist() == [[1, 2], [3, 4], [5, 6]]
    assert ds.class_names == ("cat", "dog") and ds.y.tolist() == [0, 1, 0]


def test_csv_string_label_column_without_header_is_data(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("1,2,cat\n3,4,dog\n")
    ds = load_data(p)
    assert len(ds) == 2 and ds.class_names == ("cat", "dog")


@pytest.mark.parametrize(("text", "message"), [
    ("", "d.csv: is empty"),
    ("a,b,label\n", "d.csv: has a header but no data rows"),
    ("1,2,0\n3,4\n", "d.csv: line 2 has 2 columns; expected 3"),
    ("1,2,0\n3,x,1\n", "d.csv: line 2, column 2: 'x' is not a number"),
])
def test_csv_errors(tmp_path, text, message):
    p = tmp_path / "d.csv"
    p.write_text(text)
    with pytest.raises(InvalidInput) as e:
        load_data(p)
    assert str(e.value) == f"{p}: {message.split(': ', 1)[1]}"


def test_csv_unknown_label_column(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("a,b,y\n1,2,0\n")
    with pytest.raises(InvalidInput, match="no column named 'kind'"):
        load_data(p, label="kind")


def test_h5_datasets_and_links_refused(tmp_path, rng):
    p = tmp_path / "d.h5"
    with h5py.File(p, "w") as f:
        f["x"] = rng.normal(size=(6, 8)).astype(np.float32)
        f["y"] = np.arange(6) % 3
    assert load_data(p).x.shape == (6, 8)
    q = tmp_path / "link.h5"
    with h5py.File(q, "w") as f:
        f["real"] = np.zeros((2, 8))
        f["x"] = h5py.SoftLink("/real")
    with pytest.raises(InvalidInput, match="'x' is a link"):
        load_data(q)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("missing.npz", None, "no such data file"),
    ("d.txt", b"1,2", "unknown data format '.txt'"),
    ("d.npz", b"not a zip", "cannot be read as .npz"),
    ("d.h5", b"not hdf5", "cannot be read as HDF5"),
])
def test_unreadable_files(tmp_path, name, content, message):
    p = tmp_path / name
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(InvalidInput) as e:
        load_data(p)
    assert str(e.value).startswith(f"{p}: ") and message in str(e.value)


def test_empty_npz(tmp_path):
    p = _write_npz(tmp_path / "e.npz", np.zeros((0, 8), np.float32), np.zeros(0, int))
    with pytest.raises(InvalidInput, match="e.npz: contains no samples"):
        load_data(p)


def test_builtin_digits_filters_and_explicit_relabel():
    raw = load_data("builtin:digits?classes=5-9&per_class=10")
    assert len(raw) == 50 and sorted(set(raw.y.tolist())) == [5, 6, 7, 8, 9]
    assert raw.x.min() >= 0 and raw.x.max() <= 1 and raw.class_names is None
    ds = load_data("builtin:digits?classes=5-9&per_class=10&relabel=1")
    assert ds.class_names == ("5", "6", "7", "8", "9")
    np.testing.assert_array_equal(ds.y, raw.y - 5)
    test = load_data("builtin:digits?classes=5-9&split=test")
    assert not ({r.tobytes() for r in raw.x} & {r.tobytes() for r in test.x})


def test_builtin_blobs_split_is_fixed():
    a, b = load_data("builtin:blobs"), load_data("builtin:blobs?split=test")
    assert a.x.shape == (500, 2) and b.x.shape == (500, 2)
    np.testing.assert_array_equal(a.x, load_data("builtin:blobs").x)
    assert set(a.y.tolist()) == {0, 1, 2}
    assert with_split("builtin:blobs?classes=0-1", "test") == "builtin:blobs?classes=0-1&split=test"


@pytest.mark.parametrize(("spec", "message"), [
    ("builtin:mnist", "unknown built-in data set 'mnist'"),
    ("builtin:digits?colour=red", "unknown option 'colour'"),
    ("builtin:digits?classes=9-5", "invalid classes '9-5'"),
    ("builtin:digits?classes=11", "classes [11] do not exist"),
    ("builtin:digits?per_class=0", "invalid per_class='0'"),
])
def test_builtin_errors(spec, message):
    with pytest.raises(InvalidInput, match=None) as e:
        load_data(spec)
    assert message in str(e.value)


def test_checks_against_model(rng):
    model = make_mlp(n_in=8, n_out=3)
    assert output_kind(model).kind == "multiclass"
    from reuse.data import Dataset

    good = Dataset(rng.normal(size=(5, 8)), np.array([0, 1, 2, 1, 0]), "good")
    assert check_for_model(good, model).x.dtype == np.float32

    def err(ds):
        with pytest.raises(InvalidInput) as e:
            check_for_model(ds, model)
        return str(e.value)

    assert err(Dataset(np.zeros((5, 7)), np.zeros(5, int), "few")) == (
        "few: samples have shape (7,) (7 values); model 'mlp' expects samples of shape (8,)")
    x = np.zeros((5, 8))
    x[2, 3] = np.nan
    assert err(Dataset(x, np.zeros(5, int), "nan")) == (
        "nan: 1 NaN feature value(s) in 1 sample(s) (first at row 2); expected finite numbers")
    x[2, 3] = np.inf
    assert "infinite" in err(Dataset(x, np.zeros(5, int), "inf"))
    msg = err(Dataset(np.zeros((5, 8)), np.array([0, 1, 2, 3, 4]), "labels"))
    assert msg.startswith("labels: labels [3, 4] are out of range for model 'mlp', whose output layer has 3")
    assert "whole class indices" in err(Dataset(np.zeros((2, 8)), np.array([0.5, 1.0]), "frac"))


def test_flat_rows_reshaped_to_model_input(rng):
    import keras

    model = keras.Sequential([keras.Input((2, 4)), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="softmax")])
    from reuse.data import Dataset

    ds = check_for_model(Dataset(rng.normal(size=(4, 8)), np.zeros(4, int), "flat"), model)
    assert ds.x.shape == (4, 2, 4)


def test_validation_split(rng):
    from reuse.data import Dataset

    ds = Dataset(np.arange(20, dtype=np.float32).reshape(10, 2), np.arange(10) % 2, "d")
    tr, va = split_validation(ds, 0.3, seed=1)
    assert len(tr) == 7 and len(va) == 3
    assert sorted(tr.x[:, 0].tolist() + va.x[:, 0].tolist()) == ds.x[:, 0].tolist()
    with pytest.raises(InvalidInput, match="validation split 1.5 is out of range"):
        split_validation(ds, 1.5)
