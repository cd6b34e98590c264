"""Command line: python -m training {train,evaluate,report,fit-ood,set-views,...} ...

Results (tables, JSON lines) go to stdout; progress and status go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TextIO

from app.core.model_card import VIEW_DESCRIPTIONS, ModelCard, ModelCardError
from app.core.model_files import model_files, model_names
from training import cell_commands
from training.architectures import ARCHITECTURES, FIELD_ARCHITECTURES
from training.data import DATA_ENV, DataSetError, Sample, data_dir_from

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = PROJECT_ROOT / "models"
MODEL_CHOICES = (*FIELD_ARCHITECTURES, "all")

log = logging.getLogger("training")


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at the time (tests capture it)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


_handler = _StderrHandler()
_handler.setFormatter(logging.Formatter("%(message)s"))


def _data_dir(value: str | None) -> str:
    return data_dir_from(value)


def _probability(value: str) -> float:
    p = float(value)
    if not 0.0 <= p <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not a probability between 0 and 1")
    return p


DATA_HELP = f"data set folder (default: ${DATA_ENV})"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    data_help = DATA_HELP

    train = sub.add_parser("train", help="train a model and write its artifacts")
    train.add_argument("--model", choices=MODEL_CHOICES, required=True)
    train.add_argument("--data-dir", help=data_help)
    train.add_argument("--epochs", type=int, default=40)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--out", type=Path, default=DEFAULT_MODELS_DIR)
    train.add_argument(
        "--learning-rate", type=float, help="peak learning rate (default: the architecture's own)"
    )
    train.add_argument(
        "--dropout",
        type=_probability,
        metavar="RATE",
        help="dropout rate of the dense layers (default: the architecture's own)",
    )
    train.add_argument(
        "--label-smoothing",
        type=_probability,
        default=0.0,
        metavar="E",
        help="label smoothing of the loss (default: 0, none)",
    )
    train.add_argument(
        "--background-swap",
        type=_probability,
        metavar="P",
        help="share of training images given another image's background "
        "(default: the architecture's own, 0)",
    )

    evaluate = sub.add_parser("evaluate", help="score committed models on a labelled folder")
    _every_model_options(evaluate)
    evaluate.add_argument(
        "--split",
        choices=("train", "val", "test"),
        help="only the images the split manifest puts in this split",
    )
    evaluate.add_argument("--json", action="store_true", help="one JSON object per model")

    report = sub.add_parser("report", help="write models/REPORT.md from the test split")
    report.add_argument("--data-dir", help=data_help)
    report.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)

    capture = sub.add_parser(
        "capture", help="the capture-robustness suite: accuracy, coverage, silent errors"
    )
    capture.add_argument("--data-dir", help=data_help)
    capture.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    capture.add_argument("--split", choices=("train", "val", "test"), default="val")
    capture.add_argument("--every", type=int, default=1, help="take every N-th image (default 1)")
    capture.add_argument(
        "--update-report",
        action="store_true",
        help="also replace the capture section of REPORT.md in the models folder "
        "(with --split test; every other section is left as it was)",
    )

    proxy = sub.add_parser(
        "patient-proxy",
        help="hold out contiguous blocks of file numbers (a patient-level estimate) "
        "against random folds",
    )
    proxy.add_argument("--data-dir", help=data_help)
    proxy.add_argument("--model", choices=tuple(FIELD_ARCHITECTURES), default="lenet")
    proxy.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    proxy.add_argument("--folds", type=int, default=5)
    proxy.add_argument("--epochs", type=int, default=20)
    proxy.add_argument("--seed", type=int, default=42)

    seg = sub.add_parser(
        "segmentation-agreement", help="IoU of the app's segmentation against the data set's masks"
    )
    seg.add_argument("--data-dir", help=data_help)
    seg.add_argument("--json", action="store_true", help="print the result as JSON")

    views = sub.add_parser(
        "set-views",
        help="change a trained model's test-time views, then "
        "recalibrate, rescore and refit its OOD guard",
    )
    views.add_argument("--data-dir", help=data_help)
    views.add_argument("--model", choices=MODEL_CHOICES, required=True)
    views.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    views.add_argument(
        "--views",
        type=int,
        choices=tuple(VIEW_DESCRIPTIONS),
        required=True,
        help="; ".join(f"{k}: {v}" for k, v in VIEW_DESCRIPTIONS.items()),
    )

    fit_ood = sub.add_parser("fit-ood", help="fit the OOD guard and the 'uncertain' confidence")
    _every_model_options(fit_ood)

    uncertain = sub.add_parser(
        "fit-uncertain",
        help="fit the 'uncertain' threshold on validation and its capture variants",
    )
    _every_model_options(uncertain)

    heat = sub.add_parser("heat", help="where the models look: Grad-CAM heat on the leukocytes")
    _every_model_options(heat)
    heat.add_argument("--split", choices=("train", "val", "test"), default="val")
    heat.add_argument("--per-class", type=int, default=10, help="images per class (default 10)")
    heat.add_argument("--layer", help="explain at this layer instead of the automatic choice")

    fit_heat = sub.add_parser(
        "fit-heat",
        help="fit the 'rests on the background' warning's density threshold on validation",
    )
    _every_model_options(fit_heat)

    warning = sub.add_parser(
        "heat-warning",
        help="how often the background warning fires on correct and wrong test answers",
    )
    warning.add_argument("--data-dir", help=data_help)
    warning.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    warning.add_argument(
        "--update-report",
        action="store_true",
        help="also replace this section of REPORT.md in the models folder",
    )

    scale = sub.add_parser(
        "fit-scale",
        help="measure the training photographs' cell scale and write it into the model cards",
    )
    _every_model_options(scale)

    case = sub.add_parser(
        "fit-case",
        help="fit the case rule's escalation threshold on simulated validation cases",
    )
    _every_model_options(case, cells=True)
    _capture_options(case, "validation")

    cases = sub.add_parser(
        "cases",
        help="recompute the simulated-case section of models/REPORT.md on the test split, in place",
    )
    cases.add_argument("--data-dir", help=data_help)
    cases.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    _capture_options(cases, "test")

    resplit = sub.add_parser(
        "resplit",
        help="rewrite the split manifest by the current rule (near duplicates together); "
        "refuses to move an image out of train or val",
    )
    resplit.add_argument("--data-dir", help=data_help)
    resplit.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)

    upgrade = sub.add_parser(
        "upgrade-cards",
        help="rewrite every model card in the current "
        "format (same figures; fields missing get their default)",
    )
    upgrade.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    COMMANDS.update(cell_commands.add_commands(sub, data_help, DEFAULT_MODELS_DIR))
    return parser


def _every_model_options(parser: argparse.ArgumentParser, cells: bool = False) -> None:
    """--data-dir, --model (every model unless named; cell models too when ``cells``, for
    commands that go through the served path) and --models-dir."""
    parser.add_argument("--data-dir", help=DATA_HELP)
    choices = (*ARCHITECTURES, "all") if cells else MODEL_CHOICES
    parser.add_argument("--model", choices=choices, default="all")
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)


def _capture_options(parser: argparse.ArgumentParser, split: str) -> None:
    from training.capture import CAPTURES

    parser.add_argument(
        "--every",
        type=int,
        default=1,
        help=f"use every n-th {split} image (default 1: cases need runs of neighbouring files)",
    )
    parser.add_argument(
        "--captures",
        nargs="+",
        choices=tuple(CAPTURES),
        default=tuple(CAPTURES),
        metavar="SET",
        help="capture sets to build the cases from (default: all of them)",
    )


def _model_names(models_dir: Path, choice: str, unit: str | None = "field") -> list[str]:
    """The models of ``models_dir`` that ``choice`` names ("all": every one that reads
    ``unit``, or every one when ``unit`` is None)."""
    available = model_names(models_dir)
    if unit is not None:
        available = [n for n in available if _card(models_dir, n).unit == unit]
    names = available if choice == "all" else [choice]
    if not names or any(n not in available for n in names):
        raise FileNotFoundError(f"no model {choice!r} in {models_dir}")
    return names


def _card(models_dir: Path, name: str) -> ModelCard:
    return ModelCard.load(model_files(models_dir, name).card)


def _split_of(args: argparse.Namespace, split: str) -> list[Sample]:
    """The images of the data folder that the models folder's split manifest puts in ``split``."""
    from training.data import discover
    from training.evaluate import select_split
    from training.split import MANIFEST_NAME

    samples = select_split(
        discover(_data_dir(args.data_dir)), args.models_dir / MANIFEST_NAME, split
    )
    if not samples:
        raise DataSetError(f"no image of this folder is in the {split} split")
    return samples


