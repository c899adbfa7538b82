#!/usr/bin/env python3
"""Does the model hear people? Synthetic test accuracy against the recipe's field tests (real recordings).

    .venv/bin/python scripts/bench_real_speech.py [recipes/kws_mcu.yaml]              # every stage and target
    .venv/bin/python scripts/bench_real_speech.py [recipes/kws_mcu.yaml] --ablation   # what each data change buys

Default: runs the recipe (cached steps are reused) and, beside it, its `train` model quantized unpruned (the
"as trained" chain of bench_prune), then prints every stage's and target's accuracy on the synthetic test split
and on each field test, and what pruning costs on each.

`--ablation`: trains the recipe's model (its `train` stage, `--epochs` long, nothing after) on a ladder of
synthetic data sets, each adding one change to the one before: espeak-ng voices (each draw its own variant file,
formants jittered), + vocal-tract-length perturbation, + microphones and recording levels, + rooms, + time shift
and SpecAugment in training; and the voices alone with time shift and SpecAugment, or with flite's voices speaking a
share of the training draws (rungs 7 and 8: not cumulative, each against rung 1; rung 9 adds time shift and
SpecAugment to rung 7, rung 10 label smoothing to rung 9, rung 11 Kokoro-82M's voices for a fifth of rung 10's
training draws, rung 12 rung 10 ending on a moving average of its weights; rung 13 three times rung 12's
`_unknown_` clips, rung 14 those drawn from 137 more words; rung 15 rung 12 with cepstral mean normalisation in the
model: the flagship's train stage; rung 16 rung 12 with mean and variance normalisation; rung 17 rung 15 with half the
words spoken in a simulated room; rung 18 rung 15 with a Piper voice for 30 % of the training draws; rung 19 rung 15
with SpecAugment's frequency masks on the mel channels). Field
tests judge every rung; none of them is trained on. `--seeds 1234,4321,...` trains every rung at each recipe seed
(voice draws, held-out variants and initial weights all change with it) and adds each rung's mean and spread:
one seed's figure moves by several points on people, more than most levers buy.

`--own-recordings DIR`: what a team's own recordings buy. DIR (e.g. ../shared/data/real_speech_dev) is split by
speaker into two halves: a speaker's clips go to the *donor* half when `int(sha256(speaker), 16) % 2 == 0`, else to
the *judge* half (the speaker as `pipeline.data.field_speaker` reads it from the file name; a `_silence_` clip's
file stem). The recipe's model is trained with 0, 5, 10, 25 and all of the donors' clips per class folder
(`--clips`; the first k of each folder by SHA-256 of the file name) added through `data.extra_train`, and judged on
the judge half alone: people it never heard. The recipe's other field tests are dropped, since half of DIR is
trained on. By default the `train` stage alone is trained at the recipe's epochs (`--epochs` to change it);
`--full-chain` runs the recipe's whole chain to the TFLM bundle instead and judges the bundle. The curve is printed
and plotted to `<runs-dir>/own_recordings_x<repeat>.png`. `--repeat N` sets `data.extra_train_repeat`: each
donor clip then appears N times in training.

`--field NAME=DIR` adds a field test to the recipe's own (repeatable). Without any, there is nothing to compare.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench_prune import _chain, _entries, as_trained, pruned_chain, write_chain  # noqa: E402

from pipeline.data import field_speaker  # noqa: E402
from pipeline.engine.progress import Reporter  # noqa: E402
from pipeline.engine.runner import RunResult, run_recipe  # noqa: E402
from pipeline.recipe import DEFAULT_UNKNOWN_WORDS, Recipe, load_recipe  # noqa: E402

# Each rung: (label, data.synthetic settings, train settings). Every setting a rung reads is pinned here, so the
# ladder means the same whichever levers the recipe itself turns on (the flagship's flite share, say).
VOICES = {"formant_scale": [1.0, 1.0], "reverb_probability": 0.0, "microphone_probability": 0.0,
          "peak_dbfs": [-12.0, -1.0], "flite_share": 0.0, "kokoro_share": 0.0, "piper_share": 0.0,
          "unknown_per_voice": 1, "unknown_words": DEFAULT_UNKNOWN_WORDS, "unknown_fraction": 0.1}  # fmt: skip
DATA_LEVEL = ("unknown_fraction",)  # rung settings that live in `data`, not `data.synthetic`
TRACT = VOICES | {"formant_scale": [0.85, 1.18]}
MICROPHONES = TRACT | {"microphone_probability": 0.7, "peak_dbfs": [-30.0, -1.0]}
ROOMS = MICROPHONES | {"reverb_probability": 0.5}
FLITE = VOICES | {"flite_share": 0.3}  # flite speaks 30 % of the training draws, as in the flagship
PIPER = {"piper_share": 0.3, "piper_speed": [0.85, 1.18]}  # one human-learnt voice, speed-perturbed into many
MODEL_LEVEL = ("normalize",)  # rung settings that live in `model`, not in the train stage
PLAIN = {"augment": None, "label_smoothing": 0.0, "weight_average": None, "normalize": "none"}
AUGMENTED = PLAIN | {"augment": {"time_shift_frames": 5, "time_masks": 2, "time_mask_frames": 5,
                                 "coefficient_masks": 1, "coefficient_mask_width": 2}}  # fmt: skip
SMOOTHED = AUGMENTED | {"label_smoothing": 0.1}
AVERAGED = SMOOTHED | {"weight_average": 0.999}
NORMALIZED = AVERAGED | {"normalize": "cepstral_mean"}  # each clip's mean over time off every coefficient
# SpecAugment's frequency masks proper: two bands of up to 8 of the 40 mel channels held still per clip
MEL_MASKED = NORMALIZED | {"augment": {**NORMALIZED["augment"], "mel_masks": 2, "mel_mask_bins": 8}}
STANDARDIZED = AVERAGED | {"normalize": "cepstral_mean_variance"}  # and each coefficient over its spread
# Each voice draw says three other words, and _unknown_ takes 30 % of the keyword clips' count instead of 10 %.
RICH_UNKNOWN = FLITE | {"unknown_per_voice": 3, "unknown_fraction": 0.3}
MORE_WORDS = """
apple baby ball bank beach bell black blue book bottle box boy bread bridge brother brown button cake camera candle
car card chair cheese chicken child city clock cloud coffee coat color computer corner cup dance desk dinner doctor
door dream drink earth egg evening face family farm father fire fish floor flower forest friend garden girl glass gold
grass green hair hand hat head heart horse hotel island jacket kitchen lamp letter light lion machine market milk
money monkey moon morning mother mountain music name nose ocean orange paper party pencil people phone piano picture
pizza planet purple queen rabbit radio rain river road rocket salt school sea shirt shoe silver sister sky sleep smile
snake snow song spoon spring star street summer sun table teacher tiger time tomato train travel water window winter
world yellow
""".split()  # common words, none a keyword; a few are near-misses of one (light/right, cup/up, gold/go, snow/no)
LADDER = [
    ("espeak-ng voices, formant jitter", VOICES, PLAIN),
    ("+ vocal tract length", TRACT, PLAIN),
    ("+ microphones, levels", MICROPHONES, PLAIN),
    ("+ rooms", ROOMS, PLAIN),
    ("+ time shift, SpecAugment", ROOMS, AUGMENTED),
    ("voices + time shift, SpecAugment", VOICES, AUGMENTED),
    ("voices + flite for 30 % of training draws", FLITE, PLAIN),
    ("voices + flite for 50 % of training draws", VOICES | {"flite_share": 0.5}, PLAIN),
    ("voices + flite 30 % + time shift, SpecAugment", FLITE, AUGMENTED),
    ("+ label smoothing 0.1", FLITE, SMOOTHED),
    ("+ Kokoro for 20 % of training draws", FLITE | {"kokoro_share": 0.2}, SMOOTHED),
    ("rung 10 + weight average 0.999", FLITE, AVERAGED),
    ("rung 12 + three times the unknown clips", RICH_UNKNOWN, AVERAGED),
    ("+ 137 more unknown words", RICH_UNKNOWN | {"unknown_words": DEFAULT_UNKNOWN_WORDS + MORE_WORDS}, AVERAGED),
    ("rung 12 + cepstral mean normalisation", FLITE, NORMALIZED),
    ("rung 12 + cepstral mean and variance normalisation", FLITE, STANDARDIZED),
    ("rung 15 + rooms for half the words", FLITE | {"reverb_probability": 0.5}, NORMALIZED),
    ("rung 15 + a Piper voice for 30 % of training draws", FLITE | PIPER, NORMALIZED),
    ("rung 15 + mel-band masks", FLITE, MEL_MASKED),
]


def with_fields(data: dict, recipe: Recipe, extra: dict[str, Path]) -> dict:
    """The recipe (as a dict) with `extra` field tests appended, paths absolute so any temp file means the same."""
    fields = [
        {**f, "path": str(recipe.resolve_path(Path(f["path"])).resolve())} for f in data["data"].get("field_tests", [])
    ]
    fields += [{"name": name, "path": str(path.resolve()), "optional": False} for name, path in extra.items()]
    return {**data, "data": {**data["data"], "field_tests": fields}}


def train_only(data: dict, name: str, train: dict) -> dict:
    """The recipe (as a dict) cut to its `train` stage, `train` overriding its settings; no targets, no explain."""
    settings = dict(next(cfg for stage, cfg in _entries(data["stages"]) if stage == "train")) | train
    return {**data, "name": name, "stages": [{"train": settings}], "targets": [], "explain": {"enabled": False}}


def ablation_recipe(
    data: dict, label: str, synthetic: dict, training: dict, epochs: int, seed: int | None = None
) -> dict:
    train = {"epochs": epochs, **{k: v for k, v in training.items() if k not in MODEL_LEVEL}}
    model = {**data["model"], **{k: v for k, v in training.items() if k in MODEL_LEVEL}}
    synth = {**data["data"]["synthetic"], **{k: v for k, v in synthetic.items() if k not in DATA_LEVEL}}
    top = {k: v for k, v in synthetic.items() if k in DATA_LEVEL}
    slug = "".join(c if c.isalnum() else "-" for c in label).strip("-").lower()
    variant = {
        **data,
        **({"seed": seed} if seed is not None else {}),
        "data": {**data["data"], **top, "synthetic": synth},
        "model": model,
    }
    return train_only(variant, f"{data['name']}-ablation-{slug}"[:64].rstrip("-"), train)


def run_variant(recipe: Recipe, variant: dict, tmp: Path, reporter: Reporter, runs_dir: Path) -> RunResult:
    return run_recipe(*write_chain(recipe, variant, tmp), reporter, runs_root=runs_dir)


def field_rows(result: RunResult) -> list[dict]:
    """The report's field-test rows: model, runtime and `sets` ({"synthetic" or a field name: its scores})."""
    return (result.report.get("field_tests") or {}).get("models", [])


