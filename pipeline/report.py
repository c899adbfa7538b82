"""The report: JSON for machines, Markdown for the people who decide whether a model ships."""

from __future__ import annotations

from typing import Any


def size_text(n: float | None) -> str:
    """Bytes for people: KB for models and arenas, MB once a runtime's RSS makes KB unreadable."""
    if n is None:
        return "–"
    return f"{n / 2**20:.1f} MB" if n >= 10 * 2**20 else f"{n / 1024:.1f} KB"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f} %"


def _int(n: int | None) -> str:
    return "–" if n is None else f"{n:,}"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


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
        _table(
            ["split", "clips", "voices"],
            [[s, _int(data["clips"][s]), _int(data["voices"][s])] for s in ("train", "val", "test")],
        ),
        "",
    ]
    if data["source"] == "synthetic":
        out += [
            "**Trained on synthetic speech only** (espeak-ng voices; no real recording): test variants are never "
            "heard in training or validation, but the synthetic test says nothing about people — see the field tests.",
            "",
        ]
    else:
        out += [f"**Trained on real recordings**: the Speech Commands folder `{data['root']}`.", ""]
    for extra in data.get("extra_train", []):
        out += [
            f"**Plus your own recordings in training**: {extra['clips']:,} clips from `{extra['path']}` "
            f"(training split only; {extra['unreadable']} unreadable skipped, {extra['converted']} converted).",
            "",
        ]

    out += ["## Stages", ""]
    rows = []
    for s in report["stages"]:
        rows.append(
            [
                s["name"],
                _pct(s.get("accuracy")),
                _int(s.get("params")),
                _int(s.get("macs")),
                size_text(s.get("bytes")),
                f"{s['seconds']:.1f} s" + (" (cached)" if s["cached"] else ""),
                s.get("runtime", ""),
            ]
        )
    out += [_table(["stage", "test accuracy", "params", "MACs", "size", "time", "evaluated on"], rows), ""]

    out += _pruning(report)
    out += _field_tests(report.get("field_tests"))

    if report["targets"]:
        out += ["## Targets", ""]
        rows = []
        for t in report["targets"]:
            lat = t["latency_ms"]
            rows.append(
                [
                    t["name"],
                    size_text(t["flash_bytes"]),
                    size_text(t["ram_bytes"]),
                    f"{lat['median']:.3f} / {lat['p90']:.3f} ms ({lat['runs']} runs)",
                    _pct(t["accuracy"]),
                    lat["runtime"],
                    t.get("measured_at", "–") + (" (replayed from cache)" if t["cached"] else ""),
                ]
            )
        header = ["target", "flash", "RAM", "latency median / p90", "accuracy on target", "runtime", "measured"]
        out += [_table(header, rows), ""]
        if any(t["cached"] for t in report["targets"]):
            out += [
                "Replayed measurements were taken at the time shown; `pipeline run --remeasure` takes them again.",
                "",
            ]
        for t in report["targets"]:
            out += _target_notes(t)

    if report["budgets"]:
        out += ["## Budgets", ""]
        rows = [
            [b["name"], ("≥ " if b["floor"] else "≤ ") + f"{b['limit']:.4g} {b['unit']}", f"{b['actual']:.4g} {b['unit']}",
             "✓" if b["ok"] else "✗"]
            for b in report["budgets"]
        ]  # fmt: skip
        out += [_table(["budget", "limit", "actual", "ok"], rows), ""]

    out += _explain(report.get("explain"))
    out += _per_voice(report)
    out += _per_class(report)
    out += ["## Versions", "", ", ".join(f"{k} {v}" for k, v in report["versions"].items()), ""]
    return "\n".join(out)


def _field_tests(field: dict[str, Any] | None) -> list[str]:
    if not field:
        return []
    from pipeline.field import worst_confusions

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
        rows.append([m["model"], m["runtime"], *(_pct(a) for a in accs), *gap])
    header = ["model", "runtime", "synthetic test", *(f"{n}" for n in names[1:])]
    header += [f"synthetic − {n}" for n in names[1:]]
    out += [_table(header, rows), ""]
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
            rows.append([label, _pct(synthetic.get(label)), _pct(here.get(label)), heard])
        out += [_table(["class", "synthetic test", n, "most often heard as"], rows), ""]
    return out


