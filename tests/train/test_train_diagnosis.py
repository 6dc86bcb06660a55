"""Diagnosis names the right problem on constructed cases; learning curves are drawn."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_mlp
from train_helpers import toy_data

from reuse.cli import cli
from reuse.data import Dataset
from reuse.errors import InvalidInput
from reuse.store import ModelStore
from reuse.store.lineage import HistorySegment
from reuse.train import TrainConfig, train
from reuse.train.curves import curves_figure, plot_curves
from reuse.train.diagnosis import diagnose


def test_a_network_that_cannot_learn_is_a_learning_problem():
    model = make_mlp()
    result = train(model, toy_data(), TrainConfig(epochs=5, batch_size=16, optimizer="sgd", lr=1e-7))
    findings = diagnose(result.history, result.metrics, n_outputs=3)
    assert [f.problem for f in findings] == ["learning"]
    assert "not improving" in findings[0].summary or "chance" in findings[0].summary
    assert "epoch" in findings[0].evidence and any("learning rate" in r for r in findings[0].remedies)


def _frozen(kernel: str) -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,))
    h = keras.layers.Dense(16, activation="relu", kernel_initializer=kernel, bias_initializer="ones",
                           trainable=False, name="frozen")(inp)
    return keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="out")(h))


def test_frozen_layers_whose_output_never_varies_are_named_as_the_learning_problem():
    """A frozen part that gives every input the same output (here a zero kernel; in practice a deep
    untrained base whose batch-norm statistics were never measured) is diagnosed as such, from the spread
    of its cached features recorded with the version, not as a learning rate to tune."""
    flat = train(_frozen("zeros"), toy_data(), TrainConfig(epochs=3, batch_size=16))
    settings = flat.settings()
    assert flat.cached_layers == ("frozen",) and settings["feature_std"] == 0.0
    findings = diagnose(flat.history, flat.metrics, n_outputs=3, settings=settings)
    assert findings[0].problem == "learning" and "almost the same output" in findings[0].summary
    assert "output of frozen" in findings[0].evidence and "0 between training rows" in findings[0].evidence
    assert any("batch normalisation" in r for r in findings[0].remedies)
    alive = train(_frozen("glorot_uniform"), toy_data(), TrainConfig(epochs=3, batch_size=16))
    assert alive.settings()["feature_std"] > 0.1
    assert not any("same output" in f.summary for f in diagnose(alive.history, alive.metrics, n_outputs=3,
                                                                settings=alive.settings()))


def test_train_warns_and_report_diagnoses_flat_frozen_features(tmp_path):
    data = toy_data()
    np.savez(tmp_path / "d.npz", x=data.x, y=data.y)
    ModelStore(tmp_path / "store").register(_frozen("zeros"), "flat")
    store = ["--store", str(tmp_path / "store")]
    out = CliRunner().invoke(cli, ["train", "flat", "--data", str(tmp_path / "d.npz"), "--epochs", "2",
                                   *store])
    assert out.exit_code == 0, out.output
    assert ("  warning: the frozen layers give every input almost the same output (their features' standard "
            "deviation across rows is 0); see `reuse report`") in out.output.splitlines()
    report = CliRunner().invoke(cli, ["report", "flat:2", "--json", *store])
    findings = json.loads(report.output)["findings"]
    assert findings[0]["summary"] == "the frozen layers give every input almost the same output"


def test_a_big_network_on_a_tiny_training_set_is_a_generalization_problem():
    rng = np.random.default_rng(0)
    tiny = Dataset(rng.normal(size=(12, 8)).astype(np.float32), np.arange(12) % 3, "tiny")
    val = Dataset(rng.normal(size=(60, 8)).astype(np.float32), np.arange(60) % 3, "val")
    model = make_mlp(hidden=(256, 256))
    result = train(model, tiny, TrainConfig(epochs=60, batch_size=12, optimizer="adam", lr=0.01), val=val)
    findings = diagnose(result.history, result.metrics, n_outputs=3)
    assert [f.problem for f in findings] == ["generalization"]
    assert "validation loss was lowest at epoch" in findings[0].evidence
    assert any("stop early" in r for r in findings[0].remedies)


def test_divergence_and_spread_across_seeds():
    nan_history = {"loss": [1.0, 3.0, math.nan], "accuracy": [0.3, 0.3, 0.3]}
    (f,) = diagnose(nan_history, n_outputs=3)
    assert f.problem == "learning" and f.evidence == "training loss became nan at epoch 3 of 3"
    healthy = {"loss": [1.0, 0.5, 0.2], "accuracy": [0.5, 0.8, 0.95],
               "val_loss": [1.0, 0.6, 0.3], "val_accuracy": [0.5, 0.8, 0.9]}
    assert diagnose(healthy, n_outputs=3) == []
    seeds = {"val_accuracy": {"mean": 0.8, "std": 0.08, "values": [0.7, 0.82, 0.88]}}
    (f,) = diagnose(healthy, {"seeds": seeds}, n_outputs=3)
    assert f.problem == "prediction"
    assert f.evidence == "val_accuracy 0.800 ± 0.080 over 3 seeds (min 0.700, max 0.880)"
    assert any("ensemble" in r for r in f.remedies)


def test_learning_curves_png(tmp_path):
    history = {"loss": [1.0, 0.5], "accuracy": [0.5, 0.9], "val_loss": [1.1, 0.7], "val_accuracy": [0.4, 0.8]}
    out = plot_curves(history, tmp_path / "c.png", title="m:1")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InvalidInput, match="expected a .png file name"):
        plot_curves(history, tmp_path / "c.jpg")
    with pytest.raises(InvalidInput, match="has no training history"):
        plot_curves({}, tmp_path / "d.png", title="m:1")


def _whole(ticks, last: int) -> list[float]:
    return [t for t in ticks if 0.5 <= t <= last + 0.5]


def test_learning_curves_span_the_lineage_with_a_marker_whole_epochs_and_a_floor():
    rising = [0.2 + 0.77 * (1 - math.exp(-e / 10)) for e in range(100)]
    train = HistorySegment("m:2", "train", {"loss": [2.0 - r for r in rising], "accuracy": rising})
    flat = [0.96 + 0.02 * (e % 3 == 0) for e in range(50)]  # one sample of 50 flipping: not a cliff
    tune = HistorySegment("m:3", "finetune hidden3", {"loss": [0.2] * 50, "accuracy": flat,
                                                      "val_loss": [0.3] * 50, "val_accuracy": [0.9] * 50})
    fig = curves_figure([train, tune], title="m:3", chance=0.2)
    loss_ax, acc_ax = fig.axes
    for ax in (loss_ax, acc_ax):
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert list(lines["training"].get_xdata()) == list(range(1, 151))
        val = lines["validation"].get_ydata()
        assert np.isnan(val[:100]).all() and not np.isnan(val[100:]).any()  # validation only while tuning
        markers = [line for line in ax.get_lines() if line.get_label() not in ("training", "validation")]
        assert [list(m.get_xdata()) for m in markers] == [[100.5, 100.5]]  # where fine-tuning began
        ticks = _whole(ax.get_xticks(), 150)
        assert ticks and all(t == int(t) for t in ticks)
    assert acc_ax.get_ylim()[0] == pytest.approx(0.2) and acc_ax.get_ylim()[1] >= 1.0  # chance level to 1
    assert loss_ax.get_ylim()[0] == 0.0
    assert "150 epochs along its lineage" in fig.texts[0].get_text()

    short = curves_figure({"loss": [1.0, 0.5], "accuracy": [0.97, 0.98]}, chance=0.5)
    for ax in short.axes:
        assert _whole(ax.get_xticks(), 2) == [1, 2]  # no tick at epoch 1.5
    assert short.axes[1].get_ylim()[0] == pytest.approx(0.5)
