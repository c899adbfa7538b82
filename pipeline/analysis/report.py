"""The report: JSON for machines, Markdown for the people who decide whether a model ships."""

from __future__ import annotations

from typing import Any

from pipeline.analysis.markdown import integer, pct, size_text, table
from pipeline.measurement import FIGURES, figure
from pipeline.plugins import stages, targets


def render_markdown(report: dict[str, Any]) -> str:
    out = [f"# {report['recipe']} — run {report['run_id']}", ""]
    verdict = "**PASSED**" if report["ok"] else "**FAILED**"
    failed = [b for b in report["budgets"] if not b["ok"]]
    out.append(f"Budgets: {verdict}" + (f" ({len(failed)} violated)" if failed else "") + ".")
    out.append("")
    for b in failed:
        out.append(f"- ✗ {b['message']}")
    if failed:
        out.append("")
    for warning in report.get("warnings", []):
        out += [f"> **Warning:** {warning}", ""]

    data = report["data"]
    out += [
        "## Data",
        "",
        f"Source: **{data['source']}** (`{data['root']}`); input {' × '.join(map(str, data['input_shape']))}; "
        f"{len(data['labels'])} classes: {', '.join(data['labels'])}.",
        "",
        table(
            ["split", "clips", "voices"],
            [[s, integer(data["clips"][s]), integer(data["voices"][s])] for s in ("train", "val", "test")],
        ),
        "",
    ]
    if report.get("trained_from"):
        out += ["## What trained the model", "", table(["", "from"], [[t["what"], t["source"]] for t in
                report["trained_from"]]), ""]  # fmt: skip
    if data["source"] == "synthetic":
        out += ["Test voices are never heard in training or validation, but the synthetic test says nothing about "
                "people: see the field tests.", ""]  # fmt: skip

    out += ["## Stages", ""]
    rows = []
    for s in report["stages"]:
        rows.append(
            [
                s["name"],
                pct(s.get("accuracy")),
                integer(s.get("params")),
                integer(s.get("macs")),
                size_text(s.get("bytes")),
                f"{s['seconds']:.1f} s" + (" (cached)" if s["cached"] else ""),
                s.get("runtime", ""),
            ]
        )
    out += [table(["stage", "test accuracy", "params", "MACs", "size", "time", "evaluated on"], rows), ""]

    for entry in report["stages"]:  # a stage's own section (pruning: what was removed, what it cost)
        plugin = stages().get(entry["name"])
        if plugin is not None and hasattr(plugin, "report"):
            out += plugin.report(report)
    out += _field_tests(report.get("field_tests"))

    if report["targets"]:
        out += ["## Targets", ""]
        rows = []
        for t in report["targets"]:
            lat = t["latency_ms"]
            rows.append(
                [
                    t["name"],
                    size_text(t["flash_bytes"]) + _kind(t, "flash"),
                    size_text(t["ram_bytes"]) + _kind(t, "ram"),
                    (
                        f"{lat['median']:.3f} / {lat['p90']:.3f} ms ({lat['runs']} runs)"
                        if lat["runs"]
                        else f"{lat['median']:.3f} ms"
                    )
                    + _kind(t, "latency"),  # runs 0: a single predicted figure
                    pct(t["accuracy"]),
                    lat["runtime"],
                    t.get("measured_at", "–") + (" (replayed from cache)" if t["cached"] else ""),
                ]
            )
        header = ["target", "flash", "RAM", "latency median / p90", "accuracy on target", "runtime", "measured"]
        out += [table(header, rows), ""]
        if any(_kind(t, name) for t in report["targets"] for name in FIGURES):
            out += [
                "*estimate*: not measured on the device class the figure describes (the target's notes say how it "
                "was obtained); budgets gate on estimates only where the recipe says `allow_estimates: true`.",
                "",
            ]
        if any(t["cached"] for t in report["targets"]):
            out += [
                "Replayed measurements were taken at the time shown; `pipeline run --remeasure` takes them again.",
                "",
            ]
        for t in report["targets"]:
            out += _target_notes(t)

    out += _streaming(report.get("streaming"))

    if report["budgets"]:
        out += ["## Budgets", ""]
        rows = [
            [b["name"], ("≥ " if b["floor"] else "≤ ") + f"{b['limit']:.4g} {b['unit']}", f"{b['actual']:.4g} {b['unit']}" + (" *estimate*" if b.get("estimate") else ""),
             "✓" if b["ok"] else "✗"]
            for b in report["budgets"]
        ]  # fmt: skip
        out += [table(["budget", "limit", "actual", "ok"], rows), ""]

    out += _explain(report.get("explain"))
    out += _per_voice(report)
    out += _per_class(report)
    out += ["## Versions", "", ", ".join(f"{k} {v}" for k, v in report["versions"].items()), ""]
    return "\n".join(out)


