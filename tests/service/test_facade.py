"""Both facades, Service (a local store) and RemoteService (a server), have every method of the Facade
Protocol with its parameters: names, kinds, defaults and annotations, so the CLI can call either."""

from __future__ import annotations

import inspect

import pytest

from reuse.remote import RemoteService
from reuse.service import Service
from reuse.service.protocol import Facade

METHODS = sorted(n for n, v in vars(Facade).items()
                 if not n.startswith("_") and (callable(v) or isinstance(v, property)))


def _members(annotation: object) -> set[str]:
    return {part.strip() for part in str(annotation).split(" | ")}


def _accepts(impl: object, proto: object) -> bool:
    """Whether a parameter annotated ``impl`` takes every value one annotated ``proto`` may get."""
    return impl == proto or "Any" in (impl, proto) or _members(proto) <= _members(impl)


def _returns(impl: object, proto: object) -> bool:
    """Whether what ``impl`` returns is always something ``proto`` promises."""
    return impl == proto or "Any" in (impl, proto) or _members(impl) <= _members(proto)


def mismatches(cls: type, name: str) -> list[str]:
    """How ``cls.name`` differs from ``Facade.name`` in a way a caller of the Protocol would notice."""
    want, have = inspect.getattr_static(Facade, name), inspect.getattr_static(cls, name, None)
    if have is None:
        return ["missing"]
    if isinstance(want, property):
        if not isinstance(have, property):
            return ["not a property"]
        ok = _returns(have.fget.__annotations__.get("return"), want.fget.__annotations__.get("return"))
        return [] if ok else [f"returns {have.fget.__annotations__.get('return')}"]
    proto, impl = inspect.signature(want), inspect.signature(have)
    problems = []
    params = dict(impl.parameters)
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for p in proto.parameters.values():
        q = params.pop(p.name, None)
        if q is None:
            if not (p.kind is p.KEYWORD_ONLY and var_kw):
                problems.append(f"lacks parameter {p.name!r}")
            continue
        if (q.kind, q.default) != (p.kind, p.default):
            problems.append(f"parameter {p.name!r} is {q.kind.description}={q.default!r}, "
                            f"expected {p.kind.description}={p.default!r}")
        elif not _accepts(q.annotation, p.annotation):
            problems.append(f"parameter {p.name!r} is annotated {q.annotation}, expected {p.annotation}")
    for q in params.values():  # anything more must be optional
        if q.kind not in (q.VAR_KEYWORD, q.VAR_POSITIONAL) and q.default is q.empty:
            problems.append(f"requires parameter {q.name!r} the Protocol does not have")
    if not _returns(impl.return_annotation, proto.return_annotation):
        problems.append(f"returns {impl.return_annotation}, expected {proto.return_annotation}")
    return problems


def test_the_protocol_lists_what_the_cli_calls():
    assert len(METHODS) >= 30
    assert {"list_models", "build", "train_model", "predict_model", "watch_job", "store_root"} <= set(METHODS)
    assert not {"export_model", "check_store", "report_model", "pretrain_model", "advise"} & set(METHODS)


@pytest.mark.parametrize("cls", [Service, RemoteService], ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", METHODS)
def test_both_facades_have_each_method_with_its_signature(cls, name):
    assert mismatches(cls, name) == [], f"{cls.__name__}.{name}"


def test_a_differing_signature_is_found():
    class Wrong:
        @property
        def store_root(self) -> int:
            return 0

        def model_info(self, reference: str) -> str:
            return reference

        def list_jobs(self, *, state: str = "queued", kind: str = "") -> list[JobRecord]:  # noqa: F821
            return []

        def model_layers(self, ref: int) -> list[LayerInfo]:  # noqa: F821
            return []

        def get_job(self, job_id: str, strict: bool) -> JobRecord:  # noqa: F821
            raise NotImplementedError

    assert mismatches(Wrong, "store_root") == ["returns int"]
    assert mismatches(Wrong, "model_info") == ["lacks parameter 'ref'", "requires parameter 'reference' the "
                                               "Protocol does not have", "returns str, expected ModelInfo"]
    assert mismatches(Wrong, "list_jobs") == ["parameter 'state' is keyword-only='queued', expected "
                                              "keyword-only=''"]
    assert mismatches(Wrong, "model_layers") == ["parameter 'ref' is annotated int, expected str"]
    assert mismatches(Wrong, "get_job") == ["requires parameter 'strict' the Protocol does not have"]
    assert mismatches(Wrong, "close") == ["missing"]


def test_a_remote_facade_has_no_catch_all():
    """A typo or a local-only operation is a plain AttributeError, not a transport error."""
    remote = RemoteService("127.0.0.1:1", timeout=1.0)
    try:
        assert isinstance(remote, Facade)
        for name in ("export_model", "check_store", "modle_info"):
            with pytest.raises(AttributeError):
                getattr(remote, name)
    finally:
        remote.close()
