"""`pipeline` command line. Exit codes: 0 ok, 1 a budget was violated, 2 bad input (recipe, paths), 3 a step failed."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import NoReturn

import click

EXIT_BUDGET, EXIT_INPUT, EXIT_FAILED = 1, 2, 3


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class _Main(click.Group):
    """A broken plugin (a target package without its interface) is named, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        from pipeline.plugins import PluginError

        try:
            return super().invoke(ctx)
        except PluginError as exc:
            click.echo(f"error: plugin: {exc}", err=True)
            sys.exit(EXIT_INPUT)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edge-pipeline")
def main() -> None:
    """Turn a model recipe into deployable, measured models for microcontrollers and phones."""


@main.command()
@click.argument("recipes", nargs=-1, required=True, type=click.Path(path_type=Path))
def validate(recipes: tuple[Path, ...]) -> None:
    """Check recipes without running anything."""
    from pipeline.recipe import RecipeError, load_recipe

    failed = False
    for path in recipes:
        try:
            recipe = load_recipe(path)
        except RecipeError as exc:
            click.echo(str(exc), err=True)
            failed = True
        else:
            click.echo(f"{path}: ok ({recipe.name}: {' → '.join(s.name for s in recipe.stages)})")
    sys.exit(EXIT_INPUT if failed else 0)


@main.command()
@click.argument("recipe_file", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write the run into this directory instead of runs/<recipe>/<run id>/.")  # fmt: skip
@click.option("--runs-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Where runs/<recipe>/<run id>/ and the artifact cache live.")  # fmt: skip
@click.option("--cache", type=click.Path(path_type=Path), default=None, envvar="PIPELINE_CACHE",
              help="Artifact cache (default: <runs-dir>/.cache).")  # fmt: skip
@click.option("--adb-serial", default=None, help="Also measure the android target on this phone (adb serial).")
@click.option("--benchmark-model", type=click.Path(path_type=Path), default=None,
              help="TFLite's benchmark_model binary for that phone's ABI.")  # fmt: skip
@click.option("--remeasure", is_flag=True,
              help="Take every target's measurements again (latency, memory, devices); builds stay cached.")  # fmt: skip
@click.option("--mlflow", "mlflow_uri", default=None, metavar="URI",
              help="Log the run to MLflow (a server URL, sqlite:///file.db, or a local folder); wins over the "
                   "recipe's `tracking:`.")  # fmt: skip
@click.option("--experiment", default=None, help="MLflow experiment (default: the recipe's, else its name).")
@click.option("-q", "--quiet", is_flag=True, help="Only print the summary.")
def run(
    recipe_file: Path,
    out: Path | None,
    runs_dir: Path,
    cache: Path | None,
    adb_serial: str | None,
    benchmark_model: Path | None,
    remeasure: bool,
    mlflow_uri: str | None,
    experiment: str | None,
    quiet: bool,
) -> None:
    """Run RECIPE_FILE: stages, targets, report. Finished steps are reused from the cache; measurements are
    replayed from it too, unless --remeasure (or a device the recipe names was unreachable last time)."""
    from pydantic import ValidationError

    from pipeline.recipe import RecipeError, load_recipe

    try:
        recipe = load_recipe(recipe_file)
        phone = {k: v for k, v in (("adb_serial", adb_serial), ("benchmark_model", benchmark_model)) if v}
        if phone:
            recipe = recipe.with_target_options("android", **phone)
    except RecipeError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_INPUT)
    except (ValueError, ValidationError) as exc:
        click.echo(f"error: {recipe_file}: --adb-serial/--benchmark-model: {exc}", err=True)
        sys.exit(EXIT_INPUT)

    _quiet_tensorflow()
    from pipeline.data import DataError
    from pipeline.engine.progress import Reporter, new_log_file
    from pipeline.engine.runner import OutputError, check_out, run_recipe

    if out is not None:
        try:
            check_out(out)
        except OutputError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_INPUT)
    reporter = Reporter(quiet=quiet, log_file=new_log_file(runs_dir / ".logs"))
    try:
        result = run_recipe(
            recipe, recipe_file, reporter, runs_root=runs_dir, out=out, cache=cache, remeasure=remeasure
        )
    except (DataError, OutputError) as exc:
        reporter.close()
        click.echo(f"error: {recipe_file}: {'data: ' if isinstance(exc, DataError) else ''}{exc}", err=True)
        sys.exit(EXIT_INPUT)
    except KeyboardInterrupt:
        reporter.close()
        click.echo("interrupted: finished steps are cached; run again to resume", err=True)
        sys.exit(130)
    except Exception:  # a step failed: show where, keep the budget exit code unambiguous
        reporter.close()
        import traceback

        traceback.print_exc()
        click.echo(
            f"error: a step failed (above; full log {reporter.log_file}); finished steps are cached, a re-run "
            "resumes after them",
            err=True,
        )
        sys.exit(EXIT_FAILED)
    finally:
        reporter.close()

    _print_summary(result.report, result.run_dir)
    where = _tracking_for(recipe, mlflow_uri, experiment)
    if where is not None:
        _track(result.run_dir.resolve(), *where)
    if result.failed_budgets:
        for b in result.failed_budgets:
            click.echo(f"budget violated: {b['message']}", err=True)
        sys.exit(EXIT_BUDGET)


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", type=click.Choice(["tflm"]), default="tflm", show_default=True)
@click.option(
    "--board",
    default=None,
    help="A board profile (targets/tflm/boards.py): shares of its memory, and with an emulator the bundle built as "
    "firmware for its core and measured on QEMU (instructions, target arena, linked flash and RAM).",
)
@click.option("--emulate/--no-emulate", default=True, show_default=True,
              help="Build and run the firmware on the board's emulator when it has one.")  # fmt: skip
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Bundle directory (default: runs/profile/<model name>).")  # fmt: skip
@click.option("--runs", type=click.IntRange(min=10), default=100, show_default=True, help="Timed invokes.")
@click.option("--headroom", type=click.FloatRange(0, 4), default=0.0, show_default=True,
              help="Share added to the measured arena in model_config.h.")  # fmt: skip
