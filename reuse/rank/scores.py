"""Transferability scores of frozen features against new labels, without training (pure NumPy).

- :func:`logme`: LogME (You et al., ICML 2021), the log marginal evidence per sample of a Bayesian linear
  model from the features to each one-hot label column (or each standardised regression target), with
  the prior precision ``alpha`` and the noise precision ``beta`` set by maximising the evidence. Written
  from the paper's equations: one eigendecomposition of the features (below), then the fixed-point
  updates ``gamma = sum(beta s_i / (alpha + beta s_i))``, ``alpha = gamma / m'm``,
  ``beta = (n - gamma) / ||F m - y||^2``, where ``s_i`` are the eigenvalues of ``F'F`` and ``m`` is the
  posterior mean of the weights. Higher is better; nats per sample.
- :func:`knn_accuracy`: leave-one-out accuracy of a k-nearest-neighbour vote (Euclidean distance) on the
  features; for regression the leave-one-out R^2 of the neighbours' mean.
- :func:`sfda`: SFDA (Shao et al., ECCV 2022), the mean probability of the true class under a Bayes
  classifier in a regularised Fisher (FDA) space, after its self-challenging step that moves every
  sample towards the mean of the other classes in proportion to how confidently it was classified.
  Classification only.

Every score takes features ``f`` (rows x width) and labels; :func:`score_all` computes the ones asked for.
The module imports nothing but NumPy, so it runs (and is tested) without Keras.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

KNN_K = 5
KNN_MAX_ROWS = 10_000  # k-NN costs rows^2 x width: a seeded, stratified sample above this
LOGME_MAX_ITER = 1000  # cheap: each step is O(rank x columns); alpha -> inf (no evidence) converges slowly
LOGME_TOL = 1e-7
SFDA_A = 1.0  # the shrinkage lambda = exp(-a * largest eigenvalue of the within-class covariance)
SCORES = ("logme", "knn", "sfda")
DISTANCE_BLOCK_BYTES = 32 * 1024 * 1024  # one block of k-NN's pairwise distance matrix, at most


@dataclass(frozen=True)
class Task:
    """The labels as the scores read them: class indices 0..C-1 (``classes`` > 0), or regression targets."""

    y: np.ndarray  # (n,) int64 class indices, or (n, t) float64 targets
    classes: int  # 0 for regression

    @property
    def regression(self) -> bool:
        return self.classes == 0

    @classmethod
    def of(cls, y: np.ndarray, *, regression: bool | None = None) -> Task:
        """Class indices when the labels are whole numbers >= 0 (unless ``regression``), else targets.

        Raises:
            ValueError: fewer than two rows, one class only, or labels that are not finite numbers.
        """
        y = np.asarray(y)
        if len(y) < 2:
            raise ValueError(f"{len(y)} labelled row(s): the scores need at least two")
        if y.dtype.kind not in "biuf" or not np.all(np.isfinite(y)):
            raise ValueError("labels must be finite numbers (class indices or regression targets)")
        flat = y.reshape(len(y), -1)
        whole = flat.shape[1] == 1 and np.all(flat == np.round(flat)) and flat.min() >= 0
        if regression is None:
            regression = not whole
        if regression:
            return cls(flat.astype(np.float64), 0)
        if not whole:
            raise ValueError("class labels must be whole numbers >= 0")
        _, idx = np.unique(flat[:, 0].astype(np.int64), return_inverse=True)
        classes = int(idx.max()) + 1
        if classes < 2:
            raise ValueError(f"every label is {int(flat[0, 0])}: the scores need at least two classes")
        return cls(idx.astype(np.int64), classes)

    def targets(self) -> np.ndarray:
        """One-hot columns (classification) or standardised targets (regression), float64."""
        if not self.regression:
            return np.eye(self.classes)[self.y]
        sd = self.y.std(axis=0)
        return (self.y - self.y.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


# -- LogME --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Evidence:
    """LogME of one feature matrix: the mean over target columns, and each column's alpha and beta."""

    value: float
    alpha: np.ndarray
    beta: np.ndarray
    iterations: int


