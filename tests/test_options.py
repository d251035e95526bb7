"""Flags are derived from the models that declare the options, so the CLI, a local run and
a remote request cannot disagree on a name, a default or a bound."""

from __future__ import annotations

import pytest

from facefleet.cli import build_parser
from facefleet.jobs.records import JobOptions
from facefleet.options import flag_of, given
from facefleet.training.records import LOCAL_TRAIN_OPTIONS, TrainConfig, TrainOptions, TrainRequest

RECIPE = [
    "--epochs", "3", "--eval-every", "2", "--batch-size", "16", "--lr", "0.001",
    "--weight-decay", "0.01", "--warmup-epochs", "0.5", "--scale", "20", "--margin", "0.3",
    "--easy-margin", "--margin-warmup", "2", "--input-size", "128", "--embedding-size", "256",
    "--seed", "7", "--max-people", "40", "--distill", "dlib", "--distill-weight", "5",
    "--mix-prob", "0.25", "--mix-alpha", "0.4",
]  # fmt: skip


def test_every_recipe_option_has_a_flag_and_travels_to_the_remote_request(
    capsys: pytest.CaptureFixture,
) -> None:
    args = build_parser().parse_args(["train", "--remote", *RECIPE])
    request = TrainRequest(run="r", options=TrainOptions(**given(args, TrainOptions)))
    sent = TrainRequest.model_validate_json(request.model_dump_json())
    assert sent.options.model_dump() == {
        "epochs": 3, "eval_every": 2, "batch_size": 16, "lr": 0.001, "weight_decay": 0.01,
        "warmup_epochs": 0.5, "scale": 20.0, "margin": 0.3, "easy_margin": True,
        "margin_warmup": 2, "input_size": 128, "embedding_size": 256, "seed": 7,
        "max_people": 40, "distill": "dlib", "distill_weight": 5.0, "mix_prob": 0.25,
        "mix_alpha": 0.4,
    }  # fmt: skip
    # Nothing of a run's configuration is left out of the flags.
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    shown = capsys.readouterr().out
    assert all(flag_of(name) in shown for name in TrainConfig.model_fields)


def test_a_local_run_takes_the_same_recipe_plus_its_paths(tmp_path) -> None:
    args = build_parser().parse_args(
        ["train", *RECIPE, "--lfw", str(tmp_path), "--out", str(tmp_path / "run")]
    )
    config = TrainConfig(**given(args, TrainConfig))
    assert config.lfw == tmp_path and config.epochs == 3 and config.margin_warmup == 2
    assert set(LOCAL_TRAIN_OPTIONS) == {"lfw", "out", "device", "precision", "cache_dir",
                                        "export_half", "data", "data_only",
                                        "teacher_weights", "init_from"}  # fmt: skip


def test_unset_flags_keep_the_model_defaults() -> None:
    args = build_parser().parse_args(["train", "--remote"])
    assert TrainOptions(**given(args, TrainOptions)) == TrainOptions()
    submit = build_parser().parse_args(["submit", "x.mp4", "--every", "3"])
    assert JobOptions(**given(submit, JobOptions)) == JobOptions(every=3)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--epochs", "0", "--lfw", "l", "--out", "o"], "--epochs"),
        (["train", "--remote", "--device", "cpu"], "--device"),
        (["train", "--epochs", "2"], "local training needs --lfw and --out"),
        (["submit", "x.mp4", "--every", "0"], "--every"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    from facefleet.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
