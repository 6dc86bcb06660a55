"""``reuse advise --ray``: advisor candidates as tasks on a real local Ray instance (the ``ray`` extra).

One test starts a Ray instance (``ray="local"``, which stops it afterwards): one instance for the whole
module keeps the suite fast. The advice runs in a thread with a deadline, so a hung advice fails the
test instead of hanging the suite. Ray's usage statistics and dashboard stay off.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_mlp
from ray_helpers import needs_ray

from reuse.cli import cli
from reuse.errors import FailedPrecondition
from reuse.service import Service

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
DEADLINE = 120.0
QUICK = {"seeds": 1, "patience": 2, "lr": 0.03, "batch_size": 8}


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("ray")
    Service(str(root / "store")).store.register(make_mlp(), "tiny")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)).astype("float32")
    np.savez(root / "data.npz", x=x, y=(x[:, 0] > 0).astype("int64"))
    return {"store": str(root / "store"), "data": str(root / "data.npz")}


def bounded(fn, seconds: float = DEADLINE):
    """``fn()`` in a thread; fail if it has not returned within ``seconds``."""
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the test thread
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"the advice did not finish within {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


def _scores(d: dict) -> dict[str, list]:
    return {r["candidate"]: r["scores"] for r in d["rows"]}


def _kill_unit(depth: int) -> int:
    """SIGKILL the Ray worker running the advisor unit of ``depth`` (Ray titles it after the task's name)."""
    title = f"ray::reuse_advise_d{depth}_".encode()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(title):
                os.kill(int(proc.name), signal.SIGKILL)
                return int(proc.name)
        except OSError:
            continue
    return 0


@needs_ray
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds Ray's workers through /proc")
def test_on_a_local_instance_a_dead_worker_fails_its_run_and_cancel_keeps_finished_runs(env):
    """``ray="local"`` starts an instance and stops it afterwards. Two units run at once: the scratch
    unit's worker is killed as soon as it trains (a failed run, not a hung advice); the advice is cancelled
    once ``reuse 1`` starts fine-tuning, so its frozen run is kept, with the score it gets when trained
    here."""
    import ray

    from reuse.advise.events import RunProgress

    cancel = threading.Event()
    killed: list[int] = []

    def progress(ev) -> None:
        if isinstance(ev, RunProgress) and ev.depth == 0 and not killed:
            killed.append(_kill_unit(0))
        # after the kill, whichever worker started first
        if isinstance(ev, RunProgress) and ev.finetune and killed:
            cancel.set()

    slow = {**QUICK, "patience": 100_000, "epochs": 1000, "lr": 1e-4}
    advice = bounded(lambda: Service(env["store"]).advise(
        "tiny", env["data"], depths="0,1", jobs=2, ray="local", progress=progress, cancel=cancel, **slow))
    assert not ray.is_initialized()  # stopped afterwards
    assert killed and killed[0] > 0
    assert advice.stopped == "cancelled" and advice.settings["ray"] == "local"
    d = advice.to_dict()
    assert {k: len(v) for k, v in _scores(d).items()} == {"scratch": 0, "reuse 1 frozen": 1,
                                                          "reuse 1 fine-tuned": 0}
    assert [(x["candidate"], x["seeds"]) for x in d["not_run"]] == [
        ("scratch", [0]),
        ("reuse 1 fine-tuned", [0]),
    ]
    failed = [w for w in advice.warnings if w.startswith("scratch, seed 0 failed: ")]
    assert len(failed) == 1 and "Error" in failed[0], advice.warnings
    here = Service(env["store"]).advise("tiny", env["data"], depths="1", finetune=False, **slow).to_dict()
    ray_row, here_row = d["rows"][1], here["rows"][0]
    assert (
        ray_row["epochs_run"] == here_row["epochs_run"]
        and ray_row["trainable_params"] == here_row["trainable_params"]
    )
    np.testing.assert_allclose(ray_row["scores"], here_row["scores"], atol=1e-6)


@pytest.mark.parametrize(("extra", "message"), [
    (["--ray", "not an address"],
     "Error: invalid Ray address 'not an address': expected 'local' or HOST:PORT "
                                  "(or ray://HOST:PORT)"),
    (["--ray", "local", "--ray-gpus", "-1"], None),
])
def test_bad_ray_options_are_refused_before_training(env, extra, message):
    result = CliRunner().invoke(cli, ["advise", "--from", "tiny", "--data", env["data"], "--store",
                                      env["store"], *extra])
    assert result.exit_code == (1 if message else 2)
    if message:
        assert result.output.strip().splitlines()[-1] == message


def test_without_the_extra_the_error_says_how_to_get_it(monkeypatch):
    from reuse.advise.ray_schedule import check_ray

    monkeypatch.setenv("REUSE_ASSUME_MISSING", "ray")  # as an install without reuse[ray]
    with pytest.raises(FailedPrecondition, match=r"pip install 'reuse\[ray\]'"):
        check_ray("local")