@click.option("--memory-plan/--no-memory-plan", default=True, show_default=True,
              help="Plan the arena offline; ship the planned model when TFLM needs less with it (verified).")  # fmt: skip
def profile(
    model: Path,
    target: str,
    board: str | None,
    emulate: bool,
    out: Path | None,
    runs: int,
    headroom: float,
    memory_plan: bool,
) -> None:
    """Measure any .tflite on TFLite Micro and write its firmware bundle (for a model no recipe made)."""
    from pipeline.schema import suggest
    from targets.tflm.boards import BOARDS

    if not model.is_file():
        click.echo(f"error: {model}: no such file", err=True)
        sys.exit(EXIT_INPUT)
    if board is not None and board not in BOARDS:
        click.echo(f"error: --board: unknown board '{board}'{suggest(board, BOARDS)}", err=True)
        sys.exit(EXIT_INPUT)
    from pipeline.engine.store import replace_dir
    from pipeline.tflite_model import ModelFormatError
    from targets.tflm import ModelNotSupportedError, TflmError
    from targets.tflm import profile as profile_tflm
    from targets.tflm.bundle import UnsupportedOpError

    out = out or Path("runs") / "profile" / model.stem
    if (
        out.is_symlink()
        or (out.exists() and not out.is_dir())
        or (out.is_dir() and any(out.iterdir()) and not (out / "profile.json").is_file())
    ):
        click.echo(f"error: --out {out}: exists and is not an earlier profile bundle; nothing was written", err=True)
        sys.exit(EXIT_INPUT)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"  # built beside, swapped in whole: no half bundle at --out
    try:
        report = profile_tflm(
            model, tmp, board=board, runs=runs, headroom=headroom, log=lambda m: click.echo(m, err=True),
            plan_memory=memory_plan, emulate=emulate,
        )  # fmt: skip
        replace_dir(tmp, out)
    except (ModelFormatError, UnsupportedOpError, ModelNotSupportedError) as exc:
        click.echo(f"error: {model}: {exc}", err=True)
        sys.exit(EXIT_INPUT)
    except TflmError as exc:
        click.echo(f"error: {model}: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    arena, lat = report["arena"], report["latency_ms"]
    click.echo(f"{model}: {', '.join(report['ops'])}; {report['macs']:,} MACs")
    _echo_identity(report.get("identity"))
    click.echo(f"  flash  {report['flash_bytes']:,} B (model array)")
    click.echo(
        f"  arena  {arena['measured']:,} B measured (head {arena['head']:,} + tail {arena['tail']:,}); "
        f"live-tensor lower bound {arena['lower_bound']:,} B; ~{arena['mcu_estimate']['bytes']:,} B on a 32-bit MCU (estimate)"
    )
    click.echo(
        f"  invoke {lat['median']:.3f} ms median, {lat['p90']:.3f} ms p90 over {lat['runs']} runs ({lat['runtime']})"
    )
    plan = report.get("memory_plan")
    if plan:
        shipped = "shipped (outputs bit-identical)" if plan["shipped"] else f"not shipped: {plan['reason']}"
        click.echo(
            f"  plan   TFLM head {plan['tflm_head']:,} B, ours {plan['planned_head']:,} B, lower bound "
            f"{plan['lower_bound']:,} B ({plan['method']}, {plan['seconds']:.2f} s); {shipped}"
        )
    if "board" in report:
        b = report["board"]
        click.echo(
            f"  {b['name']}: RAM {b['ram_share']:.1%}, flash {b['flash_share']:.1%}, latency ~{b['latency_estimate_ms']:.1f} ms (estimate)"
        )
    on_board = report.get("on_board")
    if on_board:
        fig = on_board["figures"]
        click.echo(
            f"  firmware on QEMU {on_board['machine']} ({on_board['core']}, {on_board['kernels']}): "
            f"{on_board['instructions_per_invoke']:,.0f} instructions per invoke; outputs equal the interpreter's on "
            f"{on_board['outputs_match']}/{on_board['vectors']} inputs; arena_used_bytes() {on_board['arena_used_bytes']:,} B"
        )
        click.echo(f"  linked flash {fig['flash']['value']:,.0f} B, RAM {fig['ram']['value']:,.0f} B; latency "
                   f"{fig['latency']['value']:.2f} ms ({fig['latency']['method']})")  # fmt: skip
    elif report.get("on_board_unavailable"):
        click.echo(f"  firmware not measured: {report['on_board_unavailable']}")
    click.echo(f"bundle {report['bundle']}: {out}")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--cache", type=click.Path(path_type=Path), default=None, envvar="PIPELINE_CACHE",
              help="Artifact cache holding the run's features (default: the run's runs/.cache).")  # fmt: skip