def _streaming(result: dict[str, Any] | None) -> list[str]:
    if not result:
        return []
    cfg = result["settings"]
    out = [
        "## Listening continuously",
        "",
        f"The model runs every {cfg['stride_ms']:g} ms on the last clip; the scores of the last {cfg['smoothing']} "
        f"runs are averaged; a keyword fires at its threshold and nothing fires for {cfg['suppression_ms']:g} ms "
        f"after. Thresholds are chosen per keyword on the synthetic validation stream for at most "
        f"{cfg['target_fa_per_hour']:g} false accepts per hour, on each runtime's own scores, never on field sets.",
        "",
        table(["stream", "hours", "keywords", "keyword-free hours", "other words"],
              [[s["name"], f"{s['hours']:.2f}", integer(s["keywords"]), f"{s['keyword_free_hours']:.2f}",
                integer(s["other_words"])] for s in result["calibration_streams"] + result["streams"]]),
        "",
    ]  # fmt: skip
    names = [s["name"] for s in result["streams"]]
    rows = []
    for row in result["models"]:
        cells = [row["model"], row["runtime"]]
        for name in names:
            r = row["sets"][name]
            cells.append("–" if r["miss_rate"] is None else f"{pct(r['miss_rate'])} / {r['fa_per_hour']:.2f}")
        cal = row["calibration"]
        cells.append(f"{cal['fa_per_hour']:.2f}" + ("" if cal["met"] else " (target not met)"))
        rows.append(cells)
    out += [table(["model", "runtime", *[f"{n}: missed / FA per h" for n in names], "FA/h when chosen"], rows), ""]
    negative = sum(st["keyword_free_hours"] for st in result["calibration_streams"])
    if negative and negative < 3 / cfg["target_fa_per_hour"]:
        target = cfg["target_fa_per_hour"]
        out += [f"Even zero false accepts in {negative:.1f} h of keyword-free validation audio only bound the "
                f"rate below {3 / negative:.1f} per hour (95 %, rule of three), not below {target:g}: that takes "
                f"{3 / target:.0f} h (`streaming.negative_minutes`). Read the test stream's figure, not the one when "
                "chosen.", ""]  # fmt: skip
    if result.get("plot"):
        out += [f"![detection error trade-off](streaming/{result['plot']})", ""]
    thresholds = [[row["model"], *[f"{t:.2f}" for t in row["thresholds"].values()]] for row in result["models"]]
    if thresholds:
        out += [table(["thresholds", *result["models"][0]["thresholds"]], thresholds), ""]
    out += _stream_cost(result.get("cost"))
    return out


def _stream_cost(cost: dict[str, Any] | None) -> list[str]:
    """What listening costs: each target's core at the stride, the firmware on the emulated board, the front end."""
    if not cost:
        return []
    out = [f"**Cost**: {cost['invokes_per_second']:g} model runs per second."]
    for t in cost.get("targets", []):
        verdict = "" if t["duty"] < 1 else ": **it cannot keep up at this stride**"
        out.append(f"- {t['target']}: {t['latency_ms']:.2f} ms per run ({t['latency_kind']}) keeps the core "
                   f"{t['duty']:.0%} busy{verdict}")  # fmt: skip
    board = cost.get("board")
    if board:
        same = ("the same detections as the pipeline's detector" if board["same_detections"]
                else "**other detections than the pipeline's detector**")  # fmt: skip
        out.append(f"- tflm firmware on the emulated {board['board']}, listening to {board['seconds']:.0f} s of "
                   f"stream: {integer(int(board['instructions_per_run']))} instructions per run (new frames, "
                   f"invoke, decision) = {board['latency_ms_per_run']:.1f} ms (estimate), {board['duty']:.0%} busy; "
                   f"{len(board['detections'])} detections, {same}")  # fmt: skip
        if board.get("frontend_ratio"):
            out.append(f"- on that core, the front end's {integer(int(board['frontend_window_instructions']))} "
                       f"instructions for a whole window against {integer(int(board['incremental_instructions']))} "
                       f"per run for the new frames and the decision: {board['frontend_ratio']:.1f}x less")  # fmt: skip
    fe = cost.get("frontend")
    if fe:
        out.append(f"- front end (counted operations): {integer(fe['ops_per_new_frame'])} per "
                   f"{fe['frame_stride_ms']:g} ms frame computed once (incremental), against "
                   f"{integer(fe['ops_per_window'])} to recompute all {fe['frames']} frames of a window: "
                   f"{fe['ratio_per_frame']:.0f}x less per frame stride, "
                   f"{fe['ratio_per_run']:.1f}x less per run")  # fmt: skip
    return out + [""]


