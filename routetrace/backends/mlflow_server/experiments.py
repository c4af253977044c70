"""Experiments and runs on an MLflow server: found by id or name, created when missing."""

from __future__ import annotations

import time
from typing import Any

from routetrace.backends.base import BackendError, ExperimentInfo
from routetrace.backends.mlflow_server.rest import RestClient
from routetrace.core.destination import Experiment

__all__ = ["create_run", "end_run", "experiment_info", "list_experiments", "look_up"]


def look_up(rest: RestClient, experiment: Experiment, create: bool) -> ExperimentInfo:
    """The server's experiment for ``experiment`` (by id, else by name, created if missing
    and ``create``); a deleted one is refused with what to do."""
    if experiment.experiment_id is not None:
        body = rest.json_or_none(
            "GET", "/api/2.0/mlflow/experiments/get",
            params={"experiment_id": str(experiment.experiment_id)},
            what=f"the lookup of experiment id {experiment.experiment_id}",
        )
        if body is None:
            raise BackendError(f"experiment id {experiment.experiment_id!r} does not exist "
                               f"on {rest.uri}", retryable=False)
        return experiment_info(body["experiment"])
    name = experiment.name or "Default"
    body = _get_by_name(rest, name)
    if body is None:
        if not create:
            raise BackendError(f"no experiment named {name!r} on {rest.uri}",
                               retryable=False)
        try:
            rest.json("POST", "/api/2.0/mlflow/experiments/create", json={"name": name},
                      what=f"creating experiment {name!r}")
        except BackendError as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
                raise
        body = _get_by_name(rest, name)
        if body is None:
            raise BackendError(f"experiment {name!r} vanished on {rest.uri} right after it "
                               "was created", retryable=True)
    info = experiment_info(body["experiment"])
    if info.lifecycle_stage == "deleted":
        raise BackendError(
            f"experiment {name!r} is deleted on {rest.uri}; restore it "
            "(mlflow experiments restore) or route the traces to another experiment",
            retryable=False,
        )
    return info


def _get_by_name(rest: RestClient, name: str) -> dict[str, Any] | None:
    return rest.json_or_none("GET", "/api/2.0/mlflow/experiments/get-by-name",
                             params={"experiment_name": name},
                             what=f"the lookup of experiment {name!r}")


def experiment_info(d: dict[str, Any]) -> ExperimentInfo:
    created = d.get("creation_time")
    return ExperimentInfo(str(d["experiment_id"]), d["name"],
                          None if created is None else int(created),
                          d.get("lifecycle_stage", "active"))


def list_experiments(rest: RestClient) -> list[ExperimentInfo]:
    """Every experiment on the server, page by page, in id order."""
    out: list[ExperimentInfo] = []
    token: str | None = None
    while True:
        body: dict[str, Any] = {"max_results": 1000}
        if token:
            body["page_token"] = token
        resp = rest.json("POST", "/api/2.0/mlflow/experiments/search", json=body,
                         what="listing experiments")
        out.extend(experiment_info(e) for e in resp.get("experiments", ()))
        token = resp.get("next_page_token")
        if not token:
            break
    return sorted(out, key=lambda e: int(e.experiment_id) if e.experiment_id.isdigit()
                  else 0)


def create_run(rest: RestClient, experiment: ExperimentInfo, run_name: str | None) -> str:
    body: dict[str, Any] = {"experiment_id": experiment.experiment_id,
                            "start_time": int(time.time() * 1000)}
    if run_name:
        body["run_name"] = run_name
    resp = rest.json("POST", "/api/2.0/mlflow/runs/create", json=body,
                     what="creating a run")
    return str(resp["run"]["info"]["run_id"])


def end_run(rest: RestClient, run_id: str, status: str) -> None:
    rest.json("POST", "/api/2.0/mlflow/runs/update",
              json={"run_id": run_id, "status": status,
                    "end_time": int(time.time() * 1000)},
              what=f"ending run {run_id}")