def _fit_ood(args: argparse.Namespace) -> int:
    from training.data import discover
    from training.ood import fit_ood

    data_dir = _data_dir(args.data_dir)
    samples = discover(data_dir)
    for name in _model_names(args.models_dir, args.model):
        section = fit_ood(args.models_dir, name, data_dir, samples=samples)
        print(
            f"[{name}] threshold {section.threshold:.3f}: flags val "
            f"{section.val_flag_rate:.1%}, test {section.test_flag_rate:.1%}, "
            f"foreign {section.foreign_flag_rate:.1%}",
            flush=True,
        )
    return 0


def _fit_uncertain(args: argparse.Namespace) -> int:
    from training.data import discover
    from training.uncertain import fit_uncertain

    samples = discover(_data_dir(args.data_dir))
    for name in _model_names(args.models_dir, args.model):
        c = fit_uncertain(args.models_dir, name, samples)
        print(
            f"[{name}] uncertain below {c.uncertain_below}: val {c.uncertain_val_rate:.1%}, "
            f"test {c.uncertain_test_rate:.1%} uncertain; test accuracy when confident "
            f"{c.test_accuracy_when_confident}",
            flush=True,
        )
    return 0


def _set_views(args: argparse.Namespace) -> int:
    from training.data import discover
    from training.set_views import set_views

    data_dir = _data_dir(args.data_dir)
    samples = discover(data_dir)
    for name in _model_names(args.models_dir, args.model):
        card = set_views(args.models_dir, name, args.views, data_dir, samples=samples)
        test = card.test_metrics
        assert test is not None  # set_views has just scored it
        print(
            f"[{name}] {args.views} view(s), version {card.version}: test accuracy "
            f"{test.accuracy:.4f}, macro-F1 {test.macro_f1:.4f}",
            flush=True,
        )
    return 0


