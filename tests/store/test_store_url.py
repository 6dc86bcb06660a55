"""Store locations: a folder path, or a URL whose scheme we support; any other ``SCHEME://`` is refused
with one clear line before anything is written (CLI flag, $REUSE_STORE, the gRPC server's store)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reuse.cli import cli
from reuse.config import store_root
from reuse.errors import InvalidInput
from reuse.service import Service

ROOT = Path(__file__).resolve().parents[2]
UNSUPPORTED = ["gs://bucket/prefix", "http://host/models", "file://models", "S3X://b/p", "hdfs://nn/x"]


def _nothing_written(where: Path) -> None:
    assert sorted(p.name for p in where.iterdir()) == []


@pytest.mark.parametrize("url", UNSUPPORTED)
def test_cli_flag_refuses_unsupported_scheme(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["list", "--store", url])
    assert result.exit_code == 1
    scheme = url.split("://")[0]
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error: unsupported store URL scheme ") and repr(scheme) in line
    assert "folder" in line
    _nothing_written(tmp_path)


def test_env_var_refused_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REUSE_STORE", "gs://bucket/prefix")
    result = CliRunner().invoke(cli, ["versions", "mlp"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("Error: unsupported store URL scheme 'gs'")
    _nothing_written(tmp_path)


def test_subprocess_register_writes_nothing(tmp_path):
    model = tmp_path / "in" / "m.keras"
    model.parent.mkdir()
    model.write_bytes(b"not read: the store is refused first")
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("REUSE_STORE", None)
    proc = subprocess.run([sys.executable, "-m", "reuse", "register", str(model), "--name", "m",
                           "--store", "gs://bucket/prefix"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("Error: unsupported store URL scheme 'gs'")
    _nothing_written(work)


def test_service_and_server_store_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidInput, match="unsupported store URL scheme 'ftp'"):
        Service("ftp://host/models")
    monkeypatch.setenv("REUSE_STORE", "ftp://host/models")
    with pytest.raises(InvalidInput, match="unsupported store URL scheme 'ftp'"):
        Service()
    _nothing_written(tmp_path)


def test_folders_stay_folders(tmp_path, monkeypatch):
    monkeypatch.delenv("REUSE_STORE", raising=False)
    assert store_root(None) == Path("models")
    assert store_root(tmp_path / "a:b") == tmp_path / "a:b"  # a colon without // is a folder name
    assert store_root("rel/dir") == Path("rel/dir")


def test_s3_urls_open_the_s3_backend_or_say_what_to_install(tmp_path, monkeypatch):

    from reuse.store import ModelStore

    assert store_root("s3://bucket/team/models/") == "s3://bucket/team/models"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REUSE_ASSUME_MISSING", "boto3")  # as if reuse[s3] were not installed
    with pytest.raises(InvalidInput, match=r"^the s3:// store needs boto3: pip install 'reuse\[s3\]'"):
        ModelStore("s3://bucket/team")
    result = CliRunner().invoke(cli, ["list", "--store", "s3://bucket/team"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == ("Error: the s3:// store needs boto3: pip install "
                                                      "'reuse[s3]' (opening s3://bucket/team)")
    _nothing_written(tmp_path)
