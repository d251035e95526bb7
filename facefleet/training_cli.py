"""`facefleet train` and `facefleet eval`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facefleet.cli import EXIT_INPUT_ERRORS, EXIT_OK, EXIT_SETUP_ERROR
from facefleet.console import err
from facefleet.console import error as _error


def train(args: argparse.Namespace) -> int:
    from core.errors import FacefleetError
    from core.settings import get_settings
    from training.trainer import TrainConfig, Trainer

    settings = get_settings()
    if args.lfw is None or args.out is None:
        _error("local training needs --lfw and --out (or use --remote)")
        return EXIT_SETUP_ERROR
    try:
        config = TrainConfig(
            lfw=args.lfw,
            out=args.out,
            epochs=args.epochs,
            eval_every=args.eval_every,
            batch_size=args.batch_size,
            lr=args.lr,
            margin=args.margin,
            scale=args.scale,
            easy_margin=args.easy_margin,
            margin_warmup_epochs=args.margin_warmup,
            max_people=args.max_people,
            seed=args.seed,
            distill=args.distill,
            distill_weight=args.distill_weight,
            init_from=args.init_from,
            device=args.device,
            cache_dir=settings.cache_dir,
        )
    except ValueError as exc:
        _error(f"invalid training option: {exc}")
        return EXIT_SETUP_ERROR
    try:
        Trainer(config, log=lambda m: err.print(m, highlight=False), progress=not args.quiet).run(
            resume=args.resume
        )
    except FacefleetError as exc:
        _error(str(exc))
        return EXIT_SETUP_ERROR
    return EXIT_OK


def evaluate(args: argparse.Namespace) -> int:
    from core.embedding import FaceEmbedder
    from core.errors import FacefleetError
    from core.settings import get_settings
    from training.evaluation_report import evaluate_model

    settings = get_settings(model=args.model, device=args.device)
    model_path = settings.resolved_model_path()
    if model_path is None:
        _error("no extractor to evaluate: pass --model PATH (none is shipped with this install)")
        return EXIT_SETUP_ERROR
    try:
        from core.device import resolve_device

        embedder = FaceEmbedder.from_checkpoint(
            model_path, resolve_device(settings.device), 256, settings.extractor_runtime
        )
        report = evaluate_model(
            embedder,
            Path(args.lfw),
            settings.cache_dir,
            log=lambda m: err.print(m, highlight=False),
            progress=not args.quiet,
        )
    except FacefleetError as exc:
        _error(str(exc))
        return EXIT_SETUP_ERROR
    except ValueError as exc:  # too few pairs to evaluate
        _error(str(exc))
        return EXIT_INPUT_ERRORS
    for line in report.lines():
        print(line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.as_json(), indent=2), encoding="utf-8")
    return EXIT_OK


def calibrate(args: argparse.Namespace) -> int:
    from core.errors import FacefleetError
    from core.settings import get_settings
    from training.evaluation_report import calibrate_checkpoint

    settings = get_settings()
    try:
        calibrate_checkpoint(
            args.model,
            args.lfw,
            settings.cache_dir,
            args.out,
            args.far,
            log=lambda m: err.print(m, highlight=False),
        )
    except FacefleetError as exc:
        _error(str(exc))
        return EXIT_SETUP_ERROR
    except ValueError as exc:
        _error(str(exc))
        return EXIT_INPUT_ERRORS
    return EXIT_OK