def _segmentation_agreement(args: argparse.Namespace) -> int:
    from training.segmentation_eval import agreement, agreement_markdown

    result = agreement(_data_dir(args.data_dir))
    print(json.dumps(result) if args.json else agreement_markdown(result), flush=True)
    return 0


def _train(args: argparse.Namespace) -> int:
    from training.data import discover
    from training.train import TrainConfig, augmentation_for, train

    data_dir = _data_dir(args.data_dir)
    samples = discover(data_dir)
    names = list(FIELD_ARCHITECTURES) if args.model == "all" else [args.model]
    for name in names:
        config = TrainConfig(
            model=name,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            learning_rate=args.learning_rate or FIELD_ARCHITECTURES[name].learning_rate,
            label_smoothing=args.label_smoothing,
            dropout=args.dropout,
        )
        overrides = (
            {} if args.background_swap is None else {"background_swap_p": args.background_swap}
        )
        train(
            config,
            data_dir,
            args.out,
            samples=samples,
            augmentation=augmentation_for(name, **overrides),
        )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from app.core.model_store import load_model
    from training.data import discover
    from training.evaluate import evaluate_model, format_table, select_split
    from training.split import MANIFEST_NAME

    samples = discover(_data_dir(args.data_dir))
    if args.split:
        samples = select_split(samples, args.models_dir / MANIFEST_NAME, args.split)
        if not samples:
            raise DataSetError(f"no image of this folder is in the {args.split} split")
    for name in _model_names(args.models_dir, args.model):
        result = evaluate_model(load_model(args.models_dir, name), samples)
        print(json.dumps(result) if args.json else format_table(result), flush=True)
    return 0


def _heat(args: argparse.Namespace) -> int:
    from app.core.model_store import load_model
    from training.heat_eval import heat_markdown, measure

    samples = _split_of(args, args.split)
    models = [load_model(args.models_dir, n) for n in _model_names(args.models_dir, args.model)]
    results = measure(models, samples, args.per_class, layer=args.layer)
    print(heat_markdown(results, args.split, args.per_class), flush=True)
    return 0


