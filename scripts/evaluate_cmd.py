"""``recs evaluate``: offline quality of a model on Reuters TOPICS or MIND co-reads."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from models.artifact import ArtifactError, LoadedModel, load_model
from models.config import ModelConfig
from models.evaluation import Protocol, compare_alphas, evaluate_model, has_topics
from models.importers import Impression, read_mind_behaviors
from models.records import Article, CorpusError, RecordError, read_articles
from scripts.common import CliError
from scripts.options import json_option, model_option

# The alphas --compare refits besides the model's own: text-only, tags-only, shipped default.
COMPARE_ALPHAS = (1.0, 0.0, ModelConfig().alpha)


def _open_model(path: Path) -> LoadedModel:
    """Load a model directory or fail with a clear message."""
    try:
        return load_model(path)
    except (ArtifactError, ValueError, OSError) as exc:
        raise CliError(str(exc)) from None


def _read_truth(path: Path | None, loaded: LoadedModel) -> list[Article]:
    """The articles carrying the ground truth: the file given, else the model's own."""
    if path is None:
        return loaded.articles
    try:
        articles = read_articles([path]).articles
    except (CorpusError, RecordError) as exc:
        raise CliError(str(exc)) from None
    known = {article.id for article in articles}
    missing = sum(1 for article_id in loaded.model.ids_ if article_id not in known)
    if missing == len(loaded.model.ids_):
        raise CliError(f"{path}: none of the model's {missing:,} articles is in this file")
    if missing:
        click.echo(
            f"note: {missing:,} of the model's {len(loaded.model.ids_):,} articles are not in"
            f" {path}; they have no ground truth and count as not relevant",
            err=True,
        )
    return articles


def _read_behaviors(path: Path) -> list[Impression]:
    try:
        return read_mind_behaviors(path)
    except (CorpusError, RecordError) as exc:
        raise CliError(str(exc)) from None


def _parse_alphas(text: str) -> list[float]:
    """Parse ``--alphas``: comma-separated numbers in [0, 1], duplicates dropped."""
    values = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise CliError(f"--alphas: {part.strip()!r} is not a number") from None
        if not 0.0 <= value <= 1.0:
            raise CliError(f"--alphas: {value:g} is not in [0, 1]")
        values.append(value)
    return list(dict.fromkeys(values))


def _resolve_protocol(
    protocol: str, articles: Sequence[Article], behaviors: Path | None
) -> Protocol:
    """``auto``: reuters when the articles carry TOPICS, mind when a behaviors file is given."""
    if protocol == "reuters":
        if not has_topics(articles):
            raise CliError(
                "the reuters protocol needs articles with TOPICS (a 'topics' field);"
                " import them with 'recs import reuters'"
            )
        return "reuters"
    if protocol == "mind":
        if behaviors is None:
            raise CliError("the mind protocol needs --behaviors FILE (MIND behaviors.tsv)")
        return "mind"
    topics = has_topics(articles)
    if topics and behaviors is not None:
        raise CliError(
            "the articles carry TOPICS and --behaviors is given: choose --protocol reuters or mind"
        )
    if topics:
        return "reuters"
    if behaviors is not None:
        return "mind"
    raise CliError(
        "no ground truth: the articles carry no TOPICS and no --behaviors FILE was given"
    )


def _format_table(protocol: Protocol, rows: list[dict[str, Any]], k: int) -> str:
    first = rows[0]
    if protocol == "reuters":
        lines = [
            f"Topical precision (Reuters TOPICS): {first['queries']:,} queries with TOPICS"
            f" among {first['articles']:,} articles, k={k}"
        ]
        header: tuple[str, ...] = (
            "row",
            "alpha",
            "smooth",
            "P@5",
            f"P@{k}",
            f"nDCG@{k}",
            f"cov@{k}",
        )
        table: list[tuple[str, ...]] = [
            (
                row["label"],
                f"{row['alpha']:.2f}",
                f"{row['tag_smoothing']:g}",
                "-" if row["precision_at_5"] is None else f"{row['precision_at_5']:.4f}",
                f"{row['precision_at_k']:.4f}",
                f"{row['ndcg_at_k']:.4f}",
                f"{row['coverage']:.1%}",
            )
            for row in rows
        ]
    else:
        lines = [
            f"Reader relatedness (MIND co-reads): {first['queries']:,} queries,"
            f" {first['relevant_pairs']:,} article pairs read by >= 2 of"
            f" {first['readers']:,} readers; {first['history_refs_resolved']:,} of"
            f" {first['history_refs']:,} history references are in the {first['articles']:,}"
            f" articles; k={k}"
        ]
        header = ("row", "alpha", "smooth", f"hit@{k}", f"nDCG@{k}", f"cov@{k}")
        table = [
            (
                row["label"],
                "-" if row["alpha"] is None else f"{row['alpha']:.2f}",
                "-" if row["tag_smoothing"] is None else f"{row['tag_smoothing']:g}",
                f"{row['hit_rate']:.4f}",
                f"{row['ndcg_at_k']:.4f}",
                "-" if row["coverage"] is None else f"{row['coverage']:.1%}",
            )
            for row in rows
        ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *table, strict=True)]
    for cells in (header, *table):
        lines.append(
            "  ".join(
                str(cell).ljust(width) if i == 0 else str(cell).rjust(width)
                for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
            ).rstrip()
        )
    return "\n".join(lines)


