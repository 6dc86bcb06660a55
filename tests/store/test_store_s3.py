"""The s3:// store against a real S3-compatible server (moto in server mode on 127.0.0.1, signatures
checked): register, list from sidecars only, partial builds by range reads, train and serve from the
bucket, concurrent writers in separate processes, a killed writer, damage, wrong credentials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_mlp
from s3_server import S3Proxy, moto_missing

from reuse.cli import cli
from reuse.errors import StoreCorrupt
from reuse.service import Service
from reuse.store import ModelStore

pytestmark = pytest.mark.skipif(moto_missing() is not None, reason=moto_missing() or "")
ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parents[1] / "store_worker.py"
DIGITS = "builtin:digits?classes=5-9&per_class=20&relabel=1"


def cli_run(url, *args, ok=True):
    result = CliRunner().invoke(cli, [*args, "--store", url], catch_exceptions=not ok)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def deep_base() -> keras.Model:
    """Twelve 384-wide Dense layers (~7 MB of weights), so one layer is about a twelfth of the object."""
    keras.utils.set_random_seed(0)
    layers = [keras.Input((384,), name="features")]
    layers += [keras.layers.Dense(384, activation="relu", name=f"d{i}") for i in range(12)]
    return keras.Sequential([*layers, keras.layers.Dense(3, activation="softmax", name="output")],
                            name="deep")


def test_register_list_show_read_only_sidecars(url, s3, monkeypatch):
    store = ModelStore(url)
    assert type(store).__name__ == "S3Store" and store.root == url
    a1 = store.register(make_mlp(), "a", description="first")
    store.register(make_mlp(seed=1), "a")
    store.register(make_mlp(), "b", tags={"team": "x"})
    assert (a1.ref, str(a1.path)) == ("a:1", f"{url}/a/v1.h5")
    prefix = url[len(f"s3://{s3.bucket}/"):]
    assert s3.keys(prefix) == sorted(f"{n}/v{v}.{k}" for n, v in (("a", 1), ("a", 2), ("b", 1))
                                     for k in ("claim", "h5", "json"))

    with S3Proxy(s3.endpoint) as proxy:  # every request the commands make, seen on the wire
        monkeypatch.setenv("REUSE_S3_ENDPOINT", proxy.endpoint)
        listed = json.loads(cli_run(url, "list", "--json").output)
        assert [(m["name"], m["version"]) for m in listed] == [("a", 2), ("b", 1)]
        assert [v["version"] for v in json.loads(cli_run(url, "versions", "a", "--json").output)] == [1, 2]
        shown = cli_run(url, "show", "a:1").output
        assert "first" in shown and f"{url}/a/v1.h5" in shown
        assert "hidden2" in cli_run(url, "layers", "b").output
        assert ModelStore(url).info("b").tags == {"team": "x"}
    assert proxy.paths(".json") and proxy.paths(".h5") == []  # sidecars read; no version object touched


def test_resolving_a_name_lists_once_in_a_while_and_sees_own_writes(url):
    import pickle

    store = ModelStore(url)
    store.register(make_mlp(), "m")
    before = store.bucket.requests
    assert [str(store.resolve("m")) for _ in range(5)] == ["m:1"] * 5
    # a server resolving NAME per request does not list per request
    assert store.bucket.requests - before <= 1
    store.register(make_mlp(seed=1), "m")
    assert str(store.resolve("m")) == "m:2"
    store.delete("m:2")
    assert str(store.resolve("m")) == "m:1"
    copy = pickle.loads(pickle.dumps(store))  # worker processes get a store with its own client
    assert copy.root == url and [i.ref for i in copy.list()] == ["m:1"]


def test_advise_with_worker_processes_on_the_bucket(url, tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(90) % 3
    x = (np.eye(3)[y] @ rng.normal(scale=3.0, size=(3, 8)) + rng.normal(size=(90, 8))).astype("float32")
    np.savez(tmp_path / "train.npz", x=x[:60], y=y[:60])
    np.savez(tmp_path / "val.npz", x=x[60:], y=y[60:])
    ModelStore(url).register(make_mlp(hidden=(16, 12)), "base")
    out = json.loads(cli_run(url, "advise", "--from", "base", "--data", str(tmp_path / "train.npz"), "--val",
                             str(tmp_path / "val.npz"), "--depths", "0,1", "--no-finetune", "--seeds", "1",
                             "--epochs", "2", "--jobs", "2", "--quiet", "--json").output)
    assert out["base"] == "base:1" and out["jobs"] == 2  # candidates trained in two worker processes
    assert [r["candidate"] for r in out["rows"]] == ["scratch", "reuse 1 frozen"]
    assert all(len(r["scores"]) == 1 and np.isfinite(r["mean"]) for r in out["rows"]), out["rows"]


def test_load_verified_then_from_the_local_cache(url, s3, rng, monkeypatch):
    store = ModelStore(url)
    model = make_mlp(batchnorm=True)
    info = store.register(model, "m")
    x = rng.normal(size=(4, 8)).astype("float32")
    np.testing.assert_allclose(store.load("m").predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    with S3Proxy(s3.endpoint) as proxy:
        monkeypatch.setenv("REUSE_S3_ENDPOINT", proxy.endpoint)
        fresh = ModelStore(url)  # a restarted process: the version comes from this machine's disk
        fresh.load("m:1")
    assert proxy.paths(".json") and proxy.paths(".h5") == []  # not downloaded again
    sidecar = s3.client().head_object(Bucket=s3.bucket, Key=url[len(f"s3://{s3.bucket}/"):] + "/m/v1.json")
    assert fresh.bucket.bytes_read == sidecar["ContentLength"] < info.size_bytes  # the sidecar alone
    assert len(list((fresh.state_dir / "cache").glob("*.h5"))) == 1


def test_partial_build_reads_only_the_selected_layers(url):
    service = Service(url)
    info = service.store.register(deep_base(), "deep")
    before = service.store.bucket.bytes_read
    built = service.build("child", "deep", "d[01]", classes=4, seed=0)
    moved = service.store.bucket.bytes_read - before
    assert built.ref == "child:1" and built.lineage["base"] == {"name": "deep", "version": 1}
    print(f"partial build moved {moved} of {info.size_bytes} bytes ({moved / info.size_bytes:.3f})")
    assert moved / info.size_bytes < 0.3, (moved, info.size_bytes)  # two of thirteen layers, plus metadata
    child = ModelStore(url).load("child")
    base = ModelStore(url).load("deep")
    for name in ("d0", "d1"):
        for got, want in zip(child.get_layer(name).get_weights(),
                             base.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(got, want)


def test_train_then_serve_over_grpc_from_the_bucket(url, s3, tmp_path, rng):
    """`reuse train --store s3://...`, then `reuse serve --store s3://...` in its own process predicting,
    and a build job over gRPC that runs against the bucket (its record stays on the server's machine)."""
    from grpc_support import stubs

    from reuse.grpc._proto import reuse_v1_pb2 as pb

    ModelStore(url).register(make_mlp(n_in=64, hidden=(16, 12), n_out=5), "digits")
    out = json.loads(cli_run(url, "train", "digits:1", "--data", DIGITS, "--epochs", "2", "--seed", "0",
                             "--json").output)
    assert out["model"] == "digits:2" and out["epochs_run"] == 2
    x = rng.normal(size=(3, 64)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    expected = ModelStore(url).load("digits:2").predict(x, verbose=0)
    token = tmp_path / "token"
    token.write_text("tok\n")
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "serve", "--port", "0", "--store", url,
                             "--token-file", str(token)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**_worker_env(s3), "REUSE_STATE": str(tmp_path / "server-state")},
                            cwd=ROOT)
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:") and f"(store {url}" in line, (
            line + proc.stderr.read()
        )
        target = line.split()[2]
        res = CliRunner().invoke(cli, ["infer", "digits", "--input", str(tmp_path / "x.npy"), "--json",
                                       "--server", target, "--token-file", str(token)])
        assert res.exit_code == 0, res.output
        channel, _, api = stubs(target)
        job = api.Build(pb.BuildRequest(name="child", base="digits:2", reuse="hidden1", classes=2),
                        metadata=[("authorization", "Bearer tok")])
        channel.close()
        assert job.state == "succeeded", job.error
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    got = json.loads(res.output)
    assert got["model"] == "digits:2"
    np.testing.assert_allclose(np.asarray(next(iter(got["outputs"].values()))), expected,
                               rtol=1e-5, atol=1e-6)
    assert ModelStore(url).info("child").lineage["base"] == {"name": "digits", "version": 2}
    assert list((tmp_path / "server-state").rglob("cache/*.h5"))  # the server loaded through its read cache