def _fit_heat(args: argparse.Namespace) -> int:
    from app.core.service import InferenceService
    from training.heat_eval import fit_heat_rule, save_heat_rule, served_answers

    names = _model_names(args.models_dir, args.model)
    samples = _split_of(args, "val")
    service = InferenceService(args.models_dir, default_model=names[0]).load()
    for name in names:
        rule = fit_heat_rule(served_answers(service, name, samples))
        save_heat_rule(args.models_dir, name, rule)
        print(
            f"[{name}] warn below density {rule.min_density}: fires on "
            f"{_share_text(rule.val_fires_on_correct)} of {rule.val_correct} correct and "
            f"{_share_text(rule.val_fires_on_wrong)} of {rule.val_wrong} wrong confident "
            f"validation answers; {rule.val_no_cells} without cells",
            flush=True,
        )
    return 0


def _share_text(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.1%}"


def _heat_warning(args: argparse.Namespace) -> int:
    from training.report import heat_warning_section, write_heat_warning_section

    samples = _split_of(args, "test")
    if not args.update_report:
        print(heat_warning_section(args.models_dir, samples), flush=True)
        return 0
    path, section = write_heat_warning_section(args.models_dir, samples)
    print(section, flush=True)
    log.info("updated %s", path)
    return 0


def _report(args: argparse.Namespace) -> int:
    from training.report import write_report

    path = write_report(_data_dir(args.data_dir), args.models_dir)
    print(f"wrote {path}")
    return 0


def _fit_scale(args: argparse.Namespace) -> int:
    from app.core.preprocessing import SCALED_RESIZE
    from training.scale_fit import fit_scale

    spec = fit_scale(_split_of(args, "train"))
    if spec is None:
        raise DataSetError("most training images could not be measured")
    for name in _model_names(args.models_dir, args.model):
        path = model_files(args.models_dir, name).card
        card = ModelCard.load(path)
        if card.scale != spec:
            card.scale = spec
            card.preprocessing["resize"] = SCALED_RESIZE
            major, minor, patch = card.version.split(".")
            card.version = f"{major}.{minor}.{int(patch) + 1}"
            card.save(path)
        print(
            f"[{name}] version {card.version}: cells {spec.reference_px:.1f} px "
            f"(95% within {spec.low_px:.1f}-{spec.high_px:.1f}) in a {spec.field_px} px field",
            flush=True,
        )
    return 0


def _capture(args: argparse.Namespace) -> int:
    from training.report import capture_sections, write_capture_section

    if args.update_report and args.split != "test":
        raise SystemExit("--update-report writes the report's test-split section: use --split test")
    samples = _split_of(args, args.split)[:: args.every]
    every = f" --every {args.every}" if args.every != 1 else ""
    update = " --update-report" if args.update_report else ""
    command = f"python -m training capture --data-dir DIR --split {args.split}{every}{update}"
    if not args.update_report:
        captures, cases = capture_sections(args.models_dir, samples, args.split, command)
        print(captures, cases, sep="\n", flush=True)
        return 0
    path, captures, cases = write_capture_section(args.models_dir, samples, command)
    print(captures, cases, sep="\n", flush=True)
    print(f"replaced the capture section of {path} (not the case section)", flush=True)
    return 0


def _patient_proxy(args: argparse.Namespace) -> int:
    from training.data import discover
    from training.patient_proxy import RESULT_NAME, evaluate, patient_proxy_markdown
    from training.train import TrainConfig

    config = TrainConfig(
        model=args.model,
        epochs=args.epochs,
        seed=args.seed,
        learning_rate=FIELD_ARCHITECTURES[args.model].learning_rate,
        dropout=FIELD_ARCHITECTURES[args.model].dropout,
    )
    evaluate(discover(_data_dir(args.data_dir)), config, args.folds, args.models_dir)
    print(patient_proxy_markdown(args.models_dir / RESULT_NAME), flush=True)
    return 0