def accuracy(row: dict, name: str) -> float | None:
    return row["sets"][name]["accuracy"] if name in row["sets"] else None


def mean_row(rows: list[dict], names: list[str]) -> dict:
    """A row of the mean accuracy over `rows` (one per seed) with its sample standard deviation as `spread`."""
    sets = {}
    for name in names:
        values = [accuracy(row, name) for row in rows]
        if None not in values:
            mean = sum(values) / len(values)
            spread = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
            sets[name] = {"accuracy": mean, "spread": spread}
    return {"runtime": rows[0].get("runtime", ""), "sets": sets}


def integers(text: str, option: str, allowed: range | None = None) -> list[int]:
    """`--rungs`/`--seeds`: comma-separated integers, each in `allowed` when given."""
    try:
        values = [int(item) for item in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected comma-separated integers", param_hint=option) from None
    wrong = [v for v in values if allowed is not None and v not in allowed]
    if wrong:
        raise click.BadParameter(f"no rung {wrong[0]}: the ladder has rungs 1 to {len(LADDER)}", param_hint=option)
    return values


def cell(row: dict, name: str) -> str:
    score = row["sets"].get(name)
    if score is None:
        return "-"
    return f"{score['accuracy']:.2%}" + (f" ± {100 * score['spread']:.1f}" if "spread" in score else "")


def print_table(
    console: Console, title: str, rows: list[tuple[str, dict]], names: list[str], first: str = "model"
) -> None:
    table = Table(title=title)
    for column in (first, "runtime", "synthetic test", *names, *(f"gap: {n}" for n in names)):
        table.add_column(column, justify="left" if column in (first, "runtime") else "right", no_wrap=True)
    for label, row in rows:
        synthetic, field = accuracy(row, "synthetic"), [accuracy(row, n) for n in names]
        table.add_row(
            label,
            row.get("runtime", ""),
            cell(row, "synthetic"),
            *(cell(row, n) for n in names),
            *(f"{100 * (synthetic - a):+.1f} pts" if a is not None else "-" for a in field),
        )
    console.print(table)


DONORS, JUDGES = "donors", "judges"
OWN_CLIPS = "0,5,10,25,all"


def speaker_half(rel: str) -> str:
    """Which half a clip of the own-recordings split belongs to, by its speaker (see the module docstring)."""
    speaker = field_speaker(rel)
    return DONORS if int(hashlib.sha256(speaker.encode()).hexdigest(), 16) % 2 == 0 else JUDGES


def split_by_speaker(root: Path, out: Path) -> dict[str, dict[str, list[Path]]]:
    """{half: {class folder: its WAV files}} of `root`, copied into `out/<half>/<class>/` (the judges' folder is
    what the models are judged on). Files within a class are ordered by SHA-256 of their name: a fixed shuffle."""
    halves: dict[str, dict[str, list[Path]]] = {DONORS: {}, JUDGES: {}}
    for wav in sorted(root.glob("*/*.wav"), key=lambda p: hashlib.sha256(p.name.encode()).hexdigest()):
        rel = f"{wav.parent.name}/{wav.name}"
        half = speaker_half(rel)
        halves[half].setdefault(wav.parent.name, []).append(wav)
        if half == JUDGES:
            (out / JUDGES / wav.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy2(wav, out / JUDGES / rel)
    return halves


def donor_folder(donors: dict[str, list[Path]], per_class: int | None, out: Path) -> Path:
    """The first `per_class` donor clips of every class folder (None: all of them), in the Speech Commands layout."""
    folder = out / f"donors-{'all' if per_class is None else per_class}"
    for label, files in donors.items():
        (folder / label).mkdir(parents=True, exist_ok=True)
        for wav in files[:per_class]:
            shutil.copy2(wav, folder / label / wav.name)
    return folder


def own_recordings_recipe(data: dict, judges: Path, donors: Path | None, per_class: str, epochs: int | None,
                          full_chain: bool, seed: int | None, repeat: int = 1) -> dict:  # fmt: skip
    """The recipe with `donors` in its training split and the judges' half as its only field test."""
    name = f"{data['name']}-own-{per_class}x{repeat}" + (f"-seed{seed}" if seed is not None else "")
    fields = [{"name": "judges", "path": str(judges.resolve()), "optional": False}]
    out = {**data, **({"seed": seed} if seed is not None else {}),
           "data": {**data["data"], "field_tests": fields, "extra_train": [str(donors.resolve())] if donors else [],
                    "extra_train_repeat": repeat}}  # fmt: skip
    if full_chain:
        return _chain(out, name, [{k: v} for k, v in _entries(data["stages"])])
    return train_only(out, name, {"epochs": epochs} if epochs else {})


def own_recordings(
    recipe: Recipe, data: dict, root: Path, counts: list[int | None], epochs: int | None, full_chain: bool,
    seeds: list[int] | None, runs_dir: Path, console: Console, reporter: Reporter, repeat: int = 1,
) -> None:  # fmt: skip
    model = "tflm" if full_chain else "train"
    rows: list[tuple[str, dict]] = []
    curve: dict[int | None, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        halves = split_by_speaker(root, Path(tmp))
        people = {h: len({field_speaker(f"{w.parent.name}/{w.name}") for fs in halves[h].values() for w in fs})
                  for h in halves}  # fmt: skip
        clips = {h: sum(len(fs) for fs in halves[h].values()) for h in halves}
        reporter.log(f"{root}: donors {clips[DONORS]} clips by {people[DONORS]} speakers, judges {clips[JUDGES]} "
                     f"clips by {people[JUDGES]} speakers")  # fmt: skip
        for per_class in counts:
            label = "all" if per_class is None else str(per_class)
            donors = donor_folder(halves[DONORS], per_class, Path(tmp)) if per_class != 0 else None
            added = sum(len(fs[:per_class]) for fs in halves[DONORS].values()) if per_class != 0 else 0
            for seed in seeds or [None]:
                named = f"{label} per class ({added} clips)" + (f", seed {seed}" if seed is not None else "")
                reporter.log(f"[bold]own recordings: {named}[/bold]")
                variant = own_recordings_recipe(data, Path(tmp) / JUDGES, donors, label, epochs, full_chain, seed,
                                                repeat)  # fmt: skip
                result = run_variant(recipe, variant, Path(tmp), reporter, runs_dir)
                row = next(row for row in field_rows(result) if row["model"] == model)
                rows.append((named, row))
                curve.setdefault(added, []).append(accuracy(row, "judges"))
    what = f"{recipe.name}'s {'bundle on TFLM' if full_chain else 'train stage'}, own clips x{repeat}"
    print_table(console, f"Own recordings: {what}, judged on the other half's speakers", rows, ["judges"],
                first="donor clips added")  # fmt: skip
    plot = runs_dir / f"own_recordings_x{repeat}.png"
    plot_curve(curve, what, plot)
    console.print(f"curve: {plot}")


def plot_curve(curve: dict[int, list[float]], what: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    added = sorted(curve)
    means = [100 * sum(curve[a]) / len(curve[a]) for a in added]
    fig, ax = plt.subplots(figsize=(6, 4))
    for a in added:
        ax.scatter([a] * len(curve[a]), [100 * v for v in curve[a]], color="tab:blue", alpha=0.4)
    ax.plot(added, means, marker="o", color="tab:blue")
    ax.axhline(90, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("symlog", linthresh=50)
    ax.set_xlabel("own recordings added to training (clips)")
    ax.set_ylabel("accuracy on the other speakers (%)")
    ax.set_title(f"What your own recordings buy: {what}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def clip_counts(text: str) -> list[int | None]:
    try:
        return [None if item.strip() == "all" else int(item) for item in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected comma-separated counts or 'all'", param_hint="--clips") from None


@click.command()
@click.argument("recipe_file", type=click.Path(exists=True, path_type=Path), default=ROOT / "recipes/kws_mcu.yaml")
@click.option("--runs-dir", type=click.Path(path_type=Path), default=ROOT / "runs", show_default=True)
@click.option("--field", "fields", multiple=True, metavar="NAME=DIR", help="Another field test (repeatable).")
@click.option("--ablation", is_flag=True, help="Train on each rung of the synthetic-data ladder instead.")
@click.option("--epochs", default=20, show_default=True, help="Training epochs per ablation rung.")
@click.option("--rungs", default=None, help="Comma-separated rung numbers to run (1-based; default: all).")
@click.option("--seeds", default=None, help="Comma-separated recipe seeds to train each rung at (default: its own).")
@click.option("--own-recordings", "own", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Split this folder of real recordings by speaker: train on one half's clips, judge on the other.")  # fmt: skip
@click.option("--clips", default=OWN_CLIPS, show_default=True, help="--own-recordings: donor clips per class folder.")
@click.option("--full-chain", is_flag=True, help="--own-recordings: run the whole chain, judge the TFLM bundle.")
@click.option("--repeat", default=1, show_default=True, help="--own-recordings: data.extra_train_repeat.")
def main(
    recipe_file: Path,
    runs_dir: Path,
    fields: tuple[str, ...],
    ablation: bool,
    epochs: int,
    rungs: str | None,
    seeds: str | None,
    own: Path | None,
    clips: str,
    full_chain: bool,
    repeat: int,
) -> None:
    extra = {}
    for item in fields:
        name, sep, path = item.partition("=")
        if not sep or not Path(path).is_dir():
            raise click.BadParameter(f"{item!r}: expected NAME=DIR with an existing DIR", param_hint="--field")
        extra[name] = Path(path)
    recipe = load_recipe(recipe_file)
    if own is not None:
        console = Console(width=max(Console().width, 170))
        epochs_given = click.get_current_context().get_parameter_source("epochs").name != "DEFAULT"
        own_recordings(recipe, pruned_chain(recipe), own, clip_counts(clips), epochs if epochs_given else None,
                       full_chain, integers(seeds, "--seeds") if seeds else None, runs_dir, console,
                       Reporter(console=console), repeat)  # fmt: skip
        return
    data = with_fields(pruned_chain(recipe), recipe, extra)  # the recipe itself, as a dict that loads again
    present = [f["name"] for f in data["data"]["field_tests"] if Path(f["path"]).is_dir()]
    if not present:
        raise click.UsageError("no field test folder exists: add one to the recipe's data.field_tests or --field")
    data["data"]["field_tests"] = [f for f in data["data"]["field_tests"] if f["name"] in present]
    console = Console(width=max(Console().width, 170))  # tables stay whole in logs too
    reporter = Reporter(console=console)
    rows: list[tuple[str, dict]] = []
    with tempfile.TemporaryDirectory() as tmp:
        if ablation:
            chosen = integers(rungs, "--rungs", range(1, len(LADDER) + 1)) if rungs else range(1, len(LADDER) + 1)
            seed_list = integers(seeds, "--seeds") if seeds else [recipe.seed]
            for label, synthetic, training in (LADDER[r - 1] for r in chosen):
                per_seed = []
                for seed in seed_list:
                    named = label if not seeds else f"{label}, seed {seed}"
                    reporter.log(f"[bold]{named}[/bold]")
                    variant = ablation_recipe(data, label, synthetic, training, epochs, seed)
                    result = run_variant(recipe, variant, Path(tmp), reporter, runs_dir)
                    per_seed += [(named, row) for row in field_rows(result) if row["model"] == "train"]
                rows += per_seed
                if len(per_seed) > 1:
                    mean = mean_row([row for _, row in per_seed], ["synthetic", *present])
                    rows.append((f"{label}: mean ± sd of {len(per_seed)} seeds", mean))
            title = f"Synthetic data ladder: {recipe.name}'s train stage, {epochs} epochs"
            print_table(console, title, rows, present, first="training data")
            return
        full = run_variant(recipe, data, Path(tmp), reporter, runs_dir)
        trained = run_variant(recipe, with_fields(as_trained(recipe), recipe, extra), Path(tmp), reporter, runs_dir)
    rows = [(row["model"], row) for row in field_rows(full)]
    unpruned = next((row for row in field_rows(trained) if row["model"] == "tflm"), None)
    if unpruned:
        rows.append(("tflm, unpruned", unpruned))
    print_table(console, f"{recipe.name}: synthetic voices vs real people", rows, present)
    pruned = next((row for _, row in rows if row["model"] == "tflm"), None)
    if unpruned and pruned:
        for name in ["synthetic", *present]:
            before, after = accuracy(unpruned, name), accuracy(pruned, name)
            console.print(
                f"pruning costs {100 * (before - after):+.1f} pts on {name} (int8 on TFLM: {before:.2%} → {after:.2%})"
            )


if __name__ == "__main__":
    main()
