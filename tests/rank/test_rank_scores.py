"""The transferability scores (reuse.rank.scores, pure NumPy) against direct computations, and the ranking
rule (reuse.rank.result.order)."""

from __future__ import annotations

import numpy as np
import pytest
from logme_reference import best_direct, direct_evidence

from reuse.rank.result import Scored, order
from reuse.rank.scores import Task, knn_accuracy, logme, logme_evidence, score_all, sfda


@pytest.mark.parametrize(("rows", "width", "regression"), [(40, 12, False), (15, 30, False), (50, 6, True)])
def test_logme_equals_the_maximised_evidence_of_a_direct_computation(rows, width, regression):
    rng = np.random.default_rng(rows)
    f = rng.normal(size=(rows, width))
    y = f[:, 0] + 0.5 * rng.normal(size=rows) if regression else (f[:, 0] + rng.normal(size=rows) > 0) + \
        (f[:, 1] > 0.5)
    task = Task.of(y, regression=regression)
    ours = logme_evidence(f, task.targets())
    assert ours.value == pytest.approx(best_direct(f, task.targets()), abs=1e-7)
    # and at our alpha, beta the direct formula gives our value (the same quantity, not just the same max)
    at = np.mean([direct_evidence(f, task.targets()[:, k], np.log(ours.alpha[k]), np.log(ours.beta[k]))
                  for k in range(task.targets().shape[1])])
    assert at == pytest.approx(ours.value, abs=1e-9)


def test_logme_prefers_features_that_carry_the_labels():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 30)
    informative = np.eye(4)[y] * 3 + rng.normal(size=(120, 4))
    noise = rng.normal(size=(120, 4))
    task = Task.of(y)
    both = np.concatenate([informative, noise], 1)
    assert logme(informative, task) > logme(both, task) > logme(noise, task)


def _knn_by_hand(f: np.ndarray, y: np.ndarray, k: int) -> float:
    hits = 0
    for i in range(len(f)):
        d = np.linalg.norm(f - f[i], axis=1)
        d[i] = np.inf
        nb = np.argsort(d, kind="stable")[:k]
        votes = np.bincount(y[nb], minlength=y.max() + 1)
        top = set(np.flatnonzero(votes == votes.max()))
        pred = next(y[j] for j in nb if y[j] in top)  # a tie goes to the nearest tied class
        hits += pred == y[i]
    return hits / len(f)


@pytest.mark.parametrize(("seed", "k", "classes"), [(0, 1, 2), (1, 3, 3), (2, 5, 4), (3, 4, 2), (4, 2, 5)])
def test_knn_accuracy_is_the_leave_one_out_vote(seed, k, classes):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(37, 3))
    y = rng.integers(0, classes, 37)
    y[:classes] = np.arange(classes)
    assert knn_accuracy(f, Task.of(y), k=k) == pytest.approx(_knn_by_hand(f, y, k))


def test_knn_samples_large_sets_and_scores_regression_as_r2():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2))
    assert knn_accuracy(x, Task.of(x[:, 0] * 2.0, regression=True)) > 0.8
    assert knn_accuracy(x, Task.of(rng.normal(size=300), regression=True)) < 0.2
    y = (x[:, 0] > 0).astype(int)
    assert knn_accuracy(x, Task.of(y), max_rows=100) > 0.85  # a stratified sample of 100 rows


def test_sfda_reads_class_separation_and_skips_regression():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    separated = np.eye(3)[y] * 4 + rng.normal(size=(120, 3))
    shuffled = Task.of(rng.permutation(y))
    good, bad = sfda(separated, Task.of(y)), sfda(separated, shuffled)
    assert 0 <= bad < good <= 1 and good > 0.8
    assert sfda(separated, Task.of(separated[:, 0], regression=True)) is None


@pytest.mark.parametrize(("y", "message"), [
    (np.zeros(10), "every label is 0"),
    (np.array([1.0]), "at least two"),
    (np.array([0, 1, np.nan]), "finite numbers"),
])
def test_labels_the_scores_cannot_use_are_refused(y, message):
    with pytest.raises(ValueError, match=message):
        Task.of(y)


def test_features_with_nan_are_refused_naming_how_many():
    f = np.ones((6, 2))
    f[2, 1] = np.nan
    with pytest.raises(ValueError, match="1 NaN or infinite value"):
        score_all(f, Task.of(np.array([0, 1, 0, 1, 0, 1])))


def _entry(name: str, **scores: float) -> Scored:
    return Scored(name, 1, 1, name, (), 0, 1, dict(scores), 0.0)


def test_the_rule_averages_positions_with_ties_and_one_score_ranks_by_itself():
    a, b = _entry("a", logme=0.3, knn=0.8), _entry("b", logme=0.1, knn=0.9)
    c = _entry("c", logme=0.2, knn=0.9)
    ranked = order([a, b, c], ("logme", "knn"))
    # logme positions a1 c2 b3; knn b,c tie for 1-2 (1.5 each), a3: means a 2.0, c 1.75, b 2.25
    assert [e.model for e in ranked] == ["c", "a", "b"] and [e.rank for e in ranked] == [1, 2, 3]
    assert c.combined == pytest.approx(1.75)
    assert [e.model for e in order([a, b, c], ("knn",))] == ["b", "c", "a"]  # ties keep their order


def test_sfda_of_wide_features_is_computed_exactly_in_their_row_space():
    from reuse.rank.scores import _fisher, _gram_eig

    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(3), 4)
    f = 0.3 * (np.eye(3)[y] @ rng.normal(size=(3, 40)) + rng.normal(size=(12, 40)))
    s, u, left = _gram_eig(f)
    assert left and len(s) == 12
    full, _, shrink = _fisher(f, y, 3, None, 40)  # 40 x 40 scatter matrices
    span, _, same = _fisher(u * np.sqrt(s), y, 3, None, 40)  # 12 x 12
    assert same == pytest.approx(shrink) and 0.01 < shrink < 0.99
    assert span == pytest.approx(full, abs=1e-6)