def _fit_case(args: argparse.Namespace) -> int:
    import numpy as np

    from app.core.service import InferenceService
    from training.capture import CAPTURES, run
    from training.case_eval import fit_case_rule, save_case_rule
    from training.patient_proxy import file_number

    names = _model_names(args.models_dir, args.model, unit=None)
    samples = _split_of(args, "val")[:: args.every]
    numbers = np.array([file_number(s) for s in samples])
    service = InferenceService(args.models_dir, default_model=names[0]).load()
    outcomes = run(service, samples, {c: CAPTURES[c] for c in args.captures}, models=names)
    for name in names:
        below = service.served(name).card.calibration.uncertain_below
        rule = fit_case_rule(outcomes[name], numbers, below)
        save_case_rule(args.models_dir, name, rule)
        print(
            f"[{name}] escalate at a malignant probability of {rule.escalate_at:g}: "
            f"{rule.val_cases} validation cases, false escalation "
            f"{_pct(rule.val_false_escalation_rate)}, miss {_pct(rule.val_miss_rate)}, "
            f"uncertain {_pct(rule.val_uncertain_rate)}",
            flush=True,
        )
    return 0


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _cases(args: argparse.Namespace) -> int:
    from training.report import write_case_section

    samples = _split_of(args, "test")[:: args.every]
    command = "python -m training cases --data-dir DIR" + "".join(
        f" {flag}" for flag in _case_flags(args)
    )
    path = write_case_section(args.models_dir, samples, args.captures, command)
    print(f"replaced the case section of {path}", flush=True)
    return 0


def _case_flags(args: argparse.Namespace) -> list[str]:
    """The options that changed the cases, for the report to name its command."""
    from training.capture import CAPTURES

    flags = [] if args.every == 1 else [f"--every {args.every}"]
    if tuple(args.captures) != tuple(CAPTURES):
        flags.append("--captures " + " ".join(args.captures))
    return flags


def _resplit(args: argparse.Namespace) -> int:
    from training.data import discover
    from training.split import MANIFEST_NAME, assign_splits, moves, read_manifest, write_manifest

    root = Path(_data_dir(args.data_dir))
    samples = discover(root)
    manifest = args.models_dir / MANIFEST_NAME
    new = assign_splits(samples)
    changed = moves(read_manifest(manifest), new)
    by_sha = {s.sha256: s for s in samples}
    for sha, (old_split, new_split) in sorted(changed.items()):
        print(f"{by_sha[sha].path.relative_to(root)}: {old_split} -> {new_split}", flush=True)
    digest = write_manifest(samples, new, root, manifest)
    for name in _model_names(args.models_dir, "all", unit=None):
        path = model_files(args.models_dir, name).card
        card = ModelCard.load(path)
        if card.split_manifest.sha256 != digest:
            card.split_manifest.sha256 = digest
            card.save(path)
    print(f"{len(changed)} image(s) changed split; manifest sha256 {digest}", flush=True)
    return 0


def _upgrade_cards(args: argparse.Namespace) -> int:
    for name in _model_names(args.models_dir, "all", unit=None):
        path = model_files(args.models_dir, name).card
        before = path.read_text()
        card = ModelCard.load(path)
        if card.to_json() != before:
            card.save(path)
            print(f"[{name}] card rewritten in the current format", flush=True)
        else:
            print(f"[{name}] card already current", flush=True)
    return 0


COMMANDS: dict[str, cell_commands.Handler] = {
    "train": _train,
    "evaluate": _evaluate,
    "report": _report,
    "segmentation-agreement": _segmentation_agreement,
    "fit-ood": _fit_ood,
    "set-views": _set_views,
    "fit-uncertain": _fit_uncertain,
    "heat": _heat,
    "fit-heat": _fit_heat,
    "heat-warning": _heat_warning,
    "fit-scale": _fit_scale,
    "capture": _capture,
    "patient-proxy": _patient_proxy,
    "fit-case": _fit_case,
    "cases": _cases,
    "resplit": _resplit,
    "upgrade-cards": _upgrade_cards,
}


def _configure_logging() -> None:
    """Status lines of every ``training`` module go to stderr."""
    if _handler not in log.handlers:
        log.addHandler(_handler)
    log.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging()
    try:
        return COMMANDS[args.command](args)
    except (DataSetError, ModelCardError, FileNotFoundError) as exc:
        log.error("error: %s", exc)
        return 2
