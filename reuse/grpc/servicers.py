"""The gRPC servicers. Each method converts the request, calls the service, converts the result.

The two servicers' methods run in the server's thread pool (reuse.grpc.aio_bridge), except ModelInfer:
:class:`LoopInfer` answers it as a coroutine on the server's event loop, where concurrent requests
merge in the model's loop batcher (reuse.serving.loop_batcher).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import grpc
import keras

import reuse
from reuse.grpc import convert
from reuse.grpc import convert_mgmt as cm
from reuse.grpc._proto import inference_pb2 as ipb
from reuse.grpc._proto import inference_pb2_grpc as igrpc
from reuse.grpc._proto import reuse_v1_pb2 as pb
from reuse.grpc._proto import reuse_v1_pb2_grpc as rgrpc
from reuse.grpc.convert_images import has_images
from reuse.grpc.interceptor import status_details
from reuse.service import Service

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


class InferenceServicer(igrpc.GRPCInferenceServiceServicer):
    """KServe Open Inference Protocol v2, but ModelInfer (:class:`LoopInfer`)."""

    def __init__(self, service: Service, max_message_bytes: int = convert.DEFAULT_MAX_BYTES,
                 ready: Callable[[], bool] = lambda: True) -> None:
        self.service = service
        self.max_message_bytes = max_message_bytes
        self.ready = ready  # false until every process of the server is up, and once it stops

    def ServerLive(self, request: Any, context: Any) -> ipb.ServerLiveResponse:
        return ipb.ServerLiveResponse(live=True)

    def ServerReady(self, request: Any, context: Any) -> ipb.ServerReadyResponse:
        return ipb.ServerReadyResponse(ready=self.ready())

    def ServerMetadata(self, request: Any, context: Any) -> ipb.ServerMetadataResponse:
        return ipb.ServerMetadataResponse(name="reuse", version=reuse.__version__,
                                          extensions=["classification"])

    def ModelReady(self, request: ipb.ModelReadyRequest, context: Any) -> ipb.ModelReadyResponse:
        ref = convert.model_ref(request.name, request.version)
        self.service.model_signature(ref)
        return ipb.ModelReadyResponse(ready=True)

    def ModelMetadata(self, request: ipb.ModelMetadataRequest, context: Any) -> ipb.ModelMetadataResponse:
        ref = convert.model_ref(request.name, request.version)
        sig = self.service.model_signature(ref)
        versions = [i.version for i in self.service.model_versions(sig.name)]
        runtime = self.service.serving_runtime(ref)
        return convert.metadata_response(sig, versions, platform=f"keras_{keras.backend.backend()}",
                                         parameters={"runtime": runtime.runtime,
                                                     "runtime_reason": runtime.reason})


class LoopInfer:
    """KServe ModelInfer as a coroutine on the server's event loop: the data plane
    (:meth:`Service.infer_on_loop`) looks the model up, loads it in ``pool`` when needed, checks the
    request with :func:`convert.decode_request` and batches it; this encodes the answer. Errors end the
    call with the status the interceptor would give them."""

    def __init__(self, service: Service, max_message_bytes: int, pool: Executor) -> None:
        self.service = service
        self.max_message_bytes = max_message_bytes
        self.pool = pool

    async def infer(self, request: ipb.ModelInferRequest, context: grpc.aio.ServicerContext
                    ) -> ipb.ModelInferResponse:
        try:
            ref = convert.model_ref(request.model_name, request.model_version)
            decode = functools.partial(convert.decode_request, request, max_bytes=self.max_message_bytes)
            # Decoding images is CPU work: in the pool, so the loop answers other calls meanwhile.
            sig, outputs, picked = await self.service.infer_on_loop(ref, decode, self.pool,
                                                                    decode_in_pool=has_images(request))
            return convert.encode_response(request, sig, outputs, picked)
        except Exception as exc:  # noqa: BLE001 - the call ends with the status of what was raised
            await context.abort(*status_details(exc, MODEL_INFER))


class ReuseServicer(rgrpc.ReuseServiceServicer):
    """The reuse.v1 management service."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def ListModels(self, request: Any, context: Any) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[cm.model_pb(i) for i in self.service.list_models()])

    def DescribeModel(self, request: pb.DescribeModelRequest, context: Any) -> pb.ModelDescription:
        d = self.service.describe_model(request.ref, **cm.describe_options(request))
        return cm.description_pb(d)

    def _receive(self, request_iterator: Any) -> tuple[pb.UploadHeader, Any]:
        header = cm.upload_header(next(request_iterator, None))
        upload = self.service.open_upload()
        try:
            for msg in request_iterator:
                upload.write(cm.chunk_data(msg))
        except BaseException:
            upload.discard()
            raise
        return header, upload

    def UploadModel(self, request_iterator: Any, context: Any) -> pb.Model:
        h, upload = self._receive(request_iterator)
        with upload:
            info = self.service.register_upload(upload, h.name, format=h.format or "h5",
                             description=h.description, tags=dict(h.tags), unsafe=h.unsafe)
        return cm.model_pb(info)

    def UploadDataset(self, request_iterator: Any, context: Any) -> pb.Dataset:
        h, upload = self._receive(request_iterator)
        with upload:
            info = self.service.store_dataset_upload(upload, h.name, format=h.format,
                             description=h.description, tags=dict(h.tags), overwrite=h.overwrite)
        return cm.dataset_pb(info)

    def ListDatasets(self, request: Any, context: Any) -> pb.ListDatasetsResponse:
        return pb.ListDatasetsResponse(datasets=[cm.dataset_pb(d) for d in self.service.list_datasets()])

    def DeleteVersion(self, request: pb.DeleteVersionRequest, context: Any) -> pb.DeleteVersionResponse:
        return pb.DeleteVersionResponse(deleted=self.service.delete_version(request.ref).ref)

    def Build(self, request: pb.BuildRequest, context: Any) -> pb.Job:
        params = cm.params_of(request)
        wait = params.pop("wait", True)
        return cm.job_pb(self.service.build_job(params, wait=wait))

    def StartTrain(self, request: pb.TrainRequest, context: Any) -> pb.Job:
        return cm.job_pb(self.service.start_train(cm.params_of(request)))

    def StartFinetune(self, request: pb.FinetuneRequest, context: Any) -> pb.Job:
        params = cm.params_of(request)
        return cm.job_pb(self.service.start_finetune({**params.pop("train", {}), **params}))

    def StartAdvise(self, request: pb.AdviseRequest, context: Any) -> pb.Job:
        params = {**cm.json_params(request.options_json), "model": request.model, "data": request.data}
        return cm.job_pb(self.service.start_advise(params))

    def StartJob(self, request: pb.StartJobRequest, context: Any) -> pb.Job:
        return cm.job_pb(self.service.start_job(request.kind, cm.json_params(request.params_json)))

    def ListJobs(self, request: pb.ListJobsRequest, context: Any) -> pb.ListJobsResponse:
        jobs = self.service.list_jobs(state=request.state, kind=request.kind)
        return pb.ListJobsResponse(jobs=[cm.job_pb(j) for j in jobs])

    def GetJob(self, request: pb.GetJobRequest, context: Any) -> pb.Job:
        return cm.job_pb(self.service.get_job(request.id))

    def CancelJob(self, request: pb.CancelJobRequest, context: Any) -> pb.Job:
        return cm.job_pb(self.service.cancel_job(request.id))

    def WatchJob(self, request: pb.WatchJobRequest, context: Any) -> Any:
        seq = request.after_seq
        while context.is_active():
            # Once the job is done, this call returns every event not yet sent: the stream is complete.
            events, done = self.service.job_events(request.id, after_seq=seq, timeout=0.5)
            for e in events:
                seq = e.seq
                yield cm.event_pb(e)
            if done:
                return

    def GetServerStats(self, request: Any, context: Any) -> pb.ServerStats:
        return cm.stats_pb(self.service.serving_stats())
