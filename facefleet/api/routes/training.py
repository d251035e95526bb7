"""Training runs and their periodic evaluations."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from facefleet.api.auth import Admin, Reader
from facefleet.api.deps import client_of
from facefleet.api.records import TrainingRequest
from facefleet.client import TrainingJob
from facefleet.jobs.records import training_prefix
from facefleet.training.records import TrainProgress

router = APIRouter(prefix="/v1/training", tags=["training"])


@router.post("", status_code=202)
def start_training(body: TrainingRequest, request: Request, caller: Admin) -> dict[str, str]:
    """Start a training run on a worker (LFW DevTrain with the recipe's options)."""
    client = client_of(request)
    if not client.distributed:
        raise HTTPException(503, "training needs the batch system's workers")
    job = client.train(options=body.options, run=body.run, promote=body.promote)
    return {"run": job.run}


@router.get("/{run}", response_model=TrainProgress)
def training_progress(run: str, request: Request, caller: Reader) -> TrainProgress:
    """A run's epochs and every evaluation so far (best threshold and F1 per metric)."""
    training_prefix(run)  # 400 for a bad name
    progress = TrainingJob(client_of(request), run).progress()
    if progress is None:
        raise HTTPException(404, f"no training run {run!r}")
    return progress