def _field_tests(field: dict[str, Any] | None) -> list[str]:
    if not field:
        return []
    from pipeline.analysis.field import worst_confusions

    real = [fs for fs in field["sets"] if fs["name"] != "synthetic"]
    out = ["## Field tests: synthetic voices vs real people", ""]
    for fs in real:
        out.append(
            f"- **{fs['name']}**: {fs['clips']:,} clips, {fs['speakers']:,} speakers, from `{fs['root']}`; never "
            f"trained on. {fs['unreadable']} unreadable file(s) skipped, {fs['converted']} converted to 16 kHz mono."
        )
        for name, reason in fs.get("unreadable_files", {}).items():
            out.append(f"  - unreadable: `{name}`: {reason}")
    out.append("")
    names = ["synthetic", *(fs["name"] for fs in real)]
    rows = []
    for m in field["models"]:
        accs = [m["sets"][n]["accuracy"] for n in names]
        gap = [f"{100 * (accs[0] - a):+.1f} pts" for a in accs[1:]]
        rows.append([m["model"], m["runtime"], *(pct(a) for a in accs), *gap])
    header = ["model", "runtime", "synthetic test", *(f"{n}" for n in names[1:])]
    header += [f"synthetic − {n}" for n in names[1:]]
    out += [table(header, rows), ""]
    deployed = next((m for m in field["models"] if m["role"] == "target"), field["models"][-1])
    for fs in real:
        n = fs["name"]
        synthetic, here = deployed["sets"]["synthetic"]["per_class"], deployed["sets"][n]["per_class"]
        out += [f"Per class on **{n}**, {deployed['model']} ({deployed['runtime']}):", ""]
        confusion: dict[str, tuple[str, float]] = {}
        for true, heard_as, share in worst_confusions(field, deployed["model"], n, top=len(field["labels"]) ** 2):
            confusion.setdefault(true, (heard_as, share))  # largest first
        rows = []
        for label in field["labels"]:
            miss = confusion.get(label)
            heard = f"{miss[0]} ({miss[1]:.0%})" if miss and miss[1] > 0 else "–"
            rows.append([label, pct(synthetic.get(label)), pct(here.get(label)), heard])
        out += [table(["class", "synthetic test", n, "most often heard as"], rows), ""]
    return out


FIGURE_NAMES = {"flash": "Flash", "ram": "RAM", "latency": "Latency"}


def _kind(t: dict[str, Any], name: str) -> str:
    """' *estimate*' after a figure that was not measured (nothing for measured ones or untyped old reports)."""
    fig = figure(t, name)
    return " *estimate*" if fig is not None and not fig.measured else ""


