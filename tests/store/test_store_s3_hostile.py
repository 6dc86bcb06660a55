"""The s3:// store against a hostile or broken bucket and endpoint (moto in server mode on 127.0.0.1):
sidecars and claims written by someone else, a sidecar whose checksum field is a path, a read cache shared
by two processes, an endpoint that accepts connections and never answers, listings past one page."""

from __future__ import annotations

import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_mlp
from s3_server import S3Proxy, moto_missing

from reuse.cli import cli
from reuse.errors import StoreCorrupt
from reuse.store import ModelStore
from reuse.store.read_cache import ReadCache

pytestmark = pytest.mark.skipif(moto_missing() is not None, reason=moto_missing() or "")


def _key(s3, url: str, rel: str) -> str:
    return url[len(f"s3://{s3.bucket}/"):] + "/" + rel


def _put(s3, url: str, rel: str, body: bytes) -> None:
    s3.client().put_object(Bucket=s3.bucket, Key=_key(s3, url, rel), Body=body)


def _sidecar(s3, url: str, rel: str) -> dict:
    return json.loads(s3.client().get_object(Bucket=s3.bucket, Key=_key(s3, url, rel))["Body"].read())


def _last_line(url: str, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, [*args, "--store", url])
    return res.exit_code, (res.output.strip().splitlines() or [""])[-1]