def explain(run_dir: Path, cache: Path | None) -> None:
    """Recompute RUN_DIR's explainability section (agreement, attribution drift, pictures) from its models; the
    control twin comes from the cache (trained once if the cache no longer holds it)."""
    from pipeline.recipe import RecipeError

    if not (run_dir / "report.json").is_file() or not (run_dir / "recipe.yaml").is_file():
        click.echo(f"error: {run_dir}: not a run directory (needs report.json and recipe.yaml)", err=True)
        sys.exit(EXIT_INPUT)
    _quiet_tensorflow()
    from pipeline.engine.progress import Reporter, new_log_file
    from pipeline.engine.runner import reexplain

    reporter = Reporter(log_file=new_log_file(run_dir / ".logs"))  # library chatter goes there, not here
    try:
        report = reexplain(run_dir, reporter, cache)
    except RecipeError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_INPUT)
    except Exception:  # a crash is not a budget verdict
        _step_failed("recomputing the explain section failed")
    finally:
        reporter.close()
    for row in report["explain"]["models"]:
        rho = row["occlusion"]["spearman"]
        click.echo(f"{row['model']:<22} agreement {row['agreement']:.4f}  occlusion Spearman "
                   f"{'–' if rho is None else f'{rho:.3f}'}  IoU {row['occlusion']['iou']:.3f}")  # fmt: skip
    click.echo(f"report: {run_dir / 'report.md'}")
    failed = [b for b in report["budgets"] if not b["ok"]]
    for b in failed:
        click.echo(f"budget violated: {b['message']}", err=True)
    sys.exit(EXIT_BUDGET if failed else 0)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="A folder of recordings in the Speech Commands layout (<label>/<file>.wav).")  # fmt: skip
