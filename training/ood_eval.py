"""The out-of-distribution and calibration section of models/REPORT.md.

Every figure is read from the metadata written by ``python -m training fit-ood``
and by training (temperature scaling), so the report shows what was measured
when the guard was fitted and does not re-run the models.
"""

from __future__ import annotations

from pathlib import Path

from app.model_store import model_names, read_metadata


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def ood_markdown(models_dir: str | Path, data_dir: str | Path | None = None) -> str:
    """Markdown for every model in ``models_dir``; ``data_dir`` is not read (see module doc).

    It is accepted so the report generator can call every section the same way.
    """
    root = Path(models_dir)
    metas = [read_metadata(root / f"{n}.json") for n in model_names(root)]
    out = ["## Out-of-distribution guard and uncertain predictions", ""]
    fitted = [m for m in metas if m.get("ood")]
    if not fitted:
        return "\n".join(out + ["No model has a fitted guard: run `python -m training fit-ood`.",
                                ""])
    first = fitted[0]["ood"]
    out += [
        f"Method: {first['method']}.", "",
        "The threshold is the validation split's "
        f"{100 * first['val_quantile']:.1f}th percentile of that score; targets: at most 5% of "
        "in-distribution test images flagged, at least 95% of the constructed foreign set "
        "flagged.", "",
        "| model | feature layer | threshold | val flagged | test flagged | foreign flagged |",
        "|---|---|---|---|---|---|",
    ]
    for m in fitted:
        o = m["ood"]
        out.append(f"| {m['architecture']} | `{o['feature_layer']}` | {o['threshold']:.3f} | "
                   f"{_pct(o['val_flag_rate'])} of {o['n_val']} | "
                   f"{_pct(o['test_flag_rate'])} of {o['n_test']} | "
                   f"{_pct(o['foreign_flag_rate'])} of {o['n_foreign']} |")
    kinds = list(first["foreign_flag_rate_by_kind"])
    out += ["", "Foreign set flagged, per kind (images per kind in brackets):", "",
            "| model | " + " | ".join(f"{k} ({first['foreign_count_by_kind'][k]})"
                                     for k in kinds) + " |",
            "|---|" + "---|" * len(kinds)]
    for m in fitted:
        rates = m["ood"]["foreign_flag_rate_by_kind"]
        out.append(f"| {m['architecture']} | "
                   + " | ".join(_pct(rates.get(k)) for k in kinds) + " |")
    out += ["", "Test images flagged by each part of the score alone: " + "; ".join(
        f"{m['architecture']}: " + ", ".join(
            f"{k} {_pct(v)}" for k, v in m["ood"]["test_flag_rate_by_component"].items())
        for m in fitted) + ".", ""]

    out += ["### Calibration and the uncertain rule", "",
            "| model | temperature | test ECE before | test ECE after | uncertain below | "
            "test uncertain | test accuracy confident / uncertain | reliability |",
            "|---|---|---|---|---|---|---|---|"]
    for m in metas:
        c = m.get("calibration", {})
        acc = (f"{_pct(c.get('test_accuracy_when_confident'))} / "
               f"{_pct(c.get('test_accuracy_when_uncertain'))}")
        out.append(f"| {m['architecture']} | {c.get('temperature', 'n/a')} | "
                   f"{c.get('test_ece_before', 'n/a')} | {c.get('test_ece_after', 'n/a')} | "
                   f"{c.get('uncertain_below', 'n/a')} | {_pct(c.get('uncertain_test_rate'))} | "
                   f"{acc} | [diagram]({m['name']}.reliability.png) |")
    rule = next((m["calibration"]["uncertain_rule"] for m in metas
                 if m.get("calibration", {}).get("uncertain_rule")), None)
    if rule:
        out += ["", f"Rule: {rule}."]
    out.append("")
    return "\n".join(out)
