"""The shipped example model: its checksums verify, it loads, it scores what it records (and what the
README says) on the held-out split, and the script's recipe reproduces it."""

from __future__ import annotations

import shutil

import pytest

from reuse.quickstart import example
from reuse.service import Service


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A copy of the shipped entry in a fresh store (so the test never writes into the checkout)."""
    root = tmp_path_factory.mktemp("shipped") / "models"
    src = example.example_path()
    dst = root / example.NAME / src.name
    dst.parent.mkdir(parents=True)
    shutil.copyfile(src, dst)
    return Service(root)


def test_shipped_file_is_a_valid_store_entry(shipped):
    report = shipped.check_store()
    assert [(f.ref, f.ok) for f in report.files] == [(f"{example.NAME}:{example.VERSION}", True)]
    assert report.files[0].bytes_verified >= 4 * 47_405 and not report.stray_files
    info = shipped.model_info(f"{example.NAME}:{example.VERSION}")
    assert info.class_names == ["0", "1", "2", "3", "4"]
    assert info.tags == example.TAGS and info.description == example.DESCRIPTION
    assert [la.name for la in shipped.model_layers(info.ref)] == [
        "hidden1", "hidden2", "hidden3", "hidden4", "hidden5", "output"]
    assert 20_000 < info.size_bytes < 500_000


def test_shipped_model_scores_its_recorded_test_accuracy(shipped):
    info = shipped.model_info(example.NAME)
    recorded = info.metrics["test_accuracy"]
    assert info.metrics["test_data"] == example.TEST_DATA
    result = shipped.evaluate_model(info.ref, example.TEST_DATA)  # loads with every checksum verified
    assert result["samples"] == info.metrics["test_samples"]
    assert result["accuracy"] == pytest.approx(recorded, abs=0.005)
    assert recorded > 0.97


def test_readme_quotes_the_recorded_accuracy(shipped):
    recorded = shipped.model_info(example.NAME).metrics["test_accuracy"]
    readme = (example.repo_root() / "README.md").read_text(encoding="utf-8")
    assert f"{100 * recorded:.1f}%" in readme


def test_the_recipe_reproduces_the_shipped_model(tmp_path, shipped):
    made = example.make_example_model(tmp_path)
    assert made.path == tmp_path / "models" / example.NAME / "v1.h5"
    recorded = shipped.model_info(example.NAME).metrics["test_accuracy"]
    assert made.test_accuracy == pytest.approx(recorded, abs=0.01)
    again = Service(tmp_path / "models")
    assert again.model_info(example.NAME).version == 1
    example.make_example_model(tmp_path, epochs=1)  # re-running replaces version 1, never adds version 2
    assert [i.version for i in Service(tmp_path / "models").model_versions(example.NAME)] == [1]
