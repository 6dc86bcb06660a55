"""``reuse advise --ray HOST:PORT``: the CLI, in a real subprocess, joins a Ray cluster that is already
running (``ray start --head`` in another subprocess: the ``ray_cluster`` fixture, tests/ray_helpers.py),
sends back the same run records as the same advice trained here, and leaves the cluster running."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from advise_helpers import shared_env
from click.testing import CliRunner
from ray_helpers import ROOT, needs_ray, past_drivers, ray_env

from reuse.cli import cli

TIMEOUT = 240
QUICK = ["--depths", "0,1", "--seeds", "1", "--epochs", "8", "--patience", "3", "--lr", "0.03",
         "--batch-size", "8"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return shared_env(tmp_path_factory)


def _args(env) -> list[str]:
    return ["advise", "--from", "blind", "--data", env.files["b_train"], "--val", env.files["b_val"],
            "--store", str(env.store), *QUICK, "--json", "--quiet"]


@needs_ray
def test_cli_joins_a_running_cluster_and_leaves_it_running(env, ray_cluster):
    assert ray_cluster.running()
    proc = subprocess.Popen([sys.executable, "cli.py", *_args(env), "--jobs", "2", "--ray",
                             ray_cluster.address],
                            cwd=ROOT, env=ray_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    on_ray = json.loads(out)
    # The advice ran on this cluster (its job table lists the CLI as a driver that has ended), and the
    # cluster it joined is still up.
    assert (proc.pid, True) in past_drivers(ray_cluster.address)
    assert ray_cluster.running()
    here = CliRunner().invoke(cli, _args(env), catch_exceptions=False)
    assert here.exit_code == 0, here.output
    local = json.loads(here.output)
    assert on_ray["settings"]["ray"] == ray_cluster.address and local["settings"].get("ray") is None
    assert on_ray.keys() == local.keys() and on_ray["not_run"] == local["not_run"] == []
    assert on_ray["warnings"] == local["warnings"] and on_ray["stopped"] == local["stopped"] is None
    assert [r.keys() for r in on_ray["rows"]] == [r.keys() for r in local["rows"]]
    assert [r["candidate"] for r in on_ray["rows"]] == ["scratch", "reuse 1 frozen", "reuse 1 fine-tuned"]
    for ray_row, here_row in zip(on_ray["rows"], local["rows"], strict=True):
        assert ray_row["candidate"] == here_row["candidate"]
        assert ray_row["epochs_run"] == here_row["epochs_run"]
        assert ray_row["trainable_params"] == here_row["trainable_params"]
        np.testing.assert_allclose(ray_row["scores"], here_row["scores"], atol=1e-6)
    assert on_ray["recommendation"] == local["recommendation"]


@needs_ray
@pytest.mark.skipif(os.environ.get("RAY_AUTH_MODE") != "token",
                    reason="the test cluster runs without a token")
def test_without_the_clusters_token_the_error_says_what_to_set(env, ray_cluster):
    """Ray turns token authentication on by itself only for a cluster it finds, not for an address."""
    no_token = {k: v for k, v in ray_env().items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    proc = subprocess.run([sys.executable, "cli.py", *_args(env), "--ray", ray_cluster.address], cwd=ROOT,
                          env=no_token, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: cannot join the Ray cluster at {ray_cluster.address}: "), last
    assert last.endswith("run with RAY_AUTH_MODE=token and its token in RAY_AUTH_TOKEN (or the file "
                         "~/.ray/auth_token, or the file named by RAY_AUTH_TOKEN_PATH)"), last
    assert ray_cluster.running()


@needs_ray
def test_a_tiny_budget_runs_the_first_unit_on_the_cluster_as_on_local_workers(env, ray_cluster):
    """Joining the cluster is not counted as time the runs used: as with local workers, the first unit
    (scratch, seed 0) runs and no other starts."""
    import ray

    from reuse.service import Service

    advice = Service(env.store).advise("blind", env.files["b_train"], val=env.files["b_val"], depths="0,1",
                                       seeds=2, epochs=5, patience=3, lr=0.03, batch_size=8,
                                       budget_minutes=0.0001, ray=ray_cluster.address, jobs=1)
    assert not ray.is_initialized()
    assert advice.stopped == "budget"
    assert [len(r.scores) for r in advice.rows] == [1, 0, 0]
    assert {(c.label, s) for c, s in advice.not_run} == {("scratch", (1,)), ("reuse 1 frozen", (0, 1)),
                                                        ("reuse 1 fine-tuned", (0, 1))}
    assert ray_cluster.running()
