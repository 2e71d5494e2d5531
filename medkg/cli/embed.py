"""`medkg embed ...`: link-prediction training over the graph, evaluation, concept vectors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kg.problems import ProblemLog

from ..output import print_rows
from .common import json_opt, problems_footer, run_opt

DEFAULT_GRAPH = "default"
DEFAULT_MODEL = "text"  # the best measured on the open graph (docs/BENCHMARKS.md)
# What each model's preset (embed.presets) sets, for --help without importing torch; a test keeps them equal.
PRESET_HELP = {
    "lr": "0.01; text 0.001",
    "batch_size": "1024; text 512; GNN encoders 8192",
    "epochs": "40; text 8",
    "dim": "128; text: its text vectors' width",
}  # `--graph` without a URI: $MEDKG_GRAPH, else the embedded graph in $MEDKG_HOME


def embed_api():
    """Imported when a command runs: torch takes a second or two to import, other command groups need none of it."""
    from ..api import embed

    return embed


def cmd_train(args: argparse.Namespace) -> None:
    problems = ProblemLog(strict=args.strict)
    summary = embed_api().train(
        args.out, args.kg, args.graph, args.model, text_features=not args.no_text_features, text_encoder=args.text_encoder,
        progress=not args.quiet, problems=problems, epochs=args.epochs, dim=args.dim, lr=args.lr, batch_size=args.batch_size,
        eval_every=args.eval_every, device=args.device, seed=args.seed, structure=not args.no_structure,
    )
    print(summary)
    problems_footer(problems)


def cmd_eval(args: argparse.Namespace) -> None:
    metrics = embed_api().evaluate(args.run, args.part, device=args.device or "", progress=not args.quiet and not args.json,
                                   structure=not args.model_only)
    if args.json:
        print(json.dumps(metrics))
        return
    print(f"{args.part}: {metrics['count']:,} queries (head and tail), filtered")
    ensemble = None if args.model_only else embed_api().read_ensemble(args.run)
    if ensemble:
        print("ranked by the model with the graph's structure: " + ", ".join(f"{name} {w:g}" for name, w in ensemble["weights"].items())
              + " (weights fitted on valid; --model-only for the model alone)")
        if ensemble.get("never_self"):
            print("a concept is never its own answer for " + ", ".join(ensemble["never_self"]) + " (no self-loop in training)")
    print(f"MRR {metrics['mrr']:.4f}  Hits@1 {metrics['hits@1']:.4f}  Hits@3 {metrics['hits@3']:.4f}  Hits@10 {metrics['hits@10']:.4f}")
    width = max(len(name) for name in metrics["per_relation"])
    print(f"\n{'relation'.ljust(width)}  queries     MRR  Hits@1  Hits@10")
    for name, m in sorted(metrics["per_relation"].items(), key=lambda item: -item[1]["count"]):
        print(f"{name.ljust(width)}  {m['count']:7,}  {m['mrr']:.4f}  {m['hits@1']:.4f}  {m['hits@10']:.4f}")


def cmd_combine(args: argparse.Namespace) -> None:
    fit = embed_api().combine(args.run, args.others, args.device or "", progress=not args.quiet)
    width = max(len(name) for name in fit.weights)
    print(f"{'component'.ljust(width)}  weight  valid MRR alone")
    for name, weight in fit.weights.items():
        print(f"{name.ljust(width)}  {weight:6g}  {fit.alone[name]:.4f}")
    print(f"combined: valid MRR {fit.mrr:.4f}; `medkg embed eval {args.run}` ranks with it")


def cmd_export(args: argparse.Namespace) -> None:
    graph = None if args.graph in (None, DEFAULT_GRAPH) else args.graph
    print(embed_api().export(args.run, args.out, graph, args.device or "", store=args.graph is not None))


def cmd_knowledge(args: argparse.Namespace) -> None:
    problems = ProblemLog(strict=args.strict)
    print(embed_api().train_knowledge(
        args.out, args.kg, args.graph, progress=not args.quiet, problems=problems, steps=args.steps, batch_size=args.batch_size,
        lr=args.lr, encoder=str(args.encoder) if args.encoder else None, relations=tuple(args.relations) if args.relations else None,
        device=args.device or None, seed=args.seed, held_out=tuple(args.held_out) if args.held_out else None,
        max_length=args.max_length,
    ))
    problems_footer(problems)


def cmd_text(args: argparse.Namespace) -> None:
    matches = embed_api().nearest_concepts(args.text, args.kg, args.graph, args.encoder, args.limit, progress=not args.quiet)
    print_rows(matches, args.json, None if args.json else ["text", "similarity", "id", "name"])


def optimizer_options(lr: str, batch_size: str) -> argparse.ArgumentParser:
    """--lr, --batch-size and --seed, their defaults named in the help."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--lr", type=float, help=f"learning rate (default: {lr})")
    options.add_argument("--batch-size", type=int, help=f"batch size (default: {batch_size})")
    options.add_argument("--seed", type=int, help="seed of data order, initialisation and sampling (default: 0)")
    return options