def _baseline_row(row: dict[str, Any]) -> dict[str, Any]:
    base = row["baseline"]
    return {
        "label": base["name"],
        "alpha": None,
        "tag_smoothing": None,
        "hit_rate": base["hit_rate"],
        "ndcg_at_k": base["ndcg_at_k"],
        "precision_at_k": base["precision_at_k"],
        "coverage": None,
    }


@click.command()
@click.option(
    "--articles",
    "articles_file",
    type=click.Path(path_type=Path),
    help="Article file carrying the ground truth (default: the model's own articles).",
)
@model_option
@click.option(
    "--protocol",
    type=click.Choice(["auto", "reuters", "mind"]),
    default="auto",
    show_default=True,
    help="reuters: shared TOPICS; mind: co-read by >= 2 readers; auto: pick from the input.",
)
@click.option(
    "--behaviors",
    type=click.Path(path_type=Path),
    help="MIND behaviors.tsv (reading histories) for the mind protocol.",
)
@click.option("--k", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option(
    "--compare",
    is_flag=True,
    help="Also refit the model's articles with alpha 1 (text-only), 0 (tags-only) and the"
    " default alpha, and report them in the same table.",
)
@click.option(
    "--alphas",
    help="Comma-separated alphas to refit and report instead of --compare's (e.g. 1,0.9,0.8).",
)
@json_option("Print the results as one JSON object.")
def evaluate(
    articles_file: Path | None,
    model_dir: Path,
    protocol: str,
    behaviors: Path | None,
    k: int,
    compare: bool,
    alphas: str | None,
    as_json: bool,
) -> None:
    """Measure a model's related-article quality against a real ground truth."""
    refit = _parse_alphas(alphas) if alphas is not None else None
    loaded = _open_model(model_dir)
    model = loaded.model
    stored = int(model.neighbours_.shape[1])
    if k > stored:
        raise CliError(f"the model stores {stored} neighbours per article; use --k <= {stored}")
    articles = _read_truth(articles_file, loaded)
    chosen = _resolve_protocol(protocol, articles, behaviors)
    impressions = _read_behaviors(behaviors) if chosen == "mind" and behaviors else None
    config = model.cfg
    try:
        metrics = evaluate_model(model, articles, chosen, impressions=impressions, k=k)
        rows: list[dict[str, Any]] = [
            {
                "label": "model",
                "alpha": config.alpha,
                "tag_smoothing": config.tag_smoothing,
                **metrics,
            }
        ]
        if refit is None and compare:
            # The model row already shows its own alpha: refitting it would repeat that row.
            refit = [a for a in dict.fromkeys(COMPARE_ALPHAS) if a != config.alpha]
        if refit:
            listed = ", ".join(f"{a:g}" for a in refit)
            click.echo(f"refitting {len(loaded.articles):,} articles, alpha {listed}", err=True)
            refits = compare_alphas(
                loaded.articles,
                config,
                refit,
                chosen,
                impressions=impressions,
                k=k,
                truth=articles,
            )
            for row in refits:
                if row["alpha"] == ModelConfig().alpha and row["label"] == "blend":
                    row["label"] = "default"
            rows.extend(refits)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if chosen == "mind":
        rows.append(_baseline_row(rows[0]))
    if as_json:
        out = {
            "protocol": chosen,
            "k": k,
            "model": str(model_dir),
            "version": loaded.version,
            "rows": rows,
        }
        click.echo(json.dumps(out))
        return
    sys.stdout.write(_format_table(chosen, rows, k) + "\n")
    if chosen == "mind":
        sys.stdout.write(
            "most-popular recommends the most-read articles; it is not a related-articles model\n"
        )
