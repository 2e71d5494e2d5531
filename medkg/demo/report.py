"""`OUT/index.html`: what the demo built and measured, as a page that opens from disk with no server.

Figures are PNG files in `OUT/figures/` drawn by matplotlib (headless Agg); overlays are the PNGs `medkg explain`
wrote, linked with the explain viewer. Every number on the page comes from the stages' records
(`stages.json`), the training runs' `metrics.csv` and the evaluations' `metrics.json`, so the page can always be
redrawn from them (`medkg demo --from report`).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from kg.atomic import atomic_open

from .pipeline import read_records

FIGURES = "figures"
COLOURS = {"medkg": "#c0392b", "clip": "#2c7fb8", "random": "#999999", "centre": "#666666", "prior": "#333333"}
TITLES = {"medkg": "medkg (knowledge-guided)", "clip": "CLIP baseline"}


def write_report(out: Path, machine: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    records = {name: r for name, r in read_records(out).items() if "key" in r}  # finished stages (this one runs)
    summaries = {name: r.get("summary", {}) for name, r in records.items()}
    evals = {m: _json(out / "eval" / m / "metrics.json") for m in ("medkg", "clip")}
    curves = {m: _curves(out / "runs" / m / "metrics.csv") for m in ("medkg", "clip")}
    (out / FIGURES).mkdir(exist_ok=True)
    figures = {
        "graph": _graph_figure(summaries.get("graph", {}), out),
        "extraction": _extraction_figure(summaries.get("extract", {}), out),
        "training": _training_figure(curves, out),
        "zero_shot": _zero_shot_figure(evals, out),
        "pointing": _pointing_figure(evals, out),
    }
    page = out / "index.html"
    with atomic_open(page, encoding="utf-8") as f:
        f.write(_page(records, summaries, evals, figures, machine, out))
    return page


# figures ---------------------------------------------------------------------------------------------------------


def _save(fig: Any, out: Path, name: str) -> str:
    import matplotlib.pyplot as plt

    relative = f"{FIGURES}/{name}.png"
    fig.tight_layout()
    fig.savefig(out / relative, dpi=110)
    plt.close(fig)
    return relative


def _graph_figure(summary: dict[str, Any], out: Path) -> str | None:
    import matplotlib.pyplot as plt

    sources = summary.get("sources") or {}
    counts = summary.get("counts") or {}
    if not sources:
        return None
    import numpy as np

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
    names = list(sources)
    y = np.arange(len(names))
    left.barh(y + 0.2, [sources[n][0] for n in names], 0.4, color="#2c7fb8", label="terms")
    left.barh(y - 0.2, [sources[n][1] for n in names], 0.4, color="#c0392b", label="relations")
    left.set_yticks(y, names)
    left.set_title("what each source contributed")
    left.legend(frameon=False)
    relations = {k: v for k, v in counts.items() if k not in ("Concept", "Report", "concepts")}
    if relations:
        kinds = sorted(relations, key=relations.get)
        right.barh(kinds, [relations[k] for k in kinds], color="#666666")
        right.set_xscale("log")
        right.set_title("relationships in the database (log scale)")
    else:
        right.axis("off")
    return _save(fig, out, "graph")


def _extraction_figure(summary: dict[str, Any], out: Path) -> str | None:
    import matplotlib.pyplot as plt

    top = summary.get("top_present") or []
    assertions = summary.get("assertions") or {}
    if not top and not assertions:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 2]})
    kinds = [k for k in ("present", "absent", "uncertain") if k in assertions]
    left.bar(kinds, [assertions[k] for k in kinds], color=["#c0392b", "#2c7fb8", "#e6a23c"][:len(kinds)])
    left.set_title("mentions by assertion")
    names = [t[0] for t in top][::-1]
    right.barh(names, [t[1] for t in top][::-1], color="#c0392b")
    right.set_title("findings most often present (reports)")
    return _save(fig, out, "extraction")


def _training_figure(curves: dict[str, dict[str, list[tuple[int, float]]]], out: Path) -> str | None:
    import matplotlib.pyplot as plt

    if not any(c.get("loss") for c in curves.values()):
        return None
    validated = any(c.get(k) for c in curves.values() for k in ("entity_mean_auc", "prompt_mean_auc"))
    fig, axes = plt.subplots(1, 2 if validated else 1, figsize=(10 if validated else 6, 3.4), squeeze=False)
    left, right = axes[0][0], axes[0][-1]
    for model, c in curves.items():
        if c.get("loss"):
            steps, values = zip(*c["loss"], strict=True)
            left.plot(steps, _smooth(list(values)), color=COLOURS[model], label=TITLES[model])
        for key, style in (("entity_mean_auc", "-"), ("prompt_mean_auc", "--")):
            if c.get(key):
                epochs, values = zip(*c[key], strict=True)
                right.plot([e + 1 for e in epochs], values, style, marker="o", color=COLOURS[model],
                           label=f"{TITLES[model]}, {key.split('_')[0]} score")
    left.set_xlabel("step")
    left.set_title("training loss (smoothed)")
    left.legend(frameon=False)
    if validated:
        right.set_xlabel("epoch")
        right.set_title("validation mean AUC (valid patients)")
        right.axhline(0.5, color="#999999", lw=0.8)
        right.legend(frameon=False, fontsize=8)
    return _save(fig, out, "training")


def _zero_shot_figure(evals: dict[str, dict[str, Any]], out: Path) -> str | None:
    import matplotlib.pyplot as plt
    import numpy as np

    blocks = {m: (e or {}).get("zero_shot") for m, e in evals.items()}
    labels = sorted({label for b in blocks.values() if b for label in b.get("auc", {})})
    if not labels:
        return None
    fig, ax = plt.subplots(figsize=(10, 3.6))
    x = np.arange(len(labels))
    width = 0.38
    for i, (model, block) in enumerate(blocks.items()):
        if not block:
            continue
        auc = np.array([block["auc"].get(label, np.nan) for label in labels])
        ci = np.array([block["auc_ci"].get(label, [np.nan, np.nan]) for label in labels])
        error = np.abs(np.stack([auc - ci[:, 0], ci[:, 1] - auc]))
        ax.bar(x + (i - 0.5) * width, auc, width, yerr=error, capsize=2, color=COLOURS[model],
               label=f"{TITLES[model]}: mean {block['mean_auc']:.3f}")
    ax.axhline(0.5, color="#999999", lw=0.8)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_title("zero-shot AUC on held-out patients, 95% bootstrap intervals")
    ax.legend(frameon=False)
    return _save(fig, out, "zero_shot")


def _pointing_figure(evals: dict[str, dict[str, Any]], out: Path) -> str | None:
    import matplotlib.pyplot as plt
    import numpy as np

    blocks = {m: (e or {}).get("localization") for m, e in evals.items() if (e or {}).get("localization")}
    if not blocks:
        return None
    labels = sorted({label for b in blocks.values() for label in b["pointing_game"]})
    fig, ax = plt.subplots(figsize=(10, 3.4))
    x = np.arange(len(labels))
    width = 0.38
    for i, (model, block) in enumerate(blocks.items()):
        ax.bar(x + (i - 0.5) * width, [block["pointing_game"].get(label, np.nan) for label in labels], width,
               color=COLOURS[model], label=f"{TITLES[model]}: mean {block['mean_pointing_game']:.3f}")
    first = next(iter(blocks.values()))
    for kind in ("random", "centre", "prior"):
        ax.axhline(first[f"{kind}_baseline"], color=COLOURS[kind], ls=":", lw=1.2,
                   label=f"{kind} point: {first[f'{kind}_baseline']:.3f}")
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_title("pointing game on expert boxes (held-out patients) against image-blind points")
    ax.legend(frameon=False, fontsize=8, ncol=2)
    return _save(fig, out, "pointing")


def _smooth(values: list[float], window: int = 10) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _curves(path: Path) -> dict[str, list[tuple[int, float]]]:
    from alignment.metrics import read_metrics

    curves: dict[str, list[tuple[int, float]]] = {}
    for row in read_metrics(path):
        if row["split"] == "train" and row["name"] == "loss":
            curves.setdefault("loss", []).append((row["step"], row["value"]))
        elif row["split"] == "valid":
            curves.setdefault(row["name"], []).append((row["epoch"], row["value"]))
    return curves


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


# page ------------------------------------------------------------------------------------------------------------


def _page(records: dict[str, Any], s: dict[str, Any], evals: dict[str, Any], figures: dict[str, str | None],
          machine: dict[str, Any], out: Path) -> str:
    e = html.escape
    parts = [HEAD, "<h1>medkg demo</h1>",
             f"<p class=lead>Built on {e(str(machine.get('date')))} on {e(_machine_line(machine))}. Every stage below "
             "ran (or was reused from an earlier run with the same inputs) with <code>medkg demo</code>.</p>"]
    parts.append(_table(["stage", "seconds", "finished"],
                        [[name, f"{r.get('seconds', 0):.0f}", r.get("finished", "")] for name, r in records.items()]
                        + ([] if "report" in records else [["report", "–", "this page"]])))

    g = s.get("graph", {})
    parts.append("<h2>1. The knowledge graph</h2>")
    if g:
        parts.append(f"<p>The open radiology graph: <b>{g.get('concepts', 0):,}</b> concepts and <b>{g.get('relations', 0):,}</b>"
                     f" relations from RadLex, MeSH, the Disease Ontology, the CheXpert phrases and the IU X-ray annotations, "
                     f"loaded into <code>{e(str(g.get('graph')))}</code>; query it with <code>medkg kg lookup</code>, "
                     "<code>neighbors</code>, <code>path</code> and <code>query</code>.</p>")
    parts.append(_figure(figures["graph"], "terms and relations per source; relationships by type"))

    x = s.get("extract", {})
    parts.append("<h2>2. Entities in the reports</h2>")
    if x:
        a = x.get("assertions", {})
        parts.append(f"<p>{x.get('reports', 0):,} IU X-ray reports gave {x.get('mentions', 0):,} concept mentions "
                     f"({', '.join(f'{v:,} {k}' for k, v in sorted(a.items()))}); {x.get('linked', 0):,} report–concept "
                     "links were stored in the graph as <code>(:Report)-[:MENTIONS]-&gt;(:Concept)</code>.</p>")
        prevalence = x.get("label_prevalence", {})
        if prevalence:
            parts.append(_table(["ChestX-ray14 label", "present", "absent", "uncertain"],
                                [[k, *v] for k, v in prevalence.items()]))
    parts.append(_figure(figures["extraction"], "assertions and the most frequent present findings"))

    m = s.get("embed", {})
    parts.append("<h2>3. Knowledge embedding</h2>")
    if m:
        test = m.get("test", {})
        ranked = (f"rank held-out graph edges with filtered MRR <b>{test['mrr']:.3f}</b> (Hits@10 {test['hits@10']:.3f})"
                  if test else "were not evaluated (<code>--quick</code>)")
        if test and m.get("structure"):
            ranked += (f", ranked together with the graph's structure scores (validation MRR {m['structure']['valid_mrr']:.3f}, "
                       f"<code>{e(str(m.get('kge_model')))}</code> alone {m['structure']['model_valid_mrr']:.3f})")
        models = " and ".join(f"<code>{e(str(name))}</code> ({n} epochs)" for name, n in m.get("kge_epochs", {}).items())
        parts.append(f"<p>The knowledge encoder was fine-tuned for {m.get('knowledge_steps')} steps on the graph's names, "
                     f"synonyms and relations. Concept embeddings, {models}, {ranked}; "
                     f"{m.get('vectors', 0):,} concept vectors of <code>{e(str(m.get('kge_model')))}</code> were exported "
                     "and stored on the concepts (<code>medkg kg similar</code>). The aligner's soft targets, prototypes "
                     "and entity queries read them.</p>")

    t = s.get("train", {})
    parts.append("<h2>4. Knowledge-guided alignment</h2>")
    if t:
        rows = [[TITLES.get(k, k), v.get("epochs"), v.get("steps"), f"{v.get('seconds', 0):.0f}",
                 f"{v.get('budget_minutes', 0):.1f}"] for k, v in t.items()]
        parts.append("<p>Both aligners train on NIH ChestX-ray14 images (labels only) and IU X-ray reports (no images), "
                     "drawn apart as MedCLIP does, split by patient. medkg adds soft targets from the graph, the KAD-style "
                     "entity decoder (present / absent / uncertain) and entity-anchored prototypes.</p>")
        parts.append(_table(["model", "epochs", "steps", "seconds", "budget (min)"], rows))
    parts.append(_figure(figures["training"], "training loss and validation AUC"))

    parts.append("<h2>5. Evaluation on held-out patients</h2>")
    parts.append(_evaluation_table(evals))
    parts.append(_figure(figures["zero_shot"], "zero-shot AUC per finding with 95% intervals"))
    parts.append(_figure(figures["pointing"], "pointing game per finding against the image-blind baselines"))
    parts.append(_overlays(s.get("evaluate", {}).get("explain"), out))
    parts.append("<p class=small>Figures are files in <code>figures/</code>; the numbers come from "
                 "<code>stages.json</code>, <code>runs/*/metrics.csv</code> and <code>eval/*/metrics.json</code>.</p>")
    parts.append(SCRIPT)
    return "\n".join(parts) + "\n</body></html>\n"


def _evaluation_table(evals: dict[str, Any]) -> str:
    rows = []
    for model, metrics in evals.items():
        if not metrics:
            continue
        z = metrics.get("zero_shot") or {}
        ci = (metrics.get("details", {}).get("zero_shot") or {}).get("mean_auc_ci", [float("nan")] * 2)
        loc = metrics.get("localization") or {}
        ret = metrics.get("retrieval") or {}
        probe = metrics.get("probe") or {}
        precision = ret.get("precision", {})
        rows.append([TITLES[model], f"{z.get('mean_auc', float('nan')):.3f} ({ci[0]:.3f}–{ci[1]:.3f})",
                     f"{loc.get('mean_pointing_game', float('nan')):.3f}",
                     ", ".join(f"{k} {v:.3f}" for k, v in precision.items()) or "–",
                     ", ".join(f"{k}: {v['mean_auc']:.3f}" for k, v in probe.items()) or "–"])
    baselines = next((m.get("localization") for m in evals.values() if m and m.get("localization")), None)
    note = ""
    if baselines:
        note = (f"<p class=small>Pointing-game baselines that never look at the image: random point "
                f"{baselines['random_baseline']:.3f}, image centre {baselines['centre_baseline']:.3f}, best fixed point "
                f"per finding from the training boxes {baselines['prior_baseline']:.3f}. Retrieval is the share of "
                "retrieved reports that share the image's labels.</p>")
        shared = {TITLES[model]: m["localization"].get("shared_peaks") for model, m in evals.items()
                  if m and m.get("localization")}
        if any(v is not None for v in shared.values()):
            note += ("<p class=small>Maps of two findings on one image that peak at the same region: "
                     + ", ".join(f"{name} {value:.0%}" for name, value in shared.items() if value is not None)
                     + " of pairs (100% is one map for every finding: it shows where the model looks, not where "
                     "each finding is).</p>")
    return _table(["model", "zero-shot mean AUC (95% CI)", "pointing game", "retrieval precision", "linear probe mean AUC"],
                  rows) + note


def _overlays(explained: dict[str, Any] | None, out: Path) -> str:
    e = html.escape
    if not explained:
        return ""
    viewer = explained["index"]
    manifest = _json(out / Path(viewer).parent / "explain.json")
    cells = []
    for image in manifest.get("images", []):
        for entity in image.get("entities", [])[:2]:
            src = f"{Path(viewer).parent.as_posix()}/{entity['overlay']}"
            cells.append(f"<figure class=overlay><img src='{e(src)}' alt='{e(entity['name'])}'>"
                         f"<figcaption>{e(image['name'])}: {e(entity['name'])}, P(present) {entity['score']:.2f}"
                         f"</figcaption></figure>")
    return (f"<h3>Entity attention</h3><p>Where the entity decoder looked, for held-out images with expert boxes. "
            f"<a href='{e(viewer)}'>Open the explain viewer</a> to browse every entity, toggle the overlays and read "
            "the report with each word shaded by its attention.</p><div class=grid>" + "".join(cells) + "</div>")


def _figure(src: str | None, caption: str) -> str:
    if src is None:
        return ""
    return f"<figure><img class=plot src='{html.escape(src)}' alt='{html.escape(caption)}'><figcaption>{html.escape(caption)}</figcaption></figure>"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _machine_line(machine: dict[str, Any]) -> str:
    device = machine.get("gpu") or f"{machine.get('cpus')} CPU cores"
    return f"{device}, torch {machine.get('torch')}, Python {machine.get('python')}"


HEAD = """<!doctype html><html lang=en><head><meta charset=utf-8><title>medkg demo</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;color:#222}
h1{margin-bottom:4px}h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
.lead{color:#555}.small{color:#666;font-size:13px}
table{border-collapse:collapse;margin:10px 0}th,td{border:1px solid #ddd;padding:4px 10px;text-align:left}
th{background:#f5f5f5}figure{margin:12px 0}img.plot{max-width:100%}figcaption{color:#666;font-size:13px}
.grid{display:flex;flex-wrap:wrap;gap:12px}.overlay img{width:250px;height:auto}
</style></head><body>"""

# The page reports, on <body data-figures="drawn/total">, how many of its images the browser decoded: the test
# that renders it in headless Chromium reads it.
SCRIPT = """<script>
(function(){const images=[...document.images];let drawn=0;
function mark(){document.body.dataset.figures=drawn+'/'+images.length}
images.forEach(img=>{const done=()=>{if(img.naturalWidth>0)drawn++;mark()};
if(img.complete)done();else{img.addEventListener('load',done);img.addEventListener('error',mark)}});mark();})();
</script>"""
