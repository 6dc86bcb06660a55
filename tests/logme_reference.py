"""LogME's evidence straight from its definition, maximised by a general-purpose optimiser: the reference
the rank tests check reuse.rank.scores against."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize


def direct_evidence(f: np.ndarray, y: np.ndarray, log_alpha: float, log_beta: float) -> float:
    """log p(y | F, alpha, beta) / n of the Bayesian linear model, straight from its definition: the
    prior w ~ N(0, I/alpha), noise N(0, 1/beta), A = alpha I + beta F'F, m = beta A^-1 F'y."""
    a, b = np.exp(log_alpha), np.exp(log_beta)
    n, d = f.shape
    big_a = a * np.eye(d) + b * f.T @ f
    m = b * np.linalg.solve(big_a, f.T @ y)
    _, logdet = np.linalg.slogdet(big_a)
    return float((n * np.log(b) + d * np.log(a) - n * np.log(2 * np.pi) - b * np.sum((f @ m - y) ** 2)
                  - a * m @ m - logdet) / 2 / n)


def best_direct(f: np.ndarray, targets: np.ndarray) -> float:
    """The evidence maximised over (alpha, beta) by a general-purpose optimiser, averaged over columns."""
    best = []
    for k in range(targets.shape[1]):
        r = minimize(lambda p, k=k: -direct_evidence(f, targets[:, k], p[0], p[1]), [0.0, 0.0],
                     method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-13, "maxiter": 5000})
        best.append(-r.fun)
    return float(np.mean(best))