@click.option("--name", default=None, help="Name of this field set in the report (default: the folder's name).")
@click.option("--stream", "stream", type=click.Path(path_type=Path), default=None,
              help="A long recording (WAV) to listen to continuously, with --labels.")  # fmt: skip
@click.option("--labels", "labels_file", type=click.Path(path_type=Path), default=None,
              help="Its keyword times: CSV start,end,word (seconds) or an Audacity label file.")  # fmt: skip
@click.option("--streams", "recipe_streams", is_flag=True,
              help="Listen to the recipe's streams (synthetic test, field sets); adds the section to an older run.")  # fmt: skip
@click.option("--cache", type=click.Path(path_type=Path), default=None, envvar="PIPELINE_CACHE",
              help="Artifact cache holding the run's features (default: the run's runs/.cache).")  # fmt: skip
def evaluate(run_dir: Path, data_dir: Path | None, name: str | None, stream: Path | None, labels_file: Path | None,
             recipe_streams: bool, cache: Path | None) -> None:  # fmt: skip
    """Judge every model of RUN_DIR after the fact (no retraining): on a folder of real recordings beside the
    synthetic test (--data), or listening continuously to a labelled recording (--stream, --labels)."""
    import re

    from pipeline.recipe import RecipeError

    def fail(message: str) -> NoReturn:
        click.echo(f"error: {message}", err=True)
        sys.exit(EXIT_INPUT)

    if not (run_dir / "report.json").is_file() or not (run_dir / "recipe.yaml").is_file():
        fail(f"{run_dir}: not a run directory (needs report.json and recipe.yaml)")
    if sum(x is not None and x is not False for x in (data_dir, stream, recipe_streams or None)) != 1:
        fail("give one of --data FOLDER, --stream FILE.wav --labels FILE, or --streams")
    if stream is not None and (labels_file is None or not labels_file.is_file()):
        fail(f"--stream needs --labels with the keyword times ({labels_file or 'missing'}: no such file)")
    if stream is not None and not stream.is_file():
        fail(f"--stream {stream}: no such file")
    if data_dir is not None and not data_dir.is_dir():
        fail(f"--data {data_dir}: no such folder")
    if data_dir is not None:
        name = name or data_dir.resolve().name
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
            fail(f"--name {name!r}: use letters, digits, '.', '_' or '-'")
    from pipeline.streams import LabelsError, read_labels

    if labels_file is not None:  # before any heavy work: a label file with a bad line fails at once
        try:
            read_labels(labels_file, json.loads((run_dir / "report.json").read_text())["data"]["labels"])
        except LabelsError as exc:
            fail(str(exc))
    _quiet_tensorflow()
    from pipeline.data import DataError
    from pipeline.engine.progress import Reporter, new_log_file
    from pipeline.engine.runner import evaluate_run, evaluate_streams

    reporter = Reporter(log_file=new_log_file(run_dir / ".logs"))  # library chatter goes there, not here
    try:
        if data_dir is not None:
            report = evaluate_run(run_dir, data_dir, name, reporter, cache)
        else:
            report = evaluate_streams(run_dir, reporter, cache, stream, labels_file)
    except (RecipeError, DataError, LabelsError) as exc:
        fail(str(exc))
    except Exception:
        _step_failed("evaluating the run failed")
    finally:
        reporter.close()
    if data_dir is not None:
        field = report["field_tests"]
        click.echo(f"{'model':<22} {'runtime':<14} {'synthetic':>10} {name:>14}")
        for row in field["models"]:
            click.echo(f"{row['model']:<22} {row['runtime']:<14} {row['sets']['synthetic']['accuracy']:>10.4f} "
                       f"{row['sets'][name]['accuracy']:>14.4f}")  # fmt: skip
    else:
        result = report["streaming"]
        judged = [stream.stem] if stream is not None else [s["name"] for s in result["streams"]]
        click.echo(f"{'model':<22} {'stream':<18} {'keywords':>8} {'missed':>8} {'false accepts':>14} {'FA/h':>8}")
        for row in result["models"]:
            for n in judged:
                r = row["sets"][n]
                missed = "–" if r["miss_rate"] is None else f"{r['miss_rate']:.1%}"
                click.echo(f"{row['model']:<22} {n:<18} {r['keywords']:>8} {missed:>8} {r['false_accepts']:>14} "
                           f"{r['fa_per_hour']:>8.2f}")  # fmt: skip
    click.echo(f"report: {run_dir / 'report.md'}")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--inventory", type=click.Path(path_type=Path), required=True, help="Devices YAML (see pipeline/connect/hil.py)."
)
@click.option("--runs", type=click.IntRange(min=1), default=100, show_default=True, help="Timed inferences per device.")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True)
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Where hil.json/hil.xml go (default RUN_DIR)."
)
def hil(run_dir: Path, inventory: Path, runs: int, warmup: int, out: Path | None) -> None:
    """Measure RUN_DIR's exports on every reachable device; unreachable ones are skipped, not failed."""
    from pipeline.connect.hil import load_inventory, run_hil, write_results
    from pipeline.recipe import RecipeError

    try:
        devices = load_inventory(inventory)
    except RecipeError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_INPUT)
    if not (run_dir / "report.json").is_file():
        click.echo(f"error: {run_dir}: not a run directory (no report.json)", err=True)
        sys.exit(EXIT_INPUT)
    _quiet_tensorflow()
    try:
        result = run_hil(run_dir.resolve(), devices, runs, warmup, log=lambda m: click.echo(m, err=True))
        json_path, xml_path = write_results(result, out or run_dir)
    except Exception:  # a crash is not a budget verdict
        _step_failed("hardware-in-the-loop measurement failed")
    for d in result["devices"]:
        lat = d.get("latency_ms")
        figure = f"{lat['median']:.3f} ms median" if lat else d.get("reason") or "; ".join(d.get("problems", []))
        click.echo(f"{d['device']:<20} {d['status']:<9} {figure}")
    click.echo(f"results: {json_path}, {xml_path}")
    sys.exit(EXIT_FAILED if any(d["status"] == "failed" for d in result["devices"]) else 0)