def _target_notes(t: dict[str, Any]) -> list[str]:
    lines = [f"### {t['name']}", ""]
    if t.get("bundle"):
        lines.append(f"- Bundle **{t['bundle']}** in `export/{t['name']}/` (checksums in its `manifest.json`).")
    if t.get("ops"):
        lines.append(f"- Operators: {', '.join(t['ops'])}.")
    arena = t.get("arena")
    if arena:
        lines.append(
            f"- Arena: **{arena['measured']:,} B**, the smallest that allocated and invoked ({arena['probes']} probes); "
            f"TFLM's allocation report: {arena['reported_total']:,} B = {arena['head']:,} B head (activation plan) + "
            f"{arena['tail']:,} B tail (persistent), {'agreeing' if arena['agrees_with_report'] else 'DISAGREEING'} "
            f"with the probes."
        )
        if arena.get("lower_bound"):
            at = arena["lower_bound_at"]
            lines.append(
                f"- Live-tensor lower bound: {arena['lower_bound']:,} B (at op {at['step']}, {at['op']}); the head is "
                f"{arena['head_over_lower_bound']:.2f}× it, the whole arena {arena['arena_over_lower_bound']:.2f}× "
                f"(the rest is TFLM's persistent structures)."
            )
        mcu = arena.get("mcu_estimate")
        if mcu:
            lines.append(f"- On a 32-bit MCU: ~{mcu['bytes']:,} B ({mcu['method']}).")
        lines.append(f"- Bundle arena (`kTensorArenaSize`): {arena['bundle']:,} B (headroom {arena['headroom']:.0%}).")
    for key in ("flash_method", "ram_method"):
        if key in t:
            lines.append(f"- {'Flash' if key == 'flash_method' else 'RAM'}: {t[key]}.")
    if "agreement_with_export" in t:
        lines.append(f"- Top-1 agreement with the exported model on LiteRT: {_pct(t['agreement_with_export'])}.")
    if t["name"] == "openvino":
        lines += _openvino_table(t)
    if t["name"] == "android":
        lines += _android_table(t)
    board = t.get("board")
    if board:
        lines.append(
            f"- Board {board['name']} ({board['core']} @ {board['clock_mhz']} MHz): the MCU arena estimate uses "
            f"{_pct(board['ram_share'])} of its RAM, the model {_pct(board['flash_share'])} of its flash; latency "
            f"~{board['latency_estimate_ms']:.1f} ms ({board['latency_method']})."
        )
    return lines + [""]


def _mb(n: float | None) -> str:
    return "–" if n is None else f"{n / 2**20:.1f} MB"


def _openvino_table(t: dict[str, Any]) -> list[str]:
    rows = [
        [
            v["precision"].upper() + (" ★" if v["precision"] == t["primary"] else ""),
            size_text(v["bytes"]),
            f"{_mb(v['memory']['peak_rss_bytes'])} ({_mb(v['memory']['runtime_rss_bytes'])} runtime + "
            f"{_mb(v['memory']['model_bytes'])})",
            f"{v['latency_ms']['median']:.3f} / {v['latency_ms']['p90']:.3f} ms",
            f"{v['throughput']['fps']:,.0f}/s ({v['throughput']['streams']} streams)",
            _pct(v["accuracy"]),
            _pct(v["agreement_with_float"]),
            v["quantize_nodes"],
        ]
        for v in t["variants"]
    ]
    header = ["precision", "IR bytes", "peak RSS", "latency median / p90", "throughput", "accuracy",
              "agrees with float", "FakeQuantize nodes"]  # fmt: skip
    return [
        f"- Device: {t['device']} ({t['device_name']}); OpenVINO {t['versions']['openvino']}, "
        f"NNCF {t['versions']['nncf']}. ★ = the precision in the targets table.",
        f"- Latency: {t['latency_ms']['runtime']}. Throughput: THROUGHPUT hint, async requests. Peak RSS: a fresh "
        "process importing only OpenVINO loads, compiles and runs the IR (VmHWM); in brackets the RSS after "
        "`import openvino` and what loading the model added.",
        "",
        _table(header, rows),
    ]


def _android_table(t: dict[str, Any]) -> list[str]:
    rows = []
    for v in t["variants"]:
        mem = v["tensor_memory"]
        for i, host in enumerate(v["host"]):
            lat = host["latency_ms"]
            first = i == 0
            name = v["variant"] + (" ★" if v["variant"] == t["recommended"] else "")
            rows.append(
                [
                    name if first else "",
                    host["threads"],
                    size_text(v["bytes"]) if first else "",
                    f"{size_text(mem['live_lower_bound'])} – {size_text(mem['activations_sum'])}" if first else "",
                    f"{lat['median']:.3f} / {lat['p90']:.3f} ms",
                    _pct(v["accuracy"]) if first else "",
                    _pct(v["agreement_with_float"]) if first else "",
                    "host LiteRT",
                ]
            )
            for phone in v.get("phone", []):
                if phone["threads"] == host["threads"]:
                    pl = phone["latency_ms"]
                    rows.append(["", phone["threads"], "", "", f"{pl['median']:.3f} ms ({pl['statistic']})", "", "",
                                 pl["runtime"]])  # fmt: skip
    header = ["variant", "threads", "bytes", "tensor memory", "latency median / p90", "accuracy",
              "agrees with float", "measured by"]  # fmt: skip
    phone = t["phone"]
    return [
        f"- Recommended: **{t['recommended']}** ★ ({t['recommended_because']}).",
        f"- Host: {t['latency_ms']['runtime'].rsplit(',', 1)[0]}; accuracy on the test split with 1 thread. Tensor "
        "memory: the largest set of tensors alive at once – the sum of all non-constant tensors (LiteRT's arena "
        "lies between).",
        f"- Phone: {phone.get('message') or phone.get('runtime')}.",
        "",
        _table(header, rows),
    ]