def _target_notes(t: dict[str, Any]) -> list[str]:
    lines = [f"### {t['name']}", ""]
    if t.get("bundle"):
        lines.append(f"- Bundle **{t['bundle']}** in `export/{t['name']}/` (checksums in its `manifest.json`).")
    if t.get("ops"):
        lines.append(f"- Operators: {', '.join(t['ops'])}.")
    for name in FIGURES:
        fig = figure(t, name)
        if fig is not None:
            lines.append(f"- {FIGURE_NAMES[name]} ({fig.label}): {fig.method}.")
    if "agreement_with_export" in t:
        lines.append(f"- Top-1 agreement with the exported model on LiteRT: {pct(t['agreement_with_export'])}.")
    plugin = targets().get(t["name"])
    if plugin is not None and hasattr(plugin, "report"):
        lines += plugin.report(t)
    return lines + [""]


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def _explain(ex: dict[str, Any] | None) -> list[str]:
    if not ex:
        return []
    ref = ex["reference"]
    lines = [
        "## Explainability: does compression keep the decisions and their reasons?",
        "",
        f"Every model against the trained float model (`{ref}`): top-1 agreement on all {ex['test_clips']:,} test "
        f"clips; attribution maps on {ex['samples']} clips spread over the classes. Occlusion: "
        f"{ex['method']['occlusion']}, each model run on its own runtime. Gradient: {ex['method']['gradient']}. "
        f"Compared by {ex['method']['compare']}.",
        "",
        table(
            [
                "model",
                "runtime",
                "agreement",
                "accuracy",
                "occlusion Spearman",
                "occlusion IoU",
                "IG Spearman",
                "IG IoU",
            ],
            [
                [
                    r["model"],
                    r["runtime"],
                    pct(r["agreement"]),
                    pct(r["accuracy"]),
                    _num(r["occlusion"]["spearman"]),
                    _num(r["occlusion"]["iou"]),
                    _num((r.get("gradient") or {}).get("spearman")),
                    _num((r.get("gradient") or {}).get("iou")),
                ]
                for r in ex["models"]
            ],
        ),  # fmt: skip
        "",
        f"![agreement and attribution correlation per model](explain/{ex['plot']})",
        "",
    ]
    lines += _control(ex)
    lines += _global(ex.get("global"))
    deployed = next(r for r in ex["models"] if r["model"] == ex["deployed"])
    labels = list(ex["models"][0]["per_class_accuracy"])
    lines += [
        f"Per-class accuracy at every model; the classes that lost most from `{ref}` to `{ex['deployed']}`: "
        + ", ".join(f"**{c['class']}** ({pct(c['reference'])} → {pct(c['deployed'])})" for c in ex["lost_most"])
        + ".",
        "",
        table(
            ["class", *[r["model"] for r in ex["models"]], f"occl. Spearman ({ex['deployed']})"],
            [
                [
                    c,
                    *[pct(r["per_class_accuracy"].get(c)) for r in ex["models"]],
                    _num(deployed["occlusion"]["per_class"].get(c, {}).get("spearman")),
                ]
                for c in labels
            ],
        ),  # fmt: skip
        "",
    ]
    if ex.get("removed"):
        lines += [
            "What pruning removed (filter importance by NNCF's criterion on the final kernels):",
            "",
            table(
                ["layer", "kept", "removed", "mean score kept", "mean score removed", "lowest kept", "highest removed"],
                [
                    [
                        r["layer"],
                        r["kept"],
                        r["removed"],
                        f"{r['kept_mean']:.3f}",
                        f"{r['removed_mean']:.3f}",
                        f"{r['kept_min']:.3f}",
                        f"{r['removed_max']:.3f}",
                    ]
                    for r in ex["removed"]
                ],
            ),  # fmt: skip
            "",
            f"![filter importance, kept and removed](explain/{ex['removed_plot']})",
            "",
        ]
    lines += ["Saliency maps per class (features, then integrated gradients and occlusion for each model):", ""]
    lines += [f"- [{name}](explain/{name})" for name in ex["pictures"]]
    return lines + [""]


def _bracket(ci: list[float] | None, show) -> str:
    """' [low, high]' of a 95 % interval, each end shown like its value; '' without one."""
    return f" [{show(ci[0])}, {show(ci[1])}]" if ci else ""


def _ci(value: float | None, ci: list[float] | None, percent: bool = False) -> str:
    """A signed difference with its interval: points of agreement, or correlation."""
    if value is None:
        return "–"
    show = (lambda v: f"{100 * v:+.2f} pt") if percent else (lambda v: f"{v:+.3f}")
    return show(value) + _bracket(ci, show)


