"""``recs evaluate-foryou``: replay MIND impressions through the "Recommended for you" ranking."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from models.artifact import ArtifactError, load_model
from models.foryou_evaluation import evaluate_foryou
from models.importers import read_mind_behaviors
from models.ranking import RankingConfig
from models.records import CorpusError, RecordError
from scripts.common import CliError, model_option

METRICS = ("hit@1", "hit@5", "hit@10", "mrr", "ndcg@10")


def format_report(report: dict[str, Any]) -> str:
    """The report as a Markdown table with the sample counts above it."""
    counts = report["counts"]
    lines = [
        f"impressions {counts['impressions']:,}; with a history article in the corpus"
        f" {counts.get('with_known_history', 0):,}; with a clicked corpus article not already"
        f" read {counts.get('with_known_click', 0):,}; usable (both) {counts['usable']:,}"
        f" ({counts.get('clicks_to_find', 0):,} clicks to find) in a corpus of"
        f" {report['corpus']:,} articles",
        "",
        "| method | " + " | ".join(METRICS) + " |",
        "|---|" + "---:|" * len(METRICS),
    ]
    for row in report["rows"]:
        lines.append(f"| {row['method']} | " + " | ".join(f"{row[m]:.4f}" for m in METRICS) + " |")
    lines += ["", f"MRR counts a click below rank {report['depth']} as 0."]
    return "\n".join(lines)


@click.command("evaluate-foryou")
@model_option
@click.option(
    "--behaviors",
    required=True,
    type=click.Path(path_type=Path),
    help="MIND behaviors.tsv (impressions with click labels).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random baseline seed.")
@click.option(
    "--history-half-life",
    type=click.FloatRange(min=0.01),
    default=None,
    help="History positions after which a read counts half [10].",
)
@click.option(
    "--diversity", type=click.FloatRange(0, 0.99), default=None, help="MMR trade-off [0.3]."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def evaluate_foryou_cmd(
    model_dir: Path,
    behaviors: Path,
    seed: int,
    history_half_life: float | None,
    diversity: float | None,
    as_json: bool,
) -> None:
    """Hit rate, MRR and nDCG@10 of clicked articles, against most-popular and random."""
    try:
        loaded = load_model(model_dir)
    except (ArtifactError, ValueError, OSError) as exc:
        raise CliError(str(exc)) from None
    try:
        impressions = read_mind_behaviors(behaviors)
    except (CorpusError, RecordError) as exc:
        raise CliError(str(exc)) from None
    config = RankingConfig()
    if history_half_life is not None:
        config = replace(config, history_half_life=history_half_life)
    if diversity is not None:
        config = replace(config, diversity=diversity)
    report = evaluate_foryou(loaded, impressions, config=config, seed=seed)
    if report["counts"]["usable"] == 0:
        raise CliError(
            f"{behaviors}: no impression has both a history article and a clicked article in"
            " the model's corpus; nothing to evaluate"
        )
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))