def _ratio(after: float, before: float) -> str:
    return f"{after / before:.2f}×" if before else "–"


def _pruning(report: dict[str, Any]) -> list[str]:
    stages = report["stages"]
    index = next((i for i, s in enumerate(stages) if s["name"] == "prune"), None)
    if index is None:
        return []
    prune = stages[index]
    cfg = prune["nncf_config"]["compression"]
    before, export = prune["before"], next((s for s in stages if s["name"] == "export"), None)
    accuracy_steps = [
        f"{s['name']} {_pct(s.get('accuracy'))}" for s in stages[max(0, index - 1) :] if s["name"] != "export"
    ]
    lines = ["## Pruning", ""]
    if prune["method"] == "filter":
        params = cfg["params"]
        lines += [
            f"NNCF `{cfg['algorithm']}`: {params['filter_importance']} importance, {params['schedule']} schedule from "
            f"{cfg['pruning_init']:.0%} to {params['pruning_target']:.0%} over {params['pruning_steps']} epochs "
            f"({prune['epochs_run']} epochs trained under NNCF); {prune['level']:.0%} of the filters removed. The masked model "
            f"was rebuilt with only the kept filters: largest output difference on the test split "
            f"{prune['rebuilt_max_abs_diff']:.1e}.",
            "",
            _table(
                ["layer", "filters before", "filters after", "kept"],
                [
                    [
                        row["layer"] + (" (ignored)" if row["ignored"] else ""),
                        row["filters_before"],
                        row["filters_after"],
                        _ratio(row["filters_after"], row["filters_before"]),
                    ]
                    for row in prune["layers"]
                ],
            ),  # fmt: skip
            "",
        ]
    else:
        lines += [
            f"NNCF `{cfg['algorithm']}` to {cfg['params']['sparsity_target']:.0%}: {_pct(prune['zero_weights'])} of "
            "the kernel weights are zero. Shapes do not change: TFLite Micro and LiteRT run dense kernels, so arena "
            "and latency stay what they were; only compressed storage shrinks"
            + (
                f" (.tflite {export['bytes']:,} B, deflated {export['deflated_bytes']:,} B)."
                if export and "deflated_bytes" in export
                else "."
            ),
            "",
        ]
    after = stages[-1]
    lines += [
        _table(
            ["", "before pruning", "after", "ratio"],
            [
                [
                    "params",
                    _int(before["params"]),
                    _int(after.get("params")),
                    _ratio(after.get("params", 0), before["params"]),
                ],
                ["MACs", _int(before["macs"]), _int(after.get("macs")), _ratio(after.get("macs", 0), before["macs"])],
            ],
        ),  # fmt: skip
        "",
        f"Test accuracy: {' → '.join(accuracy_steps)} (after pruning, before fine-tuning: {_pct(prune['accuracy'])}; "
        f"NNCF's masked model: {_pct(prune['masked_accuracy'])}).",
        "",
    ]
    return lines


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
        _table(
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
                    _pct(r["agreement"]),
                    _pct(r["accuracy"]),
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
    deployed = next(r for r in ex["models"] if r["model"] == ex["deployed"])
    labels = list(ex["models"][0]["per_class_accuracy"])
    lines += [
        f"Per-class accuracy at every model; the classes that lost most from `{ref}` to `{ex['deployed']}`: "
        + ", ".join(f"**{c['class']}** ({_pct(c['reference'])} → {_pct(c['deployed'])})" for c in ex["lost_most"])
        + ".",
        "",
        _table(
            ["class", *[r["model"] for r in ex["models"]], f"occl. Spearman ({ex['deployed']})"],
            [
                [
                    c,
                    *[_pct(r["per_class_accuracy"].get(c)) for r in ex["models"]],
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
            _table(
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
    rows = [[g, columns[0][1][g]["n"], *[_pct(pv[g]["accuracy"]) for _, pv in columns]] for g in groups]
    return [title, "", _table(["voice", "clips", *[n for n, _ in columns]], rows), ""]


def _per_class(report: dict[str, Any]) -> list[str]:
    columns = [(s["name"], s.get("per_class")) for s in report["stages"]]
    columns += [(t["name"], t.get("per_class")) for t in report["targets"]]
    columns = [(n, pc) for n, pc in columns if pc]
    if not columns:
        return []
    rows = [[label, *[_pct(pc.get(label)) for _, pc in columns]] for label in report["data"]["labels"]]
    return ["## Accuracy per class", "", _table(["class", *[n for n, _ in columns]], rows), ""]
