"""What each dashboard page shows, read through the facade: plain dicts and lists for the templates.

These run in the server's thread pool (store reads never block the event loop). Nothing here writes.
"""

from __future__ import annotations

import math
from typing import Any

from reuse.errors import NotFound
from reuse.http.dashboard.layout import layout
from reuse.names import check_name
from reuse.service import Service

QUERY_LIMIT = 200  # the longest search text honoured
LOSS_KEYS = ("loss", "val_loss")


def _matches(info: Any, q: str) -> bool:
    text = " ".join([info.name, info.description or "", *(f"{k}={v}" for k, v in (info.tags or {}).items())])
    return q in text.lower()


def models(service: Service, q: str = "") -> dict[str, Any]:
    """Every model's latest version, those matching ``q`` (name, description, tags; any case)."""
    q = q.strip()[:QUERY_LIMIT]
    infos = service.list_models()
    shown = [i for i in infos if _matches(i, q.lower())] if q else infos
    return {"models": shown, "q": q, "total": len(infos)}


def model(service: Service, name: str) -> dict[str, Any]:
    versions = service.model_versions(check_name(name))
    return {"name": name, "versions": versions[::-1]}


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def curves(segments: list[Any], units: int | None = None) -> dict[str, Any]:
    """The learning curves along the lineage as chart data: one series per recorded key over the epochs
    of every segment, and where each segment starts. With accuracy curves of a ``units``-way output,
    ``metric_min``: the axis starts at chance (1/units, 0.5 for one unit) or the lowest value, and ends
    at 1, as the PNG plots draw it (reuse.train.curves)."""
    keys: list[str] = []
    for s in segments:
        keys += [k for k in s.history if k not in keys and isinstance(s.history[k], list)]
    series: dict[str, list[float | None]] = {k: [] for k in keys}
    starts = []
    for s in segments:
        starts.append({"epoch": len(series[keys[0]]) + 1 if keys else 1, "label": f"{s.model} {s.operation}"})
        n = s.epochs
        for k in keys:
            values = list(s.history.get(k) or [])[:n]
            series[k] += [_finite(v) for v in values] + [None] * (n - len(values))
    total = sum(s.epochs for s in segments)
    accuracy = [v for k, vs in series.items() if k.endswith("accuracy") for v in vs if v is not None]
    floor = None
    if accuracy and units and all(k.endswith("accuracy") for k in series if _axis(k) == "metric"):
        floor = min(1.0 / units if units > 1 else 0.5, *accuracy)
    return {
        "epochs": list(range(1, total + 1)),
        "series": [{"key": k, "axis": _axis(k), "values": v} for k, v in series.items()],
        "segments": starts,
        "metric_min": floor,
    }


def _axis(key: str) -> str:
    return "loss" if key in LOSS_KEYS or key.endswith("loss") else "metric"


def advice_chart(advice: dict[str, Any]) -> dict[str, Any]:
    """The advisor's table as chart data: mean ± std of its metric by depth, frozen and fine-tuned."""
    groups: dict[str, list[dict[str, Any]]] = {"frozen": [], "fine-tuned": [], "scratch": []}
    for row in advice.get("rows") or []:
        if row.get("mean") is None:
            continue
        group = "scratch" if not row.get("depth") else ("fine-tuned" if row.get("finetune") else "frozen")
        groups[group].append(
            {
                "x": row.get("depth", 0),
                "y": row["mean"],
                "std": row.get("std") or 0.0,
                "label": row.get("candidate"),
            }
        )
    return {
        "metric": advice.get("metric", ""),
        "series": [{"label": k, "points": v} for k, v in groups.items() if v],
    }


def _scalars(metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in sorted(metrics.items()) if isinstance(v, (int, float, str, bool)) or v is None]


