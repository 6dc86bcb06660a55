"""reuse.store.lineage.lineage_graph on a real store: builds, training, fine-tuning, an ensemble, an advisor's
architecture-only choice and a deleted base, down to which layer of which version each copy came from; and
the dashboard's layout of it (reuse.http.dashboard.layout)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_mlp

from reuse.errors import NotFound
from reuse.http.dashboard.layout import MAX_ROWS, layout
from reuse.service import Service
from reuse.store.lineage import lineage_graph


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("graph")
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    np.savez(root / "d.npz", x=(rng.normal(size=(60, 8)) + y[:, None]).astype("float32"), y=y)
    svc = Service(root / "store")
    svc.register_model(make_mlp(), "base")
    svc.build("clf", "base", "hidden[12]", classes=3, seed=0)  # clf:1
    svc.train_model("clf:1", str(root / "d.npz"), options={"epochs": 1})  # clf:2
    svc.finetune_model("clf:2", "hidden2", str(root / "d.npz"), options={"epochs": 1})  # clf:3
    svc.ensemble("ens", ["clf:2", "clf:3"])
    svc.register_model(make_mlp(seed=3), "gone")
    svc.build("orphan", "gone", "hidden1", classes=3, seed=0)
    svc.delete_version("gone:1")
    return svc


def _edges(g):
    return sorted((e["from"], e["op"], e["to"]) for e in g["edges"])


def _layer_edges(g):
    return sorted((tuple(e["from"]), tuple(e["to"])) for e in g["layer_edges"])


def test_builds_trains_and_finetunes_follow_each_layer(store):
    g = lineage_graph(store.store, "clf")
    assert g["root"] == "clf:3" and not g["truncated"]
    assert _edges(g) == [
        ("base:1", "build", "clf:1"),
        ("clf:1", "train", "clf:2"),
        ("clf:2", "finetune", "clf:3"),
    ]
    assert _layer_edges(g) == sorted(
        [
            (("base:1", "hidden1"), ("clf:1", "hidden1")),
            (("base:1", "hidden2"), ("clf:1", "hidden2")),
            (("clf:1", "hidden1"), ("clf:2", "hidden1")),
            (("clf:1", "hidden2"), ("clf:2", "hidden2")),
            (("clf:2", "hidden1"), ("clf:3", "hidden1")),
            (("clf:2", "hidden2"), ("clf:3", "hidden2")),
        ]
    )
    by_id = {v["id"]: v for v in g["versions"]}
    marks = {lay["name"]: (lay["reused"], lay["frozen"]) for lay in by_id["clf:3"]["layers"]}
    assert marks == {"hidden1": (True, True), "hidden2": (True, False)}  # hidden2 unfrozen by the fine-tune
    assert [lay["name"] for lay in by_id["base:1"]["layers"]] == [
        "hidden1",
        "hidden2",
    ]  # the copied ones only
    assert by_id["base:1"]["operation"] is None


def test_an_ensemble_joins_its_members_and_a_deleted_base_ends_the_walk(store):
    g = lineage_graph(store.store, "ens:1")
    assert ("clf:2", "ensemble", "ens:1") in _edges(g) and ("clf:3", "ensemble", "ens:1") in _edges(g)
    assert (("clf:2", None), ("ens:1", "member1")) in [
        (tuple(e["from"]), tuple(e["to"])) for e in g["layer_edges"]
    ]
    assert {v["id"] for v in g["versions"]} == {"ens:1", "clf:1", "clf:2", "clf:3", "base:1"}
    g = lineage_graph(store.store, "orphan")
    missing = {v["id"]: v["missing"] for v in g["versions"]}
    assert missing == {"orphan:1": False, "gone:1": True}
    assert lineage_graph(store.store, "clf", max_versions=2)["truncated"]
    with pytest.raises(NotFound):
        lineage_graph(store.store, "nope")


def test_the_layout_places_generations_left_to_right_and_folds_long_boxes(store):
    placed = layout(lineage_graph(store.store, "ens"))
    x = {b.id: b.x for b in placed.boxes}
    assert x["base:1"] < x["clf:1"] < x["clf:2"] < x["clf:3"] < x["ens:1"]
    assert all(b.x + 230 <= placed.width and b.y + b.height <= placed.height for b in placed.boxes)
    assert sum(line.kind == "layer" for line in placed.lines) == 8  # 6 copies + 2 members
    many = {
        "root": "a:1",
        "truncated": False,
        "edges": [],
        "layer_edges": [],
        "versions": [
            {
                "id": "a:1",
                "name": "a",
                "version": 1,
                "operation": None,
                "missing": False,
                "layers": [{"name": f"l{i}", "reused": False, "frozen": None} for i in range(MAX_ROWS + 5)],
            }
        ],
    }
    box = layout(many).boxes[0]
    assert len(box.rows) == MAX_ROWS and box.hidden_rows == 5