def register(commands: argparse._SubParsersAction) -> None:
    embed = commands.add_parser("embed", help="knowledge embedding: train, evaluate and export concept vectors").add_subparsers(dest="command", required=True)
    device_opt = argparse.ArgumentParser(add_help=False)
    device_opt.add_argument("--device", default="", help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")

    source = argparse.ArgumentParser(add_help=False)
    source.add_argument("--kg", type=Path, metavar="DIR", help="RRF directory written by `medkg kg build`")
    source.add_argument("--graph", metavar="URI", help="read the graph from this database instead (embedded://PATH or a Neo4j URI)")
    optimizer = optimizer_options(PRESET_HELP["lr"], PRESET_HELP["batch_size"])

    p = embed.add_parser("train", parents=[source, optimizer, run_opt, device_opt],
                         help="train a link-prediction model (resumes an interrupted run)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"transe, distmult, rotate, complex, text (the text predictor), or a head behind a GNN encoder: "
                        f"rgcn-distmult, film-rotate, ... (default: {DEFAULT_MODEL})")
    p.add_argument("--out", type=Path, required=True, metavar="RUN", help="run directory: data, checkpoint, metrics.jsonl")
    p.add_argument("--epochs", type=int, help="epochs in all, a resumed run included (default: " + PRESET_HELP["epochs"] + ")")
    p.add_argument("--dim", type=int, help="embedding width (default: " + PRESET_HELP["dim"] + ")")
    p.add_argument("--eval-every", type=int, help="validation MRR every N epochs (logged to metrics.jsonl)")
    p.add_argument("--no-text-features", action="store_true", help="learned entity vectors only, no text of names and definitions")
    p.add_argument("--text-encoder", type=Path, metavar="DIR", help="transformers model directory for concept text (default: bundled MiniLM)")
    p.add_argument("--no-structure", action="store_true",
                   help="do not combine the model with the graph's structure scores (weights fitted on valid) after training")
    p.set_defaults(func=cmd_train)

    p = embed.add_parser("eval", parents=[device_opt, run_opt], help="filtered MRR and Hits@1/3/10, overall and per relation")
    p.add_argument("run", type=Path)
    p.add_argument("--part", choices=["test", "valid"], default="test")
    p.add_argument("--json", action="store_true", help='print {"mrr": ..., "hits@1": ..., "per_relation": {...}}')
    p.add_argument("--model-only", action="store_true", help="rank with the model alone, not its ensemble with the graph's structure")
    p.set_defaults(func=cmd_eval)

    p = embed.add_parser("combine", parents=[device_opt, run_opt],
                         help="(re)fit a run's ensemble with the graph's structure scores and other runs' models, on valid")
    p.add_argument("run", type=Path)
    p.add_argument("--with", dest="others", type=Path, nargs="*", default=[], metavar="RUN",
                   help="other runs made from the same graph and split (e.g. a RotatE run beside a text run)")
    p.set_defaults(func=cmd_combine)

    p = embed.add_parser("export", parents=[device_opt], help="concept vectors as safetensors plus the id map; --graph stores them on concepts")
    p.add_argument("run", type=Path)
    p.add_argument("--out", type=Path, help="output directory (default: the run directory)")
    p.add_argument("--graph", metavar="URI", nargs="?", const=DEFAULT_GRAPH,
                   help="also store the vectors on the concepts of this graph database (alone, after RUN: the default one)")
    p.set_defaults(func=cmd_export)

    p = embed.add_parser("knowledge", parents=[source, optimizer_options("2e-5", "64"), run_opt, device_opt],
                         help="fine-tune a text encoder on the graph (KAD style): names, synonyms, definitions, relations")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="run directory; the finished encoder is saved there")
    p.add_argument("--steps", type=int, help="optimisation steps in all, a resumed run included (default: 2000)")
    p.add_argument("--encoder", type=Path, metavar="DIR", help="text encoder to start from (default: bundled MiniLM)")
    p.add_argument("--relations", nargs="+", metavar="TYPE", help="relation types that give pairs (default: IS_A LOCATED_AT)")
    p.add_argument("--max-length", type=int, metavar="TOKENS",
                   help="tokens per text; longer definitions are cut (default: 64)")
    p.add_argument("--held-out", nargs=2, type=float, metavar=("VALID", "TEST"),
                   help="leave out the valid and test edges of `medkg embed train`'s split with the same --seed, so that "
                        "link prediction over this encoder's features is measured on edges it never saw (default: 0.1 0.1, "
                        "embed train's split; 0 0 trains on every edge)")
    p.set_defaults(func=cmd_knowledge)

    p = embed.add_parser("text", parents=[source, json_opt, run_opt], help="concepts nearest to free text (prompts, report phrases)")
    p.add_argument("text", nargs="+")
    p.add_argument("--encoder", type=Path, metavar="DIR", help="a knowledge encoder directory (default: bundled MiniLM)")
    p.add_argument("--limit", type=int, default=5, help="concepts per text")
    p.set_defaults(func=cmd_text)