def version(service: Service, name: str, number: str) -> dict[str, Any]:
    """Everything the version page shows of ``name:number``."""
    ref = f"{check_name(name)}:{number}"
    described = service.describe_model(ref)
    info = described.info
    lineage = info.lineage or {}
    reused = {str(x.get("name")): x for x in lineage.get("layers") or []}
    members = {
        str(m.get("layer")): f"{m.get('name')}:{m.get('version')} (a member: the whole network)"
        for m in lineage.get("members") or []
        if m.get("layer")
    }
    unfrozen = {n for s in lineage.get("steps") or [] for n in (s.get("unfrozen") or [])}
    layers = []
    for layer in described.layers:
        src = (reused.get(layer.name) or {}).get("from") or {}
        came = (
            f"{src.get('name')}:{src.get('version')}/{src.get('layer')}" if src else members.get(layer.name)
        )
        layers.append({"layer": layer, "reused_from": came, "unfrozen": layer.name in unfrozen})
    graph = service.lineage_graph(info.ref)
    metrics = info.metrics or {}
    report = service.report_model(info.ref)
    advice = metrics.get("advice") if isinstance(metrics.get("advice"), dict) else None
    return {
        "info": info,
        "versions": described.versions,
        "layers": layers,
        "metrics": _scalars(metrics),
        "ensemble_check": metrics.get("ensemble_check")
        if isinstance(metrics.get("ensemble_check"), dict)
        else None,
        "advice": advice,
        "advice_chart": advice_chart(advice) if advice else None,
        "curves": curves(service.training_history(info.ref),
                         info.output_shape[-1] if info.output_shape else None),
        "findings": [f.to_dict() for f in report.findings],
        "graph": layout(graph),
        "ancestry": service.lineage(info.ref),
        "class_names": list(info.class_names or []),
    }


def advice_runs(service: Service) -> list[dict[str, Any]]:
    """Every advisor table the store holds: in versions the advisor registered, and in advise jobs."""
    runs = []
    for latest in service.list_models():
        for info in service.model_versions(latest.name):
            advice = (info.metrics or {}).get("advice")
            if isinstance(advice, dict) and advice.get("rows"):
                runs.append(
                    {
                        "source": f"registered as {info.ref}",
                        "model": info.ref,
                        "created": info.created,
                        "advice": advice,
                        "chart": advice_chart(advice),
                    }
                )
    for job in service.list_jobs(kind="advise"):
        result = job.result if isinstance(job.result, dict) else {}
        if result.get("rows"):
            runs.append(
                {
                    "source": f"job {job.id} ({job.state})",
                    "model": result.get("model"),
                    "created": job.created,
                    "advice": result,
                    "chart": advice_chart(result),
                }
            )
    return sorted(runs, key=lambda r: r["created"] or "", reverse=True)


def rank_runs(service: Service) -> list[dict[str, Any]]:
    """Results of ``rank`` jobs (issue 25's ``reuse rank``), as their table of rows when they carry one."""
    runs = []
    try:
        jobs = service.list_jobs(kind="rank")
    except NotFound:
        jobs = []
    for job in jobs:
        result = job.result if isinstance(job.result, dict) else {}
        rows = [r for r in result.get("rows") or [] if isinstance(r, dict)]
        columns = list(dict.fromkeys(k for r in rows for k in r))
        runs.append({"job": job, "rows": rows, "columns": columns, "result": result})
    return runs


def job_dict(job: Any) -> dict[str, Any]:
    ev = job.last_event
    progress = None
    if ev is not None and ev.epochs:
        progress = {
            "done": ev.epoch,
            "of": ev.epochs,
            "eta_s": ev.eta_s if ev.eta_s >= 0 else None,
            "losses": ev.losses,
            "metrics": ev.metrics,
        }
    return {
        "id": job.id,
        "kind": job.kind,
        "state": job.state,
        "created": job.created,
        "started": job.started,
        "finished": job.finished,
        "model": job.model,
        "error": job.error,
        "progress": progress,
    }


def jobs(service: Service) -> list[dict[str, Any]]:
    """Jobs newest first, with the progress of their last event."""
    return [job_dict(j) for j in service.list_jobs()[::-1]]
