"""`facefleet train` (local runs), `facefleet eval` and `facefleet calibrate`."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from facefleet.console import err
from facefleet.core.errors import FacefleetError
from facefleet.core.settings import Settings, get_settings
from facefleet.exits import EXIT_OK
from facefleet.options import given, missing
from facefleet.training.records import TrainConfig

if TYPE_CHECKING:
    from facefleet.core.extractors.base import Extractor


def _log(message: str) -> None:
    err.print(message, highlight=False)


def train(args: argparse.Namespace) -> int:
    from facefleet.training.trainer import Trainer

    absent = missing(args, ("lfw", "out"))
    if absent:
        raise FacefleetError(f"local training needs {' and '.join(absent)} (or use --remote)")
    values = given(args, TrainConfig)
    values.setdefault("cache_dir", get_settings().cache_dir)
    config = TrainConfig(**values)
    Trainer(config, log=_log, progress=not args.quiet).run(resume=args.resume)
    return EXIT_OK


def evaluate(args: argparse.Namespace) -> int:
    from facefleet.training.evaluation_report import evaluate_model

    settings = get_settings(**given(args, Settings))
    report = evaluate_model(
        _extractor(settings), args.lfw, settings.cache_dir, log=_log, progress=not args.quiet
    )
    for line in report.lines():
        print(line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.as_json(), indent=2), encoding="utf-8")
    return EXIT_OK


def calibrate(args: argparse.Namespace) -> int:
    from facefleet.training.evaluation_report import calibrate, write_calibration

    settings = get_settings(**given(args, Settings))
    extractor = _extractor(settings)
    calibration = calibrate(extractor, args.lfw, settings.cache_dir, args.far, log=_log)
    _log(f"written to {write_calibration(extractor, calibration, args.out)} ({extractor.model_id})")
    return EXIT_OK


def _extractor(settings: Settings) -> Extractor:
    from facefleet.core.pipeline import load_extractor

    extractor = load_extractor(settings, batch_size=256)
    if extractor is None:
        raise FacefleetError("nothing to evaluate: --extractor none loads no model")
    return extractor
