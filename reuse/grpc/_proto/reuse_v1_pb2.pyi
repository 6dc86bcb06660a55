from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Model(_message.Message):
    __slots__ = ("name", "version", "created", "description", "tags", "metadata_json")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    created: str
    description: str
    tags: _containers.ScalarMap[str, str]
    metadata_json: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., created: _Optional[str] = ..., description: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., metadata_json: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ...) -> None: ...

class DescribeModelRequest(_message.Message):
    __slots__ = ("ref", "scope", "match")
    REF_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    ref: str
    scope: str
    match: str
    def __init__(self, ref: _Optional[str] = ..., scope: _Optional[str] = ..., match: _Optional[str] = ...) -> None: ...

class Layer(_message.Message):
    __slots__ = ("name", "class_name", "output_shape_json", "params", "trainable", "matched", "inputs", "depth")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SHAPE_JSON_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    TRAINABLE_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    name: str
    class_name: str
    output_shape_json: str
    params: int
    trainable: bool
    matched: bool
    inputs: _containers.RepeatedScalarFieldContainer[str]
    depth: int
    def __init__(self, name: _Optional[str] = ..., class_name: _Optional[str] = ..., output_shape_json: _Optional[str] = ..., params: _Optional[int] = ..., trainable: _Optional[bool] = ..., matched: _Optional[bool] = ..., inputs: _Optional[_Iterable[str]] = ..., depth: _Optional[int] = ...) -> None: ...

class ModelDescription(_message.Message):
    __slots__ = ("model", "versions", "layers", "scope", "match", "matched", "unmatched")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    UNMATCHED_FIELD_NUMBER: _ClassVar[int]
    model: Model
    versions: _containers.RepeatedScalarFieldContainer[int]
    layers: _containers.RepeatedCompositeFieldContainer[Layer]
    scope: str
    match: str
    matched: _containers.RepeatedScalarFieldContainer[str]
    unmatched: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ..., versions: _Optional[_Iterable[int]] = ..., layers: _Optional[_Iterable[_Union[Layer, _Mapping]]] = ..., scope: _Optional[str] = ..., match: _Optional[str] = ..., matched: _Optional[_Iterable[str]] = ..., unmatched: _Optional[_Iterable[str]] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("name", "description", "tags", "format", "unsafe", "overwrite")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    UNSAFE_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    tags: _containers.ScalarMap[str, str]
    format: str
    unsafe: bool
    overwrite: bool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., format: _Optional[str] = ..., unsafe: _Optional[bool] = ..., overwrite: _Optional[bool] = ...) -> None: ...

class UploadChunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Dataset(_message.Message):
    __slots__ = ("name", "format", "size_bytes", "sha256", "created", "tags", "description")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    format: str
    size_bytes: int
    sha256: str
    created: str
    tags: _containers.ScalarMap[str, str]
    description: str
    def __init__(self, name: _Optional[str] = ..., format: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., created: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., description: _Optional[str] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets",)
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[Dataset]
    def __init__(self, datasets: _Optional[_Iterable[_Union[Dataset, _Mapping]]] = ...) -> None: ...

class DeleteVersionRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class DeleteVersionResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: str
    def __init__(self, deleted: _Optional[str] = ...) -> None: ...

class BuildRequest(_message.Message):
    __slots__ = ("name", "base", "reuse", "trainable", "match", "head", "classes", "regression", "input_shape", "description", "tags", "wait", "seed", "outputs", "exits", "preprocess")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    BASE_FIELD_NUMBER: _ClassVar[int]
    REUSE_FIELD_NUMBER: _ClassVar[int]
    TRAINABLE_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    REGRESSION_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    EXITS_FIELD_NUMBER: _ClassVar[int]
    PREPROCESS_FIELD_NUMBER: _ClassVar[int]
    name: str
    base: str
    reuse: str
    trainable: str
    match: str
    head: str
    classes: int
    regression: bool
    input_shape: _containers.RepeatedScalarFieldContainer[int]
    description: str
    tags: _containers.ScalarMap[str, str]
    wait: bool
    seed: int
    outputs: int
    exits: _containers.RepeatedScalarFieldContainer[str]
    preprocess: str
    def __init__(self, name: _Optional[str] = ..., base: _Optional[str] = ..., reuse: _Optional[str] = ..., trainable: _Optional[str] = ..., match: _Optional[str] = ..., head: _Optional[str] = ..., classes: _Optional[int] = ..., regression: _Optional[bool] = ..., input_shape: _Optional[_Iterable[int]] = ..., description: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., wait: _Optional[bool] = ..., seed: _Optional[int] = ..., outputs: _Optional[int] = ..., exits: _Optional[_Iterable[str]] = ..., preprocess: _Optional[str] = ...) -> None: ...

class TrainRequest(_message.Message):
    __slots__ = ("model", "data", "val", "val_split", "label", "epochs", "batch_size", "optimizer", "lr", "momentum", "clipnorm", "clipvalue", "early_stopping", "seed", "no_cache", "description", "relabel", "nesterov", "seeds", "data_parallel", "frozen_mode", "augment", "augment_views")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    VAL_FIELD_NUMBER: _ClassVar[int]
    VAL_SPLIT_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    LR_FIELD_NUMBER: _ClassVar[int]
    MOMENTUM_FIELD_NUMBER: _ClassVar[int]
    CLIPNORM_FIELD_NUMBER: _ClassVar[int]
    CLIPVALUE_FIELD_NUMBER: _ClassVar[int]
    EARLY_STOPPING_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    NO_CACHE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    RELABEL_FIELD_NUMBER: _ClassVar[int]
    NESTEROV_FIELD_NUMBER: _ClassVar[int]
    SEEDS_FIELD_NUMBER: _ClassVar[int]
    DATA_PARALLEL_FIELD_NUMBER: _ClassVar[int]
    FROZEN_MODE_FIELD_NUMBER: _ClassVar[int]
    AUGMENT_FIELD_NUMBER: _ClassVar[int]
    AUGMENT_VIEWS_FIELD_NUMBER: _ClassVar[int]
    model: str
    data: str
    val: str
    val_split: float
    label: str
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    momentum: float
    clipnorm: float
    clipvalue: float
    early_stopping: int
    seed: int
    no_cache: bool
    description: str
    relabel: bool
    nesterov: bool
    seeds: int
    data_parallel: bool
    frozen_mode: str
    augment: str
    augment_views: int
    def __init__(self, model: _Optional[str] = ..., data: _Optional[str] = ..., val: _Optional[str] = ..., val_split: _Optional[float] = ..., label: _Optional[str] = ..., epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., optimizer: _Optional[str] = ..., lr: _Optional[float] = ..., momentum: _Optional[float] = ..., clipnorm: _Optional[float] = ..., clipvalue: _Optional[float] = ..., early_stopping: _Optional[int] = ..., seed: _Optional[int] = ..., no_cache: _Optional[bool] = ..., description: _Optional[str] = ..., relabel: _Optional[bool] = ..., nesterov: _Optional[bool] = ..., seeds: _Optional[int] = ..., data_parallel: _Optional[bool] = ..., frozen_mode: _Optional[str] = ..., augment: _Optional[str] = ..., augment_views: _Optional[int] = ...) -> None: ...

class FinetuneRequest(_message.Message):
    __slots__ = ("train", "unfreeze", "match")
    TRAIN_FIELD_NUMBER: _ClassVar[int]
    UNFREEZE_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    train: TrainRequest
    unfreeze: str
    match: str
    def __init__(self, train: _Optional[_Union[TrainRequest, _Mapping]] = ..., unfreeze: _Optional[str] = ..., match: _Optional[str] = ...) -> None: ...

class AdviseRequest(_message.Message):
    __slots__ = ("model", "data", "options_json")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_JSON_FIELD_NUMBER: _ClassVar[int]
    model: str
    data: str
    options_json: str
    def __init__(self, model: _Optional[str] = ..., data: _Optional[str] = ..., options_json: _Optional[str] = ...) -> None: ...

class StartJobRequest(_message.Message):
    __slots__ = ("kind", "params_json")
    KIND_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    kind: str
    params_json: str
    def __init__(self, kind: _Optional[str] = ..., params_json: _Optional[str] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job_id", "seq", "state", "epoch", "epochs", "losses", "metrics", "eta_seconds", "message", "model", "error", "time", "stage", "task", "label", "phase", "phases", "samples", "val_samples", "steps_per_epoch", "cached_layers", "stopped_early", "best_epoch", "rows_done", "rows_total")
    class LossesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    PHASES_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    VAL_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    STEPS_PER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    CACHED_LAYERS_FIELD_NUMBER: _ClassVar[int]
    STOPPED_EARLY_FIELD_NUMBER: _ClassVar[int]
    BEST_EPOCH_FIELD_NUMBER: _ClassVar[int]
    ROWS_DONE_FIELD_NUMBER: _ClassVar[int]
    ROWS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    seq: int
    state: str
    epoch: int
    epochs: int
    losses: _containers.ScalarMap[str, float]
    metrics: _containers.ScalarMap[str, float]
    eta_seconds: float
    message: str
    model: str
    error: str
    time: str
    stage: str
    task: str
    label: str
    phase: int
    phases: int
    samples: int
    val_samples: int
    steps_per_epoch: int
    cached_layers: _containers.RepeatedScalarFieldContainer[str]
    stopped_early: bool
    best_epoch: int
    rows_done: int
    rows_total: int
    def __init__(self, job_id: _Optional[str] = ..., seq: _Optional[int] = ..., state: _Optional[str] = ..., epoch: _Optional[int] = ..., epochs: _Optional[int] = ..., losses: _Optional[_Mapping[str, float]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., eta_seconds: _Optional[float] = ..., message: _Optional[str] = ..., model: _Optional[str] = ..., error: _Optional[str] = ..., time: _Optional[str] = ..., stage: _Optional[str] = ..., task: _Optional[str] = ..., label: _Optional[str] = ..., phase: _Optional[int] = ..., phases: _Optional[int] = ..., samples: _Optional[int] = ..., val_samples: _Optional[int] = ..., steps_per_epoch: _Optional[int] = ..., cached_layers: _Optional[_Iterable[str]] = ..., stopped_early: _Optional[bool] = ..., best_epoch: _Optional[int] = ..., rows_done: _Optional[int] = ..., rows_total: _Optional[int] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "kind", "state", "params_json", "created", "started", "finished", "model", "result_json", "error", "last_event")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_EVENT_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    state: str
    params_json: str
    created: str
    started: str
    finished: str
    model: str
    result_json: str
    error: str
    last_event: JobEvent
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., state: _Optional[str] = ..., params_json: _Optional[str] = ..., created: _Optional[str] = ..., started: _Optional[str] = ..., finished: _Optional[str] = ..., model: _Optional[str] = ..., result_json: _Optional[str] = ..., error: _Optional[str] = ..., last_event: _Optional[_Union[JobEvent, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("state", "kind")
    STATE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    state: str
    kind: str
    def __init__(self, state: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("id", "after_seq")
    ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    id: str
    after_seq: int
    def __init__(self, id: _Optional[str] = ..., after_seq: _Optional[int] = ...) -> None: ...

class GetServerStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelStats(_message.Message):
    __slots__ = ("model", "requests", "rows", "batches", "max_batch_requests", "batch_requests_histogram", "runtime", "runtime_reason")
    class BatchRequestsHistogramEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    BATCH_REQUESTS_HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_REASON_FIELD_NUMBER: _ClassVar[int]
    model: str
    requests: int
    rows: int
    batches: int
    max_batch_requests: int
    batch_requests_histogram: _containers.ScalarMap[int, int]
    runtime: str
    runtime_reason: str
    def __init__(self, model: _Optional[str] = ..., requests: _Optional[int] = ..., rows: _Optional[int] = ..., batches: _Optional[int] = ..., max_batch_requests: _Optional[int] = ..., batch_requests_histogram: _Optional[_Mapping[int, int]] = ..., runtime: _Optional[str] = ..., runtime_reason: _Optional[str] = ...) -> None: ...

class ServerStats(_message.Message):
    __slots__ = ("models", "cache_bytes", "cache_limit_bytes")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    CACHE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CACHE_LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelStats]
    cache_bytes: int
    cache_limit_bytes: int
    def __init__(self, models: _Optional[_Iterable[_Union[ModelStats, _Mapping]]] = ..., cache_bytes: _Optional[int] = ..., cache_limit_bytes: _Optional[int] = ...) -> None: ...
