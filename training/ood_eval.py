"""The out-of-distribution and calibration section of models/REPORT.md.

Every figure is read from the model cards written by ``python -m training fit-ood``
and by training (temperature scaling), so the report shows what was measured
when the guard was fitted and does not re-run the models.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.core.model_card import ModelCard, OodSection
from training.markdown import table


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _value(value: float | None) -> str:
    return "n/a" if value is None else str(value)


def ood_markdown(cards: Sequence[ModelCard]) -> str:
    """Markdown for the models of ``cards``."""
    out = ["## Out-of-distribution guard and uncertain predictions", ""]
    fitted = [(c, c.ood) for c in cards if c.ood is not None]
    if not fitted:
        return "\n".join(
            out + ["No model has a fitted guard: run `python -m training fit-ood`.", ""]
        )
    first: OodSection = fitted[0][1]
    out += [
        f"Method: {first.method}.",
        "",
        "The threshold is the validation split's "
        f"{100 * first.val_quantile:.1f}th percentile of that score; targets: at most 5% of "
        "in-distribution test images flagged, at least 95% of the constructed foreign set "
        "flagged.",
        "",
        table(
            [
                "model",
                "feature layer",
                "threshold",
                "val flagged",
                "test flagged",
                "foreign flagged",
            ],
            [
                [
                    c.architecture,
                    f"`{o.feature_layer}`",
                    f"{o.threshold:.3f}",
                    f"{_pct(o.val_flag_rate)} of {o.n_val}",
                    f"{_pct(o.test_flag_rate)} of {o.n_test}",
                    f"{_pct(o.foreign_flag_rate)} of {o.n_foreign}",
                ]
                for c, o in fitted
            ],
        ),
    ]
    kinds = list(first.foreign_flag_rate_by_kind)
    out += [
        "",
        "Foreign set flagged, per kind (images per kind in brackets):",
        "",
        table(
            ["model", *(f"{k} ({first.foreign_count_by_kind[k]})" for k in kinds)],
            [
                [c.architecture, *(_pct(o.foreign_flag_rate_by_kind.get(k)) for k in kinds)]
                for c, o in fitted
            ],
        ),
    ]
    out += [
        "",
        "Test images flagged by each part of the score alone: "
        + "; ".join(
            f"{c.architecture}: "
            + ", ".join(f"{k} {_pct(v)}" for k, v in o.test_flag_rate_by_component.items())
            for c, o in fitted
        )
        + ".",
        "",
    ]

    rows = []
    for c in cards:
        cal = c.calibration
        rows.append(
            [
                c.architecture,
                _value(cal.temperature),
                _value(cal.test_ece_before),
                _value(cal.test_ece_after),
                _value(cal.uncertain_below),
                _pct(cal.uncertain_test_rate),
                f"{_pct(cal.test_accuracy_when_confident)} / "
                f"{_pct(cal.test_accuracy_when_uncertain)}",
                f"[diagram]({c.name}.reliability.png)",
            ]
        )
    out += [
        "### Calibration and the uncertain rule",
        "",
        table(
            [
                "model",
                "temperature",
                "test ECE before",
                "test ECE after",
                "uncertain below",
                "test uncertain",
                "test accuracy confident / uncertain",
                "reliability",
            ],
            rows,
        ),
    ]
    rule = next((c.calibration.uncertain_rule for c in cards if c.calibration.uncertain_rule), None)
    if rule:
        out += ["", f"Rule: {rule}."]
    out.append("")
    return "\n".join(out)
