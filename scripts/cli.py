"""The ``recs`` command line: the group, ``train``, ``related`` and ``similarity``.

The other commands live in one module each (scripts/*_cmd.py) and are registered here; none of
them imports this module, so there is no import cycle.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from models.pair_score import ListScorer
from scripts.common import CliError
from scripts.evaluate_cmd import evaluate
from scripts.foryou_eval_cmd import evaluate_foryou_cmd
from scripts.import_cmd import import_group
from scripts.options import (
    articles_option,
    cluster_options,
    config_file_option,
    json_option,
    keep_pools_option,
    model_option,
    on_error_option,
    tag_aliases_option,
)
from scripts.publish_cmd import (
    publish_after_train,
    publish_command,
    rollback_command,
    versions_command,
)
from scripts.retrain_cmd import retrain_command
from scripts.rules_cmd import rules_group
from scripts.serve_cmd import serve
from scripts.sign_user_cmd import sign_user
from scripts.training import Placement, build_config, open_model, parse_as_of, train_model
from scripts.update_cmd import delete_command, upsert_command
from scripts.worker_cmd import worker_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="related-stories")
def cli() -> None:
    """related-stories: related articles and recommendations for news sites."""


for _command in [
    import_group,
    serve,
    evaluate,
    evaluate_foryou_cmd,
    sign_user,
    publish_command,
    rollback_command,
    versions_command,
    retrain_command,
    upsert_command,
    delete_command,
    worker_command,
    rules_group,
]:
    cli.add_command(_command)


@cli.command()
@articles_option("Article file (.jsonl or .csv); repeat for several.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Model directory.")
@click.option(
    "--k", type=click.IntRange(1, 1000), default=None, help="Neighbours per article [50]."
)
@click.option("--alpha", type=click.FloatRange(0, 1), default=None, help="Text share of the blend.")
@click.option(
    "--min-score", type=click.FloatRange(0, 1), default=None, help="Drop weaker neighbours."
)
@config_file_option
@tag_aliases_option
@on_error_option("Bad records: stop (exit 2) or skip and count them.")
@click.option(
    "--publish",
    "publish_url",
    metavar="URL",
    default=None,
    help="Then publish the model to this Redis (no env default: never publishes by accident).",
)
@click.option(
    "--as-of",
    "as_of",
    metavar="ISO",
    default=None,
    help="When the input was exported (UTC if no offset) [earliest mtime of the files]:"
    " updates queued since then are replayed onto this model when it is published.",
)
@cluster_options
@keep_pools_option
@json_option("Print the summary as JSON.")
def train(
    article_files: tuple[Path, ...],
    out: Path,
    k: int | None,
    alpha: float | None,
    min_score: float | None,
    config_file: Path | None,
    tag_aliases: Path | None,
    on_error: str,
    publish_url: str | None,
    as_of: str | None,
    cluster_address: str | None,
    local_workers: int | None,
    block_rows: int | None,
    keep_pools: bool,
    as_json: bool,
) -> None:
    """Train a model on article files and write it to a model directory."""
    config = build_config(config_file, tag_aliases, k=k, alpha=alpha, min_score=min_score)
    placement = Placement(cluster_address, local_workers, block_rows)
    loaded, summary = train_model(
        article_files,
        out,
        config,
        on_error,
        as_of=parse_as_of(as_of) if as_of else None,
        placement=placement,
        keep_pools=keep_pools,
    )
    if as_json:
        if publish_url:
            summary["published"] = publish_after_train(loaded, publish_url, echo=False).version
        click.echo(json.dumps(summary))
        return
    click.echo(
        f"trained {summary['version']}: {summary['articles']:,} articles"
        f" ({summary['skipped']:,} skipped), vocabulary {summary['vocabulary']:,},"
        f" {summary['tags']:,} tags on {summary['articles_with_tags']:,} articles,"
        f" coverage@{summary['k']} {float(summary['coverage']):.1%}"  # type: ignore[arg-type]
        f" in {summary['seconds']} s -> {out}"
    )
    if publish_url:
        publish_after_train(loaded, publish_url)


@cli.command()
@click.argument("ids", nargs=-1)
@model_option
@click.option("--k", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--all", "all_ids", is_flag=True, help="Every article in the model.")
@json_option("One JSON line per article.")
def related(ids: tuple[str, ...], model_dir: Path, k: int, all_ids: bool, as_json: bool) -> None:
    """Print the neighbours of articles."""
    if not ids and not all_ids:
        raise CliError("give one or more article ids, or --all")
    if ids and all_ids:
        raise CliError("give article ids or --all, not both")
    loaded = open_model(model_dir)
    model = loaded.model
    wanted = model.ids_ if all_ids else list(ids)
    unknown = [i for i in wanted if i not in model.index_]
    if unknown:
        raise CliError(f"unknown article id(s): {', '.join(unknown[:10])}")
    titles = {a.id: a.title for a in loaded.articles}
    out = sys.stdout
    for article_id in wanted:
        neighbours = model.neighbours(article_id, k)
        if as_json:
            record = {
                "id": article_id,
                "neighbours": [{"id": n, "score": round(s, 6)} for n, s in neighbours],
            }
            out.write(json.dumps(record) + "\n")
            continue
        out.write(f"{article_id}  {titles[article_id][:90]}\n")
        if not neighbours:
            out.write("    (no neighbours)\n")
        for rank, (neighbour, score) in enumerate(neighbours, start=1):
            out.write(f"  {rank:>3}. {score:.4f}  {neighbour}  {titles[neighbour][:70]}\n")


@cli.command()
@click.argument("ids", nargs=-1)
@model_option
@click.option(
    "--pairs", type=click.Path(path_type=Path), help="TSV of id pairs; prints one line per pair."
)
@click.option("--explain", is_flag=True, help="Show the score's parts, shared tags, top terms.")
@json_option("Print JSON.")
def similarity(
    ids: tuple[str, ...], model_dir: Path, pairs: Path | None, explain: bool, as_json: bool
) -> None:
    """The score B has in A's neighbour list (re-ranked when the model re-ranks), for any two
    articles (or every pair in --pairs: A, B, blended, score)."""
    if pairs is None and len(ids) != 2:
        raise CliError("give exactly two article ids, or --pairs FILE.tsv")
    if pairs is not None and ids:
        raise CliError("give two article ids or --pairs, not both")
    model = open_model(model_dir).model
    scorer = ListScorer(model)
    if pairs is not None:
        for line_number, (id_a, id_b) in _read_pairs(pairs, model.index_):
            try:
                score = scorer.score(id_a, id_b)
            except KeyError as exc:
                raise CliError(f"{pairs}:{line_number}: {exc.args[0]}") from None
            click.echo(f"{id_a}\t{id_b}\t{score.blended:.6f}\t{score.score:.6f}")
        return
    id_a, id_b = ids
    try:
        score = scorer.score(id_a, id_b)
    except KeyError as exc:
        raise CliError(str(exc.args[0])) from None
    explanation = model.explain(id_a, id_b, n_terms=10) if explain else None
    if as_json:
        latent = None if score.latent is None else round(score.latent, 6)
        record: dict[str, object] = {
            "a": id_a,
            "b": id_b,
            "score": round(score.score, 6),
            "blended": round(score.blended, 6),
            "text": round(score.text, 6),
            "tags": round(score.tags, 6),
            "latent": latent,
            "rerank_weight": score.rerank_weight,
        }
        if explanation is not None:
            record["shared_tags"] = [
                {"tag": t, "weight": round(w, 6)} for t, w in explanation.shared_tags
            ]
            record["top_terms"] = [
                {"term": t, "weight": round(w, 6)} for t, w in explanation.top_terms
            ]
        click.echo(json.dumps(record))
        return
    click.echo(f"score {score.score:.6f}")
    if explanation is not None:
        click.echo(f"blended {score.blended:.6f}  text {score.text:.6f}  tags {score.tags:.6f}")
        if score.latent is None:
            click.echo("latent -  (no re-ranking: the score is the blended score)")
        else:
            weight = score.rerank_weight
            click.echo(
                f"latent {score.latent:.6f}  "
                f"(score = {1 - weight:g} x blended + {weight:g} x latent)"
            )
        shared = ", ".join(f"{t} ({w:.3f})" for t, w in explanation.shared_tags) or "none"
        terms = ", ".join(f"{t} ({w:.3f})" for t, w in explanation.top_terms) or "none"
        click.echo(f"shared tags: {shared}")
        click.echo(f"top terms:   {terms}")


def _read_pairs(path: Path, known: dict[str, int]) -> list[tuple[int, tuple[str, str]]]:
    """Read a TSV of id pairs, failing on the first malformed line with its number."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise CliError(f"{path}: not valid UTF-8 ({exc.reason})") from None
    except OSError as exc:
        raise CliError(f"{path}: cannot read ({exc.strerror or exc})") from None
    out = []
    # Split on "\n" only: splitlines() also splits at form feeds and U+2028, which would put
    # the reported line numbers off from an editor's.
    for number, raw_line in enumerate(text.split("\n"), start=1):
        line = raw_line.removesuffix("\r")
        if not line.strip() or line.startswith("#"):
            continue
        cells = line.split("\t")
        if len(cells) < 2:
            raise CliError(f"{path}:{number}: expected two tab-separated ids, got {line[:60]!r}")
        for cell in cells[:2]:
            if cell not in known:
                raise CliError(f"{path}:{number}: unknown article id {cell[:60]!r}")
        out.append((number, (cells[0], cells[1])))
    return out


def main() -> None:
    """Entry point of the ``recs`` script."""
    cli(prog_name="recs")


if __name__ == "__main__":  # python -m scripts.cli, where no recs script is installed
    main()
