"""The two gRPC servicers. Each method converts the request, calls the service, converts the result.

Blocking service calls run on the server's thread pool (``asyncio.to_thread``); ModelInfer stays on the
event loop except for the batched forward pass, which runs on the model's batcher thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

import keras

import reuse
from reuse.grpc import convert
from reuse.grpc import convert_mgmt as cm
from reuse.grpc._proto import inference_pb2 as ipb
from reuse.grpc._proto import inference_pb2_grpc as igrpc
from reuse.grpc._proto import reuse_v1_pb2 as pb
from reuse.grpc._proto import reuse_v1_pb2_grpc as rgrpc
from reuse.service import Service

run = asyncio.to_thread


class InferenceServicer(igrpc.GRPCInferenceServiceServicer):
    """KServe Open Inference Protocol v2."""

    def __init__(self, service: Service) -> None:
        self.service = service

    async def ServerLive(self, request: Any, context: Any) -> ipb.ServerLiveResponse:
        return ipb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> ipb.ServerReadyResponse:
        return ipb.ServerReadyResponse(ready=True)

    async def ServerMetadata(self, request: Any, context: Any) -> ipb.ServerMetadataResponse:
        return ipb.ServerMetadataResponse(name="reuse", version=reuse.__version__, extensions=[])

    async def ModelReady(self, request: ipb.ModelReadyRequest, context: Any) -> ipb.ModelReadyResponse:
        ref = convert.model_ref(request.name, request.version)
        await run(self.service.model_signature, ref)
        return ipb.ModelReadyResponse(ready=True)

    async def ModelMetadata(self, request: ipb.ModelMetadataRequest, context: Any) -> ipb.ModelMetadataResponse:
        ref = convert.model_ref(request.name, request.version)
        sig = await run(self.service.model_signature, ref)
        versions = await run(self.service.model_versions, sig.name)
        return convert.metadata_response(sig, versions, platform=f"keras_{keras.backend.backend()}")

    async def ModelInfer(self, request: ipb.ModelInferRequest, context: Any) -> ipb.ModelInferResponse:
        ref = convert.model_ref(request.model_name, request.model_version)
        sig = self.service.cached_signature(ref) or await run(self.service.model_signature, ref)
        arrays, picked = convert.decode_request(request, sig)
        sig, future = self.service.submit_infer(sig, arrays)
        outputs = await asyncio.wrap_future(future)
        return convert.encode_response(request, sig, outputs, picked)


class ReuseServicer(rgrpc.ReuseServiceServicer):
    """The reuse.v1 management service."""

    def __init__(self, service: Service) -> None:
        self.service = service

    async def ListModels(self, request: Any, context: Any) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[cm.model_pb(i) for i in await run(self.service.list_models)])

    async def DescribeModel(self, request: pb.DescribeModelRequest, context: Any) -> pb.ModelDescription:
        d = await run(self.service.describe_model, request.ref, scope=request.scope, match=request.match or "full")
        return cm.description_pb(d)

    async def _receive(self, request_iterator: Any) -> tuple[pb.UploadHeader, Any]:
        header = cm.upload_header(await anext(aiter(request_iterator), None))
        upload = self.service.open_upload()
        try:
            async for msg in request_iterator:
                upload.write(cm.chunk_data(msg))
        except BaseException:
            upload.discard()
            raise
        return header, upload

    async def UploadModel(self, request_iterator: Any, context: Any) -> pb.Model:
        h, upload = await self._receive(request_iterator)
        with upload:
            info = await run(self.service.register_upload, upload, h.name, format=h.format or "h5",
                             description=h.description, tags=dict(h.tags), unsafe=h.unsafe)
        return cm.model_pb(info)

    async def UploadDataset(self, request_iterator: Any, context: Any) -> pb.Dataset:
        h, upload = await self._receive(request_iterator)
        with upload:
            info = await run(self.service.store_dataset_upload, upload, h.name, format=h.format,
                             description=h.description, tags=dict(h.tags), overwrite=h.overwrite)
        return cm.dataset_pb(info)

    async def ListDatasets(self, request: Any, context: Any) -> pb.ListDatasetsResponse:
        return pb.ListDatasetsResponse(datasets=[cm.dataset_pb(d) for d in await run(self.service.list_datasets)])

    async def DeleteVersion(self, request: pb.DeleteVersionRequest, context: Any) -> pb.DeleteVersionResponse:
        return pb.DeleteVersionResponse(deleted=await run(self.service.delete_version, request.ref))

    async def Build(self, request: pb.BuildRequest, context: Any) -> pb.Job:
        params = cm.params_of(request)
        wait = params.pop("wait", True)
        return cm.job_pb(await run(self.service.build, params, wait=wait))

    async def StartTrain(self, request: pb.TrainRequest, context: Any) -> pb.Job:
        return cm.job_pb(await run(self.service.start_train, cm.params_of(request)))

    async def StartFinetune(self, request: pb.FinetuneRequest, context: Any) -> pb.Job:
        params = cm.params_of(request)
        return cm.job_pb(await run(self.service.start_finetune, {**params.pop("train", {}), **params}))

    async def StartAdvise(self, request: pb.AdviseRequest, context: Any) -> pb.Job:
        params = {**cm.json_params(request.options_json), "model": request.model, "data": request.data}
        return cm.job_pb(await run(self.service.start_advise, params))

    async def StartJob(self, request: pb.StartJobRequest, context: Any) -> pb.Job:
        return cm.job_pb(await run(self.service.start_job, request.kind, cm.json_params(request.params_json)))

    async def ListJobs(self, request: pb.ListJobsRequest, context: Any) -> pb.ListJobsResponse:
        jobs = await run(self.service.list_jobs, state=request.state, kind=request.kind)
        return pb.ListJobsResponse(jobs=[cm.job_pb(j) for j in jobs])

    async def GetJob(self, request: pb.GetJobRequest, context: Any) -> pb.Job:
        return cm.job_pb(await run(self.service.get_job, request.id))

    async def CancelJob(self, request: pb.CancelJobRequest, context: Any) -> pb.Job:
        return cm.job_pb(await run(self.service.cancel_job, request.id))

    async def WatchJob(self, request: pb.WatchJobRequest, context: Any) -> Any:
        seq = request.after_seq
        while True:
            # Once the job is done, this call returns every event not yet sent: the stream is complete.
            events, done = await run(self.service.job_events, request.id, after_seq=seq, timeout=0.5)
            for e in events:
                seq = e.seq
                yield cm.event_pb(e)
            if done:
                return

    async def GetServerStats(self, request: Any, context: Any) -> pb.ServerStats:
        return cm.stats_pb(self.service.serving_stats())