def _control(ex: dict[str, Any]) -> list[str]:
    """Drift beyond retrain noise, with intervals, and the pruning-identified exemplars."""
    control = ex.get("control")
    if not control:
        return []
    twin = next(r for r in ex["models"] if r["model"] == control["twin"])
    dep = ex["deployed"]
    head = control["models"].get(dep, {})
    agreement, rho = head.get("agreement", {}), head.get("occlusion_spearman", {})
    lines = [
        "### Beyond retrain noise",
        "",
        f"Any retraining moves decisions and maps a little. The control `{twin['model']}` is the trained model's "
        f"twin: the same data and schedule, another seed, no compression. It agrees with `{ex['reference']}` on "
        f"{pct(twin['agreement'])} of the test clips, with occlusion Spearman {_num(twin['occlusion']['spearman'])}. "
        f"**The deployed `{dep}` drifts {agreement.get('verdict', 'undefined')} in its decisions** (agreement lost "
        f"beyond the twin's: {_ci(agreement.get('value'), agreement.get('ci'), True)}) **and "
        f"{rho.get('verdict', 'undefined')} in its attributions** (Spearman lost beyond the twin's: "
        f"{_ci(rho.get('value'), rho.get('ci'))}). Brackets: bootstrap 95 % intervals over clips, model and twin "
        "resampled together; positive means the model moved further from the trained model than the twin did.",
        "",
        table(
            [
                "model",
                "agreement [95 %]",
                "beyond noise",
                "occl. Spearman [95 %]",
                "beyond noise",
                "IG Spearman beyond noise",
            ],
            [
                [
                    r["model"],
                    pct(r["agreement"]) + _bracket(r.get("agreement_ci"), pct),
                    _ci(c["agreement"]["value"], c["agreement"]["ci"], True),
                    _num(r["occlusion"]["spearman"]) + _bracket(r["occlusion"].get("spearman_ci"), _num),
                    _ci(c["occlusion_spearman"]["value"], c["occlusion_spearman"]["ci"]),
                    _ci(c["gradient_spearman"]["value"], c["gradient_spearman"]["ci"])
                    if "gradient_spearman" in c
                    else "–",
                ]
                for r in ex["models"]
                if (c := control["models"].get(r["model"]))
            ],
        ),  # fmt: skip
        "",
    ]
    for name, f in head.get("field_agreement", {}).items():
        lines += [
            f"On `{name}` (real recordings): `{dep}` agrees with `{ex['reference']}` on {pct(f['model'])} of the clips, "
            f"the twin on {pct(f['twin'])}: agreement lost beyond the twin's {_ci(f['value'], f['ci'], True)}, "
            f"**{f['verdict']}**.",
            "",
        ]
    per_class = head.get("per_class_agreement", {})
    if per_class:
        lines += [
            f"Per class, agreement `{dep}` lost beyond the twin's: "
            + ", ".join(f"{c} {_ci(v['value'], v['ci'], True)}" for c, v in per_class.items())
            + ".",
            "",
        ]
    found = control.get("exemplars", {})
    if found:
        sets = list(next(iter(found.values())))
        lines += [
            "**Pruning-identified exemplars**: clips a model hears differently from the trained model while the twin "
            "agrees with the trained model (Hooker et al., 2019), on the synthetic test split and every field set:",
            "",
            table(
                ["model", *sets],
                [[m, *[f"{v[s]['count']:,} ({pct(v[s]['share'])})" for s in sets]] for m, v in found.items()],
            ),
            "",
        ]
        if dep in found:
            labels = list(found[dep]["synthetic"]["per_class"])
            lines += [
                f"Per class for `{dep}`:",
                "",
                table(["set", *labels], [[s, *[found[dep][s]["per_class"].get(c, 0) for c in labels]] for s in sets]),
                "",
            ]
        if control.get("exemplar_plot"):
            lines += [f"![pruning-identified exemplars](explain/{control['exemplar_plot']})", ""]
    return lines


def _global(view: dict[str, Any] | None) -> list[str]:
    if not view:
        return []
    changes = "; ".join(
        f"{c['direction']} frames {c['frames'][0]}–{c['frames'][1]}, coefficients {c['coefficients'][0]}–"
        f"{c['coefficients'][1]} ({c['change']:+.0%} of the trained model's largest cell)"
        for c in view["biggest_changes"]
    )
    return [
        f"**Global view**: per-class mean occlusion maps, trained vs `{view['model']}`. Largest changes over all "
        f"classes: {changes}.",
        "",
        f"![mean attribution per class, before and after compression](explain/{view['plot']})",
        "",
    ]


def _per_voice(report: dict[str, Any]) -> list[str]:
    columns = [(s["name"], s.get("per_voice")) for s in report["stages"]]
    columns += [(t["name"], t.get("per_voice")) for t in report["targets"]]
    columns = [(n, pv) for n, pv in columns if pv]
    if not columns:
        return []
    groups = list(columns[0][1])
    if len(groups) > 40:  # a real data set has thousands of speakers: show the worst
        groups = sorted(groups, key=lambda g: columns[-1][1][g]["accuracy"])[:20]
        title = "## Accuracy per voice (20 worst test speakers)"
    else:
        title = "## Accuracy per test voice"
    rows = [[g, columns[0][1][g]["n"], *[pct(pv[g]["accuracy"]) for _, pv in columns]] for g in groups]
    return [title, "", table(["voice", "clips", *[n for n, _ in columns]], rows), ""]


def _per_class(report: dict[str, Any]) -> list[str]:
    columns = [(s["name"], s.get("per_class")) for s in report["stages"]]
    columns += [(t["name"], t.get("per_class")) for t in report["targets"]]
    columns = [(n, pc) for n, pc in columns if pc]
    if not columns:
        return []
    rows = [[label, *[pct(pc.get(label)) for _, pc in columns]] for label in report["data"]["labels"]]
    return ["## Accuracy per class", "", table(["class", *[n for n, _ in columns]], rows), ""]