def test_a_writer_with_a_stale_listing_takes_the_next_number(url, monkeypatch):
    """Two writers that listed before either wrote: the conditional claim, not the listing, decides."""
    first, second = ModelStore(url), ModelStore(url)
    assert first.register(make_mlp(), "race", description="first").version == 1
    real = type(second).objects
    with monkeypatch.context() as m:
        m.setattr(type(second), "objects", lambda self, names=None: ({}, []) if names == ["race"]
                  else real(self, names))
        assert second.register(make_mlp(seed=1), "race", description="second").version == 2
    assert [(i.version, i.description) for i in ModelStore(url).versions("race")] == [
        (1, "first"),
        (2, "second"),
    ]
    assert ModelStore(url).check().ok


def _worker_env(s3) -> dict[str, str]:
    env = {**os.environ, **s3.env, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    env.pop("REUSE_STORE", None)
    return env


def test_eight_concurrent_writers_in_processes_get_eight_versions(url, s3):
    from store_helpers import concurrent_registers

    refs = concurrent_registers(url, "shared", 1, 8, env=_worker_env(s3))
    assert sorted(refs) == sorted(f"shared:{v}" for v in range(1, 9))
    infos = ModelStore(url).versions("shared")
    assert [i.version for i in infos] == list(range(1, 9))
    assert len({i.description for i in infos}) == 8  # eight writers, one version each
    report = ModelStore(url).check()
    assert report.ok and len(report.files) == 8 and all(f.ok for f in report.files)


def test_writer_killed_mid_upload_leaves_nothing_visible(url, s3):
    store = ModelStore(url)
    store.register(make_mlp(), "big")
    proc = subprocess.Popen([sys.executable, str(WORKER), "stall", url, "big"], env=_worker_env(s3),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "uploading", proc.stderr.read()[-2000:] if proc.poll() is not None else line
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        proc.stdout.close()
        proc.stderr.close()
    assert [i.ref for i in store.versions("big")] == ["big:1"]
    report = store.check()
    assert report.ok and report.damaged == ()
    assert report.notes and "v2.h5 (unfinished multipart upload)" in report.notes[0]
    repaired = store.check(repair=True)
    assert repaired.removed_temp_files and not store.bucket.uploads()
    assert store.register(make_mlp(), "big").version == 3  # the killed writer's number is not reused
    assert [i.version for i in store.versions("big")] == [1, 3]


def test_damaged_object_is_refused_with_a_clear_error(url, s3, tmp_path):
    from store_helpers import flip_byte

    store = ModelStore(url)
    store.register(make_mlp(), "m")
    key = url[len(f"s3://{s3.bucket}/"):] + "/m/v1.h5"
    local = tmp_path / "v1.h5"
    s3.client().download_file(s3.bucket, key, str(local))
    flip_byte(local, "model_weights/hidden2/mlp/hidden2/kernel")
    s3.client().upload_file(str(local), s3.bucket, key)
    with pytest.raises(StoreCorrupt,
                       match=r"checksum mismatch in weight .*hidden2/kernel; the file is damaged"):
        store.read_layer_weights("m", ["hidden2"])  # a range read, verified like a local file
    with pytest.raises(StoreCorrupt, match=f"^{url}/m/v1.h5: checksum mismatch .*the object is damaged"):
        ModelStore(url).load("m")  # the whole object, against the checksum in its sidecar
    assert not list((store.state_dir / "cache").glob("*.h5"))  # nothing damaged was cached
    report = store.check()
    assert not report.ok and [f.ref for f in report.damaged] == ["m:1"]
    assert "checksum mismatch in weight" in report.damaged[0].problem
    res = cli_run(url, "store", "check", ok=False)
    assert res.exit_code == 1 and "m:1" in res.output


def test_wrong_credentials_give_one_clear_line(url, s3, monkeypatch):
    ModelStore(url).register(make_mlp(), "m")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    res = cli_run(url, "list", ok=False)
    assert res.exit_code == 1
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("Error: the object store at http://127.0.0.1:") and "SignatureDoesNotMatch" in line
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOSUCHKEY")
    line = cli_run(url, "versions", "m", ok=False).output.strip().splitlines()[-1]
    assert "InvalidAccessKeyId" in line and "AWS_ACCESS_KEY_ID" in line


def test_missing_bucket_and_unreachable_endpoint(url, s3, monkeypatch):
    line = cli_run(f"s3://no-such-bucket-{os.getpid()}/p", "list", ok=False).output.strip().splitlines()[-1]
    assert line.startswith("Error: no bucket 'no-such-bucket-")
    monkeypatch.setenv("REUSE_S3_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    t0 = time.monotonic()
    line = cli_run(url, "list", ok=False).output.strip().splitlines()[-1]
    assert line.startswith("Error: cannot reach the object store at http://127.0.0.1:9"), line
    assert time.monotonic() - t0 < 120