_REGISTRY = click.option(
    "--registry", envvar="PIPELINE_REGISTRY", default="registry", show_default=True,
    help="Any fsspec URL (a folder, file://, s3://, gs://, ...); or $PIPELINE_REGISTRY.",
)  # fmt: skip


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@_REGISTRY
@click.option("--target", default="tflm", show_default=True, help="Which of the run's bundles (export/<target>).")
def publish(run_dir: Path, registry: str, target: str) -> None:
    """Publish RUN_DIR's bundle as the next version of its recipe's name (a no-op when already there)."""
    from pipeline.connect.registry import RegistryError
    from pipeline.connect.registry import publish as publish_run

    if not (run_dir / "report.json").is_file():
        click.echo(f"error: {run_dir}: not a run directory (no report.json)", err=True)
        sys.exit(EXIT_INPUT)
    try:
        version = publish_run(run_dir, registry, target)
    except RegistryError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INPUT)
    click.echo(
        f"{version['name']}@{version['version']} ({version['model_sha256'][:8]}): {version['status']} in {registry}"
    )


@main.command()
@click.argument("spec", metavar="NAME[@VERSION]")
@_REGISTRY
@click.option("--into", type=click.Path(path_type=Path), required=True, help="Folder in your firmware tree.")
def pull(spec: str, registry: str, into: Path) -> None:
    """Fetch a bundle, verify every checksum, and only then put it at --into."""
    from pipeline.connect.registry import RegistryError
    from pipeline.connect.registry import pull as pull_version

    try:
        version = pull_version(spec, registry, into)
    except RegistryError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INPUT)
    click.echo(f"{version['name']}@{version['version']} ({version['bundle']}) verified and written to {into}")
    _echo_identity(version.get("identity"))


