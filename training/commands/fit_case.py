"""``python -m training fit-case``: the case rule's escalation threshold."""

from __future__ import annotations

import argparse

from training.commands import options
from training.commands.common import percent, selected_models, split_of

NAME = "fit-case"
HELP = "fit the case rule's escalation threshold on simulated validation cases"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.every_model(parser, cells=True)
    # The photographs as they are: the capture sets measure captures no choice was made on.
    options.captures(parser, "validation", default=("unperturbed",))


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from app.core.service import InferenceService
    from training.capture import CAPTURES
    from training.capture import run as run_captures
    from training.case_eval import fit_case_rule, save_case_rule
    from training.file_numbers import file_number

    names = selected_models(args.models_dir, args.model, unit=None)
    samples = split_of(args, "val")[:: args.every]
    numbers = np.array([file_number(s) for s in samples])
    service = InferenceService(args.models_dir, default_model=names[0]).load()
    outcomes = run_captures(service, samples, {c: CAPTURES[c] for c in args.captures}, models=names)
    for name in names:
        below = service.served(name).card.calibration.uncertain_below
        rule = fit_case_rule(outcomes[name], numbers, below)
        save_case_rule(args.models_dir, name, rule)
        print(
            f"[{name}] escalate at a malignant probability of {rule.escalate_at:g}: "
            f"{rule.val_cases} validation cases, false escalation "
            f"{percent(rule.val_false_escalation_rate)}, miss {percent(rule.val_miss_rate)}, "
            f"uncertain {percent(rule.val_uncertain_rate)}",
            flush=True,
        )
    return 0