def _gram_eig(f: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """The non-zero eigenvalues ``s`` of F'F (the squared singular values of F) with the matching
    eigenvectors of the smaller of F F' (rows side: ``left`` True) and F'F (columns side): one symmetric
    decomposition of a min(rows, width)-square matrix, so nothing of size rows x width is made."""
    n, d = f.shape
    left = n < d
    s, v = np.linalg.eigh(f @ f.T if left else f.T @ f)
    keep = s > s.max(initial=0.0) * 1e-12
    return s[keep], v[:, keep], left


def _decompose(f: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The non-zero eigenvalues ``s`` of F'F and the targets' coordinates ``z`` (rank x columns) along the
    matching left singular vectors of F (the numbers an SVD of F gives, from :func:`_gram_eig`)."""
    s, v, left = _gram_eig(f)
    if left:
        return s, v.T @ y
    return s, (v.T @ (f.T @ y)) / np.sqrt(s)[:, None]


def logme_evidence(f: np.ndarray, y: np.ndarray) -> Evidence:
    """LogME of features ``f`` (n x d) for target columns ``y`` (n x k): each column's evidence per sample,
    maximised over its own alpha and beta, averaged over the columns (see the module docstring)."""
    f = np.asarray(f, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    n, d = f.shape
    s, z = _decompose(f, y)
    r = len(s)
    s = s[:, None]
    z2 = z ** 2
    outside = np.maximum((y ** 2).sum(axis=0) - z2.sum(axis=0), 0.0)  # ||y||^2 off the features' span
    alpha, beta = np.ones(y.shape[1]), np.ones(y.shape[1])
    iterations = 0
    while iterations < LOGME_MAX_ITER:
        iterations += 1
        t = alpha + beta * s
        gamma = (beta * s / t).sum(axis=0)
        m2 = (beta ** 2 * s * z2 / t ** 2).sum(axis=0)
        res2 = (alpha ** 2 * z2 / t ** 2).sum(axis=0) + outside
        new_alpha = gamma / np.maximum(m2, 1e-300)
        new_beta = (n - gamma) / np.maximum(res2, 1e-300)
        new_alpha, new_beta = np.clip(new_alpha, 1e-12, 1e12), np.clip(new_beta, 1e-12, 1e12)
        done = bool(np.all(np.abs(new_alpha / alpha - 1) < LOGME_TOL)
                    and np.all(np.abs(new_beta / beta - 1) < LOGME_TOL))
        alpha, beta = new_alpha, new_beta
        if done:
            break
    t = alpha + beta * s
    m2 = (beta ** 2 * s * z2 / t ** 2).sum(axis=0)
    res2 = (alpha ** 2 * z2 / t ** 2).sum(axis=0) + outside
    logdet = np.log(t).sum(axis=0) + (d - r) * np.log(alpha)
    ev = (n * np.log(beta) + d * np.log(alpha) - n * math.log(2 * math.pi)
          - beta * res2 - alpha * m2 - logdet) / 2
    return Evidence(float(np.mean(ev / n)), alpha, beta, iterations)


def logme(f: np.ndarray, task: Task) -> float:
    """LogME of ``f`` for ``task`` (one-hot classes or standardised targets); higher is better."""
    return logme_evidence(f, task.targets()).value


# -- k-NN ---------------------------------------------------------------------------------------------
def _sample(task: Task, limit: int, seed: int = 0) -> np.ndarray:
    """Row indices: all rows, or at most ``limit`` of them, the same share of each class (seeded)."""
    n = len(task.y)
    if n <= limit:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if task.regression:
        return np.sort(rng.choice(n, limit, replace=False))
    picked = []
    for c in range(task.classes):
        idx = np.flatnonzero(task.y == c)
        picked.append(rng.choice(idx, max(1, round(len(idx) * limit / n)), replace=False))
    return np.sort(np.concatenate(picked))[:limit]


def nearest(f: np.ndarray, k: int) -> np.ndarray:
    """For each row, the indices of its ``k`` nearest other rows (Euclidean), nearest first; the distance
    matrix is computed a block of rows at a time, so memory stays at one block."""
    f = np.asarray(f, dtype=np.float64)
    n = len(f)
    sq = (f ** 2).sum(axis=1)
    out = np.empty((n, k), dtype=np.int64)
    block = max(1, DISTANCE_BLOCK_BYTES // (8 * max(n, 1)))
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        d2 = sq[lo:hi, None] + sq[None, :] - 2.0 * (f[lo:hi] @ f.T)
        d2[np.arange(hi - lo), np.arange(lo, hi)] = np.inf
        part = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < n - 1 else np.argsort(d2, axis=1)[:, :k]
        order = np.take_along_axis(d2, part, axis=1).argsort(axis=1, kind="stable")
        out[lo:hi] = np.take_along_axis(part, order, axis=1)
    return out


def knn_accuracy(f: np.ndarray, task: Task, k: int = KNN_K, max_rows: int = KNN_MAX_ROWS) -> float:
    """Leave-one-out accuracy of a ``k``-nearest-neighbour majority vote (ties: the class of the nearest
    tied neighbour); for regression, the leave-one-out R^2 of the neighbours' mean target (mean over
    target columns). At most ``max_rows`` rows are used (a seeded, stratified sample)."""
    rows = _sample(task, max_rows)
    f, y = np.asarray(f)[rows], task.y[rows]
    k = max(1, min(k, len(rows) - 1))
    nb = nearest(f, k)
    if task.regression:
        pred = y[nb].mean(axis=1)
        sst = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
        sse = ((y - pred) ** 2).sum(axis=0)
        return float(np.mean(1.0 - sse / np.where(sst > 0, sst, 1.0)))
    labels = y[nb]  # (n, k), nearest first
    counts = np.zeros((len(rows), task.classes), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(len(rows)), k), labels.ravel()), 1)
    top = counts == counts.max(axis=1, keepdims=True)
    first = np.take_along_axis(top, labels, axis=1).argmax(axis=1)  # the nearest neighbour of a top class
    pred = labels[np.arange(len(rows)), first]
    return float(np.mean(pred == y))


# -- SFDA ---------------------------------------------------------------------------------------------
def _fisher(f: np.ndarray, y: np.ndarray, classes: int, shrink: float | None,
            width: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The regularised FDA of ``f``: class posteriors of the Bayes classifier in Fisher space, the class
    means, and the shrinkage used (``shrink`` None: ``exp(-a * largest eigenvalue of S_w)``). ``width``:
    the features' own width (``f`` may hold their row-space coordinates), for the shrinkage target."""
    n, d = f.shape
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    means = np.zeros((classes, d))
    np.add.at(means, y, f)
    means /= counts[:, None]
    centred = f - means[y]
    within = centred.T @ centred / n
    s_b = np.cov(f.T, bias=True).reshape(d, d) - within
    if shrink is None:
        shrink = float(np.exp(-SFDA_A * np.linalg.eigvalsh(within)[-1]))
    mu = np.trace(within) / width
    s_w = (1.0 - shrink) * within + shrink * max(mu, 1e-12) * np.eye(d)
    # S_b v = e S_w v, through the Cholesky factor of S_w: L^-1 S_b L^-T w = e w, v = L^-T w.
    chol = np.linalg.cholesky(s_w + 1e-10 * max(mu, 1e-12) * np.eye(d))
    inv = np.linalg.inv(chol)
    evals, w = np.linalg.eigh(inv @ s_b @ inv.T)
    v = inv.T @ w[:, ::-1][:, :max(1, min(classes - 1, d))]
    proj, proj_means = f @ v, means @ v
    logits = proj @ proj_means.T - 0.5 * (proj_means ** 2).sum(axis=1) + np.log(counts / n)
    return _softmax(logits), means, shrink


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def sfda(f: np.ndarray, task: Task) -> float | None:
    """SFDA of ``f`` (classification; None for regression): see the module docstring.

    With more columns than rows the features are first written in coordinates of their row space (``F V =
    U S``, from :func:`_gram_eig`): the scatter matrices live in that space, the shrinkage's identity term
    does not mix it with the rest, and every step after is linear, so the score is the same while no
    width x width matrix is made."""
    if task.regression:
        return None
    f = np.asarray(f, dtype=np.float64)
    width = f.shape[1]
    if f.shape[0] < width:
        s, u, _ = _gram_eig(f)
        f = u * np.sqrt(s)[None, :]
    y, classes = task.y, task.classes
    prob, means, shrink = _fisher(f, y, classes, None, width)
    # The self-challenge: each sample moves towards the mean of the other classes by one minus its
    # (softened) probability of being classified right, so confidently separated samples stay and
    # ambiguous ones become harder; the second FDA scores the challenged features.
    soft = _softmax(prob)[np.arange(len(y)), y][:, None]
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    total = f.sum(axis=0)
    others = (total[None, :] - means * counts[:, None]) / np.maximum(len(y) - counts, 1.0)[:, None]
    mixed = soft * f + (1.0 - soft) * others[y]
    prob2, _, _ = _fisher(mixed, y, classes, shrink, width)
    return float(prob2[np.arange(len(y)), y].mean())


# -- all of them --------------------------------------------------------------------------------------
def score_all(f: np.ndarray, task: Task, which: Sequence[str] = SCORES) -> dict[str, float | None]:
    """The scores ``which`` of ``f``; a score that does not apply (SFDA for regression) is None.

    Raises:
        ValueError: ``f`` holds NaN or infinite values, or its rows do not match the labels.
    """
    f = np.asarray(f)
    if f.ndim != 2 or len(f) != len(task.y):
        raise ValueError(f"features of shape {f.shape} for {len(task.y)} labels")
    bad = ~np.isfinite(f)
    if bad.any():
        rows = int(bad.any(axis=1).sum())
        raise ValueError(f"the features hold {int(bad.sum())} NaN or infinite value(s) in {rows} row(s)")
    fns = {"logme": logme, "knn": knn_accuracy, "sfda": sfda}
    return {name: fns[name](f, task) for name in which}