def _echo_identity(identity: dict | None) -> None:
    """What a model this pipeline made says about itself (its "edge_pipeline" metadata)."""
    if identity:
        click.echo(
            f"  model  made by recipe '{identity['recipe']}' (fingerprint {identity['recipe_fingerprint'][:12]}), "
            f"model version {identity['model_version']}, {identity['producer']}; labels {', '.join(identity['labels'])}"
        )
        click.echo(
            f"         front end {identity['frontend_fingerprint']}, arena {identity['arena_bytes']:,} B as measured"
        )


@main.command(name="list")
@_REGISTRY
def list_registry(registry: str) -> None:
    """Every published version with its figures."""
    from pipeline.analysis.markdown import size_text
    from pipeline.connect.registry import RegistryError, list_versions

    try:
        names = list_versions(registry)
    except RegistryError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INPUT)
    for name, versions in names.items():
        for v in versions:
            figs = v["figures"]
            targets = "; ".join(
                f"{t}: flash {size_text(f['flash_bytes'])}, RAM {size_text(f['ram_bytes'])}"
                for t, f in figs["targets"].items()
            )
            acc = figs.get("accuracy_synthetic")
            click.echo(f"{name}@{v['version']}  {v['model_sha256'][:8]}  {v['published']}  "
                       f"accuracy {acc if acc is None else f'{acc:.4f}'}  {targets}")  # fmt: skip


@main.command()
@click.argument("sweep_file", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write the sweep here (default runs/sweeps/<name>); an interrupted sweep in it resumes.")  # fmt: skip
@click.option("--cache", type=click.Path(path_type=Path), default=None,
              help="Artifact cache the trials share (default runs/.cache); on a cluster, a path every node sees.")  # fmt: skip
@click.option("--address", default=None,
              help="Ray cluster to run on (default $RAY_ADDRESS; without either, Ray starts here).")  # fmt: skip
@click.option("--mlflow", "mlflow_uri", default=None, metavar="URI",
              help="Log the sweep to MLflow: a parent run, a child run per trial (default: the base recipe's "
                   "`tracking:`).")  # fmt: skip
@click.option("--experiment", default=None, help="MLflow experiment (default: the recipe's, else the sweep's name).")
def sweep(sweep_file: Path, out: Path | None, cache: Path | None, address: str | None, mlflow_uri: str | None,
          experiment: str | None) -> None:  # fmt: skip
    """Run the trials of SWEEP_FILE on Ray Tune; write the Pareto front, its plots and best.yaml."""
    from pipeline.engine.sweep import SWEEP_MARKER, load_sweep, run_sweep
    from pipeline.recipe import RecipeError

    try:
        loaded = load_sweep(sweep_file)
    except RecipeError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_INPUT)
    out = out or Path("runs") / "sweeps" / loaded.config.name
    if out.is_symlink() or (out.exists() and not out.is_dir()) or (
        out.is_dir() and any(out.iterdir()) and not (out / SWEEP_MARKER).is_file()
    ):  # fmt: skip
        click.echo(f"error: --out {out}: exists and was not written by `pipeline sweep`; nothing was written", err=True)
        sys.exit(EXIT_INPUT)
    earlier = out / "sweep.yaml"
    if earlier.is_file() and earlier.read_text() != sweep_file.read_text():
        click.echo(f"error: --out {out} holds a sweep of another version of {sweep_file.name}; resuming it would mix "
                   "the two. Choose a new --out.", err=True)  # fmt: skip
        sys.exit(EXIT_INPUT)
    _quiet_tensorflow()
    try:
        result = run_sweep(loaded, out, cache or Path("runs") / ".cache", address, lambda m: click.echo(m, err=True))
    except KeyboardInterrupt:
        click.echo(f"interrupted: finished trials are kept; run the same command again to resume ({out})", err=True)
        sys.exit(130)
    trials = result["trials"]
    failed = [t for t in trials if t["state"] == "failed"]
    click.echo(f"{len(trials)} trials, {len(failed)} failed; Pareto front: {len(result['pareto'])}")
    for t in trials:
        figs = ", ".join(f"{k} {v:.4g}" for k, v in (t.get("figures") or {}).items())
        mark = "*" if t["name"] == result["best"] else ("+" if t.get("pareto") else " ")
        click.echo(f" {mark} {t['name']}: {figs or 'failed: ' + t.get('reason', '')}")
    if result["best"] is None:
        click.echo("no trial is within the budgets; see pareto.json", err=True)
    click.echo(f"best within budgets: {result['best']} -> {out / 'best.yaml'}; plots {out / 'pareto.png'}")
    tracking = _tracking_for(loaded.recipe(loaded.fixed()), mlflow_uri, experiment)
    if tracking is not None:
        from pipeline.connect.tracking import TrackingError, log_sweep

        uri, chosen, base = tracking
        try:
            where, failed = log_sweep(out, result, uri, chosen, base=base)
        except TrackingError as exc:
            failed, where = [str(exc)], None
        for reason in failed:
            click.echo(f"warning: not logged to MLflow: {reason}; run the same command again to complete it", err=True)
        if where:
            click.echo(f"logged to MLflow: {where}")
    sys.exit(0 if result["best"] is not None else EXIT_BUDGET)


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--mlflow", "mlflow_uri", required=True, metavar="URI",
              help="MLflow tracking URI: a server URL, sqlite:///file.db, file:///dir, or a local folder.")  # fmt: skip
