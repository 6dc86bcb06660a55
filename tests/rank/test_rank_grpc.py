"""The rank job through a real gRPC server: StartJob(kind="rank"), one event per model, the result; bad
parameters refused before a job starts; ``reuse rank --server`` ranks as the local store does."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from grpc_support import rpc_error, stubs
from rank_helpers import graded
from ray_helpers import needs_ray

from reuse.cli import cli
from reuse.grpc._proto import reuse_v1_pb2 as pb
from reuse.grpc.server import start_in_thread
from reuse.service import Service
from reuse.store import ModelStore

CODE = grpc.StatusCode


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    g = graded(tmp_path_factory)
    root = tmp_path_factory.mktemp("rankgrpc") / "store"
    src, dst = ModelStore(g.store), ModelStore(root)
    for name in ("d04", "untrained"):
        dst.register(src.load(name), name)
    service = Service(root)
    with start_in_thread(service) as server:
        channel, _, api = stubs(server.target)
        api.UploadDataset(iter([pb.UploadChunk(header=pb.UploadHeader(name="target", format="npz")),
                                pb.UploadChunk(data=Path(g.data).read_bytes())]))
        yield api, server.target, root, g
        channel.close()


def _start(api, **params):
    return api.StartJob(pb.StartJobRequest(kind="rank", params_json=json.dumps(params)))


def test_rank_job_streams_one_event_per_model_and_returns_the_ranking(served):
    api, _, _, _ = served
    job = _start(api, data="target", metric="logme")
    events = list(api.WatchJob(pb.WatchJobRequest(id=job.id), timeout=120))
    assert events[-1].state == "succeeded", events[-1].error
    per_model = [e for e in events if e.epochs == 2 and e.epoch >= 1]
    assert [e.epoch for e in per_model] == [1, 2]
    assert per_model[0].message.startswith("d04:1: 3 cut(s) scored in ")
    result = json.loads(api.GetJob(pb.GetJobRequest(id=job.id)).result_json)
    assert result["data"] == "target" and result["metric"] == ["logme"] and len(result["candidates"]) == 6
    assert {"model", "version", "scope", "scores", "rank"} <= set(result["candidates"][0])
    assert result["baseline"]["model"] is None


@pytest.mark.parametrize(("params", "code", "error"), [
    ({"data": "target", "plot": "/tmp/x.png"}, CODE.INVALID_ARGUMENT, "rank job: unknown parameter 'plot'"),
    ({"data": "target", "memory_mb": 1e9}, CODE.INVALID_ARGUMENT, "this server allows at most"),
    ({"data": "/etc/passwd"}, CODE.INVALID_ARGUMENT, "expected the name of an uploaded dataset"),
    ({"data": "target", "metric": "best"}, CODE.INVALID_ARGUMENT, "invalid metric 'best'"),
    ({"data": "target", "models": "nope"}, CODE.NOT_FOUND, "no model in the store matches 'nope'"),
    ({"data": "target", "budget": "soon"}, CODE.INVALID_ARGUMENT, "parameter 'budget' is 'soon'; expected a"),
])
def test_bad_rank_parameters_are_refused_before_a_job_starts(served, params, code, error):
    api, _, _, _ = served
    before = len(api.ListJobs(pb.ListJobsRequest()).jobs)
    err = rpc_error(_start, api, **params)
    assert err.code() == code and error in err.details(), err.details()
    assert len(api.ListJobs(pb.ListJobsRequest()).jobs) == before


def test_cli_with_server_ranks_as_the_local_store_does(served, tmp_path):
    _, target, root, g = served
    plot = tmp_path / "remote.png"

    def rank(*where: str) -> dict:
        result = CliRunner().invoke(cli, ["rank", "--data", g.data, "--json", "--quiet", *where])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    remote = rank("--server", target, "--plot", str(plot))
    local = rank("--store", str(root))
    assert remote["data"] == local["data"] == g.data
    assert [(c["model"], c["depth"], c["rank"]) for c in remote["candidates"]] == \
        [(c["model"], c["depth"], c["rank"]) for c in local["candidates"]]
    assert remote["candidates"][0]["scores"] == pytest.approx(local["candidates"][0]["scores"], abs=1e-6)
    assert remote["plot"] == str(plot) and plot.read_bytes()[:4] == b"\x89PNG"


@needs_ray
@pytest.mark.slow
def test_rank_on_a_ray_cluster_scores_as_here(served, ray_cluster):
    """Each model as a task on a running cluster (joined by address and left running)."""
    _, _, root, g = served
    service = Service(root)
    here = service.rank(g.data, models="d04").to_dict()
    on_ray = service.rank(g.data, models="d04", ray=ray_cluster.address).to_dict()
    assert [(c["model"], c["depth"], c["rank"]) for c in on_ray["candidates"]] == \
        [(c["model"], c["depth"], c["rank"]) for c in here["candidates"]]
    assert on_ray["candidates"][0]["scores"] == pytest.approx(here["candidates"][0]["scores"], abs=1e-6)
    assert ray_cluster.running()


def test_advise_job_with_a_shortlist_across_models(served):
    api, _, _, _ = served
    options = {"models": "d04|untrained", "shortlist": 1, "finetune": False, "seeds": 1, "epochs": 10,
               "val_split": 0.3, "lr": 0.01}
    job = api.StartAdvise(pb.AdviseRequest(model="", data="target", options_json=json.dumps(options)))
    events = list(api.WatchJob(pb.WatchJobRequest(id=job.id), timeout=120))
    assert events[-1].state == "succeeded", events[-1].error
    result = json.loads(api.GetJob(pb.GetJobRequest(id=job.id)).result_json)
    trained = result["shortlist"]["trained"]
    assert len(trained) == 1 and len(result["shortlist"]["skipped"]) == 5
    assert [r["depth"] for r in result["rows"]] == [0, trained[0]["depth"]]