HOSTILE = {
    "deeply nested": b"[" * 200_000 + b"]" * 200_000,
    "infinite size": None,  # filled from a real sidecar below
    "not an object": b'"just a string"',
    "meta not a dict": None,
    "layers not rows": None,
    "not json": b"\xff\xfe not json",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_malformed_sidecar_is_store_corrupt_not_a_crash(url, s3, case):
    store = ModelStore(url)
    store.register(make_mlp(), "m")
    store.register(make_mlp(seed=1), "m")
    body = _sidecar(s3, url, "m/v1.json")
    if case == "infinite size":
        text = json.dumps(body).replace(f'"size": {body["size"]}', '"size": 1e999').encode()
    elif case == "meta not a dict":
        text = json.dumps({**body, "meta": ["name", "m"]}).encode()
    elif case == "layers not rows":
        text = json.dumps({**body, "meta": {**body["meta"], "layers": ["x", 1]}}).encode()
    else:
        text = HOSTILE[case]
    _put(s3, url, "m/v1.json", text)
    fresh = ModelStore(url)
    with pytest.raises(StoreCorrupt, match=r"/m/v1\.json: unreadable sidecar"):
        fresh._sidecar(("m", 1))
    assert [i.ref for i in fresh.versions("m")] == ["m:2"]  # the damaged one is left out, with a warning
    with pytest.raises(StoreCorrupt, match=r"/m/v1\.json: unreadable sidecar"):
        fresh.load("m:1")
    code, line = _last_line(url, "show", "m:1")  # read from the version object itself, as for a folder
    assert code == 0, line


def test_huge_sidecar_is_refused_without_reading_it(url, s3):
    store = ModelStore(url)
    store.register(make_mlp(), "m")
    body = _sidecar(s3, url, "m/v1.json")
    _put(s3, url, "m/v1.json", json.dumps({**body, "padding": "x" * 100_000}).encode())
    fresh = ModelStore(url, max_sidecar_bytes=4096)  # the default is 64 MiB: too much to upload in a test
    before = fresh.bucket.bytes_read
    with pytest.raises(StoreCorrupt, match=r"/m/v1\.json: .*bytes, more than a sidecar may have"):
        fresh._sidecar(("m", 1))
    assert fresh.bucket.bytes_read - before < 4096 * 2


@pytest.mark.parametrize("evil", ["../../../victim", "/tmp/victim", "a" * 63 + "/"],
                         ids=["up", "absolute", "nested"])
def test_sidecar_checksum_that_is_a_path_touches_no_local_file(url, s3, tmp_path, evil):
    """The sidecar's sha256 names the read-cache entry; one that is a path must not reach the file system."""
    store = ModelStore(url)
    store.register(make_mlp(), "m")
    victim = store.state_dir / "cache" / "../../../victim.h5"
    victim.parent.mkdir(parents=True, exist_ok=True)
    victim.write_bytes(b"a local file of the user's")
    body = _sidecar(s3, url, "m/v1.json")
    _put(s3, url, "m/v1.json", json.dumps({**body, "sha256": evil}).encode())
    with pytest.raises(StoreCorrupt, match=r"/m/v1\.json: unreadable sidecar.*sha256"):
        ModelStore(url).load("m")
    assert victim.read_bytes() == b"a local file of the user's"
    with pytest.raises(ValueError, match="not a SHA-256"):
        ReadCache(tmp_path / "c").path(evil)


def test_malformed_claim_does_not_crash_check(url, s3):
    store = ModelStore(url)
    store.register(make_mlp(), "m")
    _put(s3, url, "m/v2.claim",
         json.dumps({"host": socket.gethostname(), "pid": 1e999, "started": 0}).encode())
    _put(s3, url, "m/v2.h5", b"orphan")
    _put(s3, url, "m/v3.claim", b"[" * 200_000)
    _put(s3, url, "m/v3.h5", b"orphan")
    _put(s3, url, "m/v4.claim",
         json.dumps({"host": socket.gethostname(), "pid": 2**70, "started": 0}).encode())
    _put(s3, url, "m/v4.h5", b"orphan")
    report = store.check()  # unreadable claims count by their age: these are new, so not yet abandoned
    assert report.ok and report.notes == () and [f.ref for f in report.files] == ["m:1"]


def test_a_cache_entry_trimmed_by_another_process_is_still_loaded(url, s3):
    """Two processes share REUSE_STATE: one's trim must not pull a verified file from under the other."""
    store = ModelStore(url)
    store.register(make_mlp(), "a")
    store.register(make_mlp(hidden=(32, 32)), "b")
    folder = store.state_dir / "cache"
    other = ModelStore(url, cache=ReadCache(folder, limit=1))  # each keeps only its newest entry

    class OtherLoadsMeanwhile(ReadCache):
        def get(self, *args, **kwargs):
            got = super().get(*args, **kwargs)
            other.load("b")  # right after a's file is handed out, the other process fetches b and trims
            return got

    first = ModelStore(url, cache=OtherLoadsMeanwhile(folder, limit=1))
    assert first.load("a").name == make_mlp().name
    other.load("b")
    left = sorted(p.name for p in (first.state_dir / "cache").iterdir())
    assert len(left) == 1 and len(left[0]) == 64 + 3  # the bound holds, and no private link is left behind


def test_a_corrupted_cache_entry_is_fetched_again(url):
    store = ModelStore(url)
    store.register(make_mlp(), "m")
    store.load("m")
    (entry,) = (store.state_dir / "cache").glob("*.h5")
    entry.write_bytes(entry.read_bytes()[:-100] + b"\0" * 100)
    fresh = ModelStore(url)
    fresh.load("m")
    assert fresh.bucket.bytes_read > entry.stat().st_size  # fetched, not trusted


class _Silent:
    """A TCP endpoint that accepts connections and never answers; counts them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()
        for c in self.accepted:
            c.close()


def test_an_endpoint_that_never_answers_fails_after_the_configured_attempts(url, monkeypatch):
    silent = _Silent()
    try:
        monkeypatch.setenv("REUSE_S3_ENDPOINT", silent.endpoint)
        monkeypatch.setenv("REUSE_S3_TIMEOUT", "0.5")
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
        code, line = _last_line(url, "list")
        assert code == 1 and line.startswith(f"Error: the object store at {silent.endpoint} failed"), line
        assert "timeout" in line.lower() and "SECRET" not in line
        assert len(silent.accepted) == 2  # AWS_MAX_ATTEMPTS is honoured, not replaced by ours
    finally:
        silent.close()


def test_bad_timeout_setting_is_one_line(url, monkeypatch):
    for bad in ("nan", "-1", "soon"):
        monkeypatch.setenv("REUSE_S3_TIMEOUT", bad)
        code, line = _last_line(url, "list")
        assert code == 1 and line.startswith("Error: REUSE_S3_TIMEOUT must be"), line
    monkeypatch.delenv("REUSE_S3_TIMEOUT")
    for bad in ("nan", "inf"):
        monkeypatch.setenv("REUSE_S3_CACHE_MB", bad)
        code, line = _last_line(url, "list")
        assert code == 1 and line.startswith("Error: REUSE_S3_CACHE_MB must be"), line


def test_a_busy_server_is_unavailable_not_damage_and_hides_no_version(url, s3, monkeypatch):
    """A 503 SlowDown (after boto3's retries) on a sidecar must fail the listing, not drop the version as
    damaged; its long message is cut."""
    from reuse.store.s3_objects import Unavailable

    store = ModelStore(url)
    store.register(make_mlp(), "m")

    def busy(method, path):  # the endpoint answers every sidecar read with 503 SlowDown
        return (503, "SlowDown", "x" * 20_000) if method == "GET" and path.endswith(".json") else None

    with S3Proxy(s3.endpoint, busy) as proxy:
        monkeypatch.setenv("REUSE_S3_ENDPOINT", proxy.endpoint)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # boto3 retries a 503 once, then gives up
        with pytest.raises(Unavailable,
                           match=r"unavailable for .*/m/v1\.json \(SlowDown: x+… \(20000 characters\)\)") \
                as info:
            ModelStore(url).list()
        assert len(str(info.value)) < 1000
        assert len(proxy.paths("/m/v1.json")) == 2
        code, line = _last_line(url, "versions", "m")
        assert code == 1 and "SlowDown" in line and len(line) < 1000, line



def test_listing_past_one_page_and_odd_foreign_keys(url, s3):
    """More than 1000 objects under the prefix (ListObjectsV2 pages), and keys the layout does not know."""
    store = ModelStore(url)
    client = s3.client()
    keys = [_key(s3, url, f"aa/v{n}.claim") for n in range(1, 1006)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=s3.bucket, Key=k, Body=b"{}"), keys))
    # moto refuses "\n"
    odd = ["m/v1.json ", "m/ v1.h5", "zz/v1.json\t", "zz/ünï code.h5", "zz/v1.json/x", "zz/a+b%20c?.h5"]
    for rel in odd:
        _put(s3, url, rel, b"{}")
    store.register(make_mlp(), "zz")  # sorts after the first page
    assert store.register(make_mlp(), "aa").version == 1006
    assert [i.ref for i in store.list()] == ["aa:1006", "zz:1"]
    report = store.check()
    assert sorted(Path(s).name for s in report.stray_files) == sorted(Path(r).name for r in odd)


@pytest.mark.parametrize("prefix", ["", "nested/deeper/p"])
def test_bucket_root_and_nested_prefixes(s3, monkeypatch, tmp_path, prefix):
    for k, v in s3.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("REUSE_STATE", str(tmp_path))
    root = f"s3://{s3.bucket}/{prefix}/" if prefix else f"s3://{s3.bucket}"
    store = ModelStore(root)
    assert store.root == root.rstrip("/")
    info = store.register(make_mlp(), "edge")
    assert str(info.path) == f"{store.root}/edge/v1.h5"
    assert str(ModelStore(store.root).resolve("edge")) == "edge:1"
    store.delete("edge:1")


def test_state_folders_of_different_stores_never_coincide(s3, monkeypatch, tmp_path):
    from reuse.store.s3_store import default_state_dir

    dirs = {p: default_state_dir("b", p) for p in ("", "_", "a", "a/jobs", "a/cache", "a_jobs")}
    assert len(set(dirs.values())) == len(dirs)
    assert not any(d != e and e.is_relative_to(d) for d in dirs.values() for e in dirs.values())


def test_a_sidecar_moved_to_another_version_is_refused(url, s3):
    store = ModelStore(url)
    store.register(make_mlp(), "m")
    store.register(make_mlp(seed=1), "m")
    _put(s3, url, "m/v2.json", json.dumps(_sidecar(s3, url, "m/v1.json")).encode())
    with pytest.raises(StoreCorrupt,
                       match=r"/m/v2\.json: the sidecar names 'm':1, but lies where m:2 belongs"):
        ModelStore(url).load("m:2")


def test_refused_credentials_never_print_the_secret(url, s3, monkeypatch):
    ModelStore(url).register(make_mlp(), "m")
    secret = "s3cr3t-that-must-not-show-" + "x" * 20
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    res = CliRunner().invoke(cli, ["list", "--store", url])
    assert res.exit_code == 1 and "SignatureDoesNotMatch" in res.output
    assert secret not in res.output and s3.env["AWS_SECRET_ACCESS_KEY"] not in res.output
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    res = CliRunner().invoke(cli, ["list", "--store", url])
    assert res.exit_code == 1 and res.output.strip().splitlines()[-1].startswith("Error: no usable AWS "
                                                                                 "credentials"), \
        (res.output, res.exception)


def test_a_malformed_endpoint_is_one_line(url, monkeypatch):
    monkeypatch.setenv("REUSE_S3_ENDPOINT", "not a url")
    code, line = _last_line(url, "list")
    assert code == 1 and line.startswith("Error: REUSE_S3_ENDPOINT must be an http(s):// URL; received "
                                         "'not a url'")