@click.option("--experiment", default=None, help="MLflow experiment (default: each run's recipe name).")
def track(run_dirs: tuple[Path, ...], mlflow_uri: str, experiment: str | None) -> None:
    """Log finished runs to MLflow after the fact (a run logged before is not logged twice)."""
    missing = [d for d in run_dirs if not (d / "report.json").is_file()]
    if missing:
        click.echo(f"error: {', '.join(map(str, missing))}: not a finished run (no report.json)", err=True)
        sys.exit(EXIT_INPUT)
    failed = [d for d in run_dirs if not _track(d.resolve(), mlflow_uri, experiment, Path.cwd())]
    sys.exit(EXIT_FAILED if failed else 0)


def _tracking_for(recipe: object, mlflow_uri: str | None, experiment: str | None) -> tuple | None:
    """(URI, experiment, the folder a relative URI is taken from), or None for no tracking: the command line's
    URI (relative to here) wins over the recipe's `tracking:` (relative to the recipe's folder)."""
    tracking = getattr(recipe, "tracking", None)
    if mlflow_uri:
        return mlflow_uri, experiment or (tracking.experiment if tracking else None), Path.cwd()
    if tracking:
        return tracking.mlflow, experiment or tracking.experiment, recipe.base_dir
    return None


def _track(run_dir: Path, uri: str, experiment: str | None, base: Path | None) -> bool:
    """Log one run; a tracking server that is down is a warning, since the run itself is complete."""
    from pipeline.connect.tracking import TrackingError, local_folder, log_run

    try:
        _, where = log_run(run_dir, uri, experiment, base=base)
    except TrackingError as exc:
        again = f"pipeline track {run_dir} --mlflow {local_folder(uri, base) or uri}"
        click.echo(f"warning: {run_dir} was not logged to MLflow: {exc}. The run is complete; log it later with "
                   f"`{again}{f' --experiment {experiment}' if experiment else ''}`", err=True)  # fmt: skip
        return False
    click.echo(f"logged to MLflow: {where}")
    return True


@main.command()
@click.argument("kind", type=click.Choice(["recipe", "sweep", "devices"]), default="recipe")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None, help="Write here instead of stdout.")
@click.option("--reference", is_flag=True, help="The recipe reference in Markdown instead of the JSON Schema.")
def schema(kind: str, out: Path | None, reference: bool) -> None:
    """Write the JSON Schema of KIND files (installed stage and target plugins included), for editors: point a
    YAML language server at it with `# yaml-language-server: $schema=FILE` as a recipe's first line."""
    from pipeline.json_schema import dumps, json_schema
    from pipeline.json_schema import reference as recipe_reference

    if reference and kind != "recipe":
        click.echo("error: --reference: only for recipes", err=True)
        sys.exit(EXIT_INPUT)
    text = recipe_reference() if reference else dumps(json_schema(kind))
    if out is None:
        click.echo(text, nl=False)
        return
    from pipeline.engine.store import write_atomic

    write_atomic(out, text)
    click.echo(f"wrote {out}", err=True)


@main.command()
@click.argument("name")
@click.option("--keywords", required=True, help="Comma-separated words to spot, e.g. yes,no,stop.")
@click.option("--board", default="cortex-m4f-256k", show_default=True, help="The tflm target's board.")
@click.option("--targets", "target_list", default="tflm,android,openvino", show_default=True,
              help="Comma-separated targets: tflm, android, openvino, ethos_u.")  # fmt: skip
@click.option("--out", type=click.Path(path_type=Path), default=Path("."), show_default=True,
              help="Folder to write NAME.yaml (and recipe.schema.json beside it) into.")  # fmt: skip
@click.option("--force", is_flag=True, help="Replace an existing NAME.yaml.")
def init(name: str, keywords: str, board: str, target_list: str, out: Path, force: bool) -> None:
    """Write NAME.yaml: a new, commented recipe shaped like the flagship, valid before it is written."""
    from pipeline.json_schema import dumps, json_schema
    from pipeline.starter import StarterError, starter_recipe, write_starter

    words = [w.strip() for w in keywords.split(",") if w.strip()]
    wanted = [t.strip() for t in target_list.split(",") if t.strip()]
    try:
        text = starter_recipe(name, words, board, wanted, "recipe.schema.json")
        recipe_file, schema_file = write_starter(out / f"{name}.yaml", text, dumps(json_schema("recipe")), force)
    except StarterError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INPUT)
    except FileExistsError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INPUT)
    click.echo(f"wrote {recipe_file} (and {schema_file.name} beside it); run it with: pipeline run {recipe_file}")


def _step_failed(what: str) -> None:
    import traceback

    traceback.print_exc()
    click.echo(f"error: {what} (above)", err=True)
    sys.exit(EXIT_FAILED)


def _print_summary(report: dict, run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from pipeline.analysis.markdown import size_text
    from pipeline.measurement import figure

    console = Console()
    table = Table(title=f"{report['recipe']} · {report['run_id']}", title_justify="left")
    for col in ("step", "accuracy", "size / flash", "RAM", "latency median", "time"):
        table.add_column(col, justify="left" if col == "step" else "right")
    for s in report["stages"]:
        size = size_text(s["bytes"]) if s.get("bytes") else ""
        when = "cached" if s["cached"] else f"{s['seconds']:.1f} s"
        table.add_row(s["name"], f"{s['accuracy']:.4f}", size, "", "", when)
    for t in report["targets"]:
        when = "cached" if t["cached"] else f"{t['seconds']:.1f} s"
        latency = figure(t, "latency")
        estimate = " (estimate)" if latency is not None and not latency.measured else ""
        table.add_row(
            f"→ {t['name']}", "–" if t.get("accuracy") is None else f"{t['accuracy']:.4f}",
            size_text(t["flash_bytes"]), size_text(t["ram_bytes"]), f"{t['latency_ms']['median']:.3f} ms{estimate}", when,
        )  # fmt: skip
    console.print(table)
    console.print(f"report: {run_dir / 'report.md'}")
