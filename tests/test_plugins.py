"""The plugin architecture: targets found by folder or entry point, one-way imports, typed figures under budgets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from pipeline import budgets as budget_checks
from pipeline.engine.fingerprint import import_closure
from pipeline.measurement import Measurement, figure, figures
from pipeline.recipe import RecipeLoader, parse_recipe
from tests.conftest import ROOT, TINY

FAKE_PLUGIN = '''
"""A target shipped by another package: found through the `edge_pipeline.targets` entry point."""
from pydantic import Field

from pipeline.budgets import BudgetsConfig
from pipeline.measurement import Measurement, figures
from pipeline.schema import Strict


class Config(Strict):
    scale: float = Field(1.0, gt=0, le=100)
    budgets: BudgetsConfig = BudgetsConfig()


def compile(config, ctx):
    (ctx.out / "model.bin").write_bytes(ctx.export.file("model.tflite").read_bytes())


def measure(config, ctx):
    size = (ctx.out / "model.bin").stat().st_size
    return {
        **figures(
            flash=Measurement(size, "B", "size of model.bin", True),
            ram=Measurement(1024 * config.scale, "B", "a guess for the test", False),
            latency=Measurement(2.5, "ms", "a cycle model", False),
        ),
        "latency_ms": {"median": 2.5, "p90": 2.5, "runs": 0, "runtime": "cycle model"},
        "accuracy": None,
    }


def report(t):
    return [f"- fake NPU section: {t['flash_bytes']} bytes in model.bin"]
'''


@pytest.fixture(scope="module")
def fake_package(tmp_path_factory) -> Path:
    """An installed distribution `fake-npu` (a dist-info with an entry point) on a folder put on PYTHONPATH."""
    site = tmp_path_factory.mktemp("site")
    (site / "fake_npu").mkdir()
    (site / "fake_npu" / "__init__.py").write_text(FAKE_PLUGIN)
    info = site / "fake_npu-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-npu\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[edge_pipeline.targets]\nfake_npu = fake_npu\n")
    return site


def _env(site: Path) -> dict[str, str]:
    return os.environ | {"PYTHONPATH": str(site)}


def test_builtin_targets_are_folders_and_the_recipe_schema_comes_from_them():
    from pipeline.plugins import targets

    found = targets()
    assert {"tflm", "android", "openvino"} <= set(found)
    assert all(Path(module.__file__).name == "__init__.py" for module in found.values())
    with pytest.raises(Exception, match=r"targets\[0\]\.tflm\.latency_run: unknown key.*latency_runs"):
        parse_recipe(_tiny_with_targets([{"tflm": {"latency_run": 5}}]))
    with pytest.raises(Exception, match=r"unknown key 'tfml'; did you mean 'tflm'"):
        parse_recipe(_tiny_with_targets([{"tfml": {}}]))


def test_stages_are_folders_whose_schema_loads_without_tensorflow():
    from pipeline.plugins import stages

    assert set(stages()) >= {"train", "prune", "finetune", "quantize", "export"}
    code = f"import sys; from pipeline.recipe import load_recipe; load_recipe({str(TINY)!r}); print([m in sys.modules for m in ('tensorflow', 'nncf')])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[False, False]"  # validating a recipe stays cheap
    with pytest.raises(Exception, match=r"stages\[1\]\.prune\.ignore\[0\]: no layer 'conv9'"):
        parse_recipe(TINY.read_text().replace("  - prune: {", "  - prune: {ignore: [conv9], "))


def test_an_entry_point_adds_a_target_to_the_recipe_schema(fake_package):
    """A separate package's target validates like a built-in one: its own schema, located errors."""
    code = textwrap.dedent(
        """
        import sys
        from pipeline.plugins import targets
        from pipeline.recipe import RecipeError, parse_recipe
        print(sorted(targets()))
        recipe = parse_recipe(sys.stdin.read())
        print(recipe.targets[0].name, recipe.targets[0].config.scale)
        try:
            parse_recipe(sys.argv[1])
        except RecipeError as exc:
            print("ERROR", exc)
        """
    )
    good = _tiny_with_targets([{"fake_npu": {"scale": 2}}])
    bad = _tiny_with_targets([{"fake_npu": {"scale": 0}}])
    done = subprocess.run([sys.executable, "-c", code, bad], input=good, capture_output=True, text=True,
                          env=_env(fake_package), timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert "fake_npu" in lines[0] and "tflm" in lines[0]
    assert lines[1] == "fake_npu 2.0"
    assert lines[2].startswith("ERROR") and "targets[0].fake_npu.scale" in lines[2] and "greater than 0" in lines[2]


FAKE_STAGE = '''
"""A stage shipped by another package: weight averaging of the previous Keras model, say."""
from typing import ClassVar

from pydantic import Field

from pipeline.schema import StageConfig


class Config(StageConfig):
    consumes: ClassVar[str | None] = "keras"
    produces: ClassVar[str] = "keras"
    window: int = Field(3, ge=1, le=10)


def run(config, ctx):
    raise NotImplementedError("validated, not run, in this test")
'''


def test_an_entry_point_adds_a_stage_that_takes_its_place_in_the_chain(tmp_path):
    site = tmp_path / "site"
    (site / "smooth_stage").mkdir(parents=True)
    (site / "smooth_stage" / "__init__.py").write_text(FAKE_STAGE)
    info = site / "smooth_stage-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: smooth-stage\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[edge_pipeline.stages]\nsmooth = smooth_stage\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(TINY.read_text().replace("  - quantize: {", "  - smooth: {window: 5}\n  - quantize: {"))
    wrong = tmp_path / "w.yaml"  # a Keras stage after quantize gets a TFLite model: the chain check names it
    wrong.write_text(TINY.read_text().replace("  - export: {}", "  - smooth: {}\n  - export: {}"))
    validate = [sys.executable, "-m", "pipeline", "validate"]
    done = subprocess.run([*validate, str(recipe)], capture_output=True, text=True, env=_env(site), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "train → prune → finetune → smooth → quantize → export" in done.stdout
    done = subprocess.run([*validate, str(wrong)], capture_output=True, text=True, env=_env(site), timeout=120)
    assert done.returncode == 2 and "stage 'smooth' needs a keras model, but gets a tflite model" in done.stderr
    done = subprocess.run([*validate, str(recipe)], capture_output=True, text=True, timeout=120)  # not installed
    assert done.returncode == 2 and "unknown key 'smooth'" in done.stderr


def test_a_plugin_without_its_interface_is_named(tmp_path):
    site = tmp_path / "site"
    (site / "half_npu").mkdir(parents=True)
    (site / "half_npu" / "__init__.py").write_text("class Config:\n    pass\n")
    info = site / "half_npu-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: half-npu\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[edge_pipeline.targets]\nhalf_npu = half_npu\n")
    done = subprocess.run([sys.executable, "-m", "pipeline", "validate", str(TINY)], capture_output=True, text=True,
                          env=_env(site), timeout=120)  # fmt: skip
    assert done.returncode != 0
    assert "target 'half_npu' (half_npu) does not define compile, measure" in done.stderr


def test_a_third_party_target_runs_reports_and_is_refused_on_estimates(fake_package, tiny_run, tmp_path):
    """The runner and the report reach the plugin by name only. Its RAM and latency are estimates: a budget on
    them fails with the reason unless the recipe allows estimates."""
    runs, _ = tiny_run
    recipe = _tiny_with_targets([{"fake_npu": {"scale": 2, "budgets": {"ram_kb": 4, "flash_kb": 1000}}}])
    data = yaml.load(recipe, Loader=RecipeLoader)
    data["data"]["path"] = str(ROOT / "tests" / "recipes" / "does" / "not" / "exist")  # the tiny run's data key
    path = tmp_path / "tiny_fake.yaml"
    path.write_text(yaml.safe_dump(data))
    run = [sys.executable, "-m", "pipeline", "run", str(path), "--runs-dir", str(tmp_path / "runs"), "--cache",
           str(runs / ".cache")]  # fmt: skip
    done = subprocess.run(run, capture_output=True, text=True, env=_env(fake_package), timeout=600)
    assert done.returncode != 0, done.stdout[-2000:]
    report = json.loads((tmp_path / "runs" / "tiny" / "latest" / "report.json").read_text())
    assert all(s["cached"] for s in report["stages"])  # the stages are the tiny run's: nothing retrained
    budgets = {b["name"]: b for b in report["budgets"]}
    assert budgets["fake_npu.flash_kb"]["ok"] and budgets["fake_npu.flash_kb"]["estimate"] is None
    ram = budgets["fake_npu.ram_kb"]
    assert not ram["ok"] and ram["actual"] == 2.0 and ram["estimate"] == "a guess for the test"
    assert "is an estimate" in ram["message"] and "allow_estimates: true" in ram["message"]
    markdown = (tmp_path / "runs" / "tiny" / "latest" / "report.md").read_text()
    assert "- fake NPU section:" in markdown and "2.0 KB *estimate*" in markdown
    assert (tmp_path / "runs" / "tiny" / "latest" / "export" / "fake_npu" / "model.bin").exists()

    data["targets"][0]["fake_npu"]["budgets"]["allow_estimates"] = True
    path.write_text(yaml.safe_dump(data))
    done = subprocess.run(run, capture_output=True, text=True, env=_env(fake_package), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "runs" / "tiny" / "latest" / "report.json").read_text())
    assert all(b["ok"] for b in report["budgets"])


def test_a_latency_budget_on_tflm_refuses_the_host_time(tiny_run):
    """TFLM's latency is the host's invoke time standing in for the board's: typed an estimate."""
    runs, _ = tiny_run
    report = json.loads((runs / "tiny" / "latest" / "report.json").read_text())
    tflm = next(t for t in report["targets"] if t["name"] == "tflm")
    assert figure(tflm, "latency").measured is False and figure(tflm, "flash").measured is True
    assert figure(tflm, "flash").value == tflm["flash_bytes"] and figure(tflm, "ram").value == tflm["ram_bytes"]
    for allow, ok in ((False, False), (True, True)):
        recipe = parse_recipe(
            _tiny_with_targets([{"tflm": {"budgets": {"latency_ms": 1e6, "allow_estimates": allow}}}])
        )
        (result,) = [r for r in budget_checks.check(recipe, {}, {"tflm": tflm}) if r.name == "tflm.latency_ms"]
        assert result.ok is ok and result.estimate is not None


def test_measurements_round_trip_and_fill_the_flat_fields():
    fields = figures(
        flash=Measurement(1000, "B", "file size", True),
        ram=Measurement(2048, "B", "allocator", True),
        latency=Measurement(1.5, "ms", "model", False),
    )
    assert fields["flash_bytes"] == 1000 and fields["ram_bytes"] == 2048
    assert figure(fields, "latency") == Measurement(1.5, "ms", "model", False)
    assert figure({}, "latency") is None  # stages and old reports carry no typed figures


def test_imports_flow_one_way():
    """recipe -> plugins, never back: no target imports the recipe, runner, report or explain, and the recipe's
    import closure names no target (plugins are found at run time, so a target's code never keys training)."""
    above = {"pipeline.recipe", "pipeline.engine.runner", "pipeline.analysis.report", "pipeline.analysis.explain",
             "pipeline.analysis.field", "pipeline.cli", "pipeline.data"}  # fmt: skip
    for name in ("tflm", "android", "openvino"):
        modules, _ = import_closure(f"targets.{name}")
        assert not above & set(modules), (name, above & set(modules))
    recipe_modules, recipe_runtimes = import_closure("pipeline.recipe")
    assert not any(m.startswith("targets.") for m in recipe_modules)
    assert not {"tflite_micro", "openvino", "ai_edge_litert", "ethosu"} & set(recipe_runtimes)
    train_modules, _ = import_closure("pipeline.stages.train")
    assert not any(m.startswith("targets") for m in train_modules)


def test_no_module_imports_its_way_back_to_itself():
    """No import circles, function-level imports included (annotation-only ones are never run). A module that
    imports its own package is not a circle: that is how a stage's work module reads its schema."""
    from pipeline.engine.fingerprint import _direct_imports

    modules = [".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
               for top in ("pipeline", "targets") for p in (ROOT / top).rglob("*.py")]  # fmt: skip
    graph = {m: {d for d in _direct_imports(m)[0] if d != m and not m.startswith(d + ".")} for m in modules}
    for start in modules:
        seen, todo = set(), list(graph[start])
        while todo:
            module = todo.pop()
            assert module != start, f"{start} imports its way back to itself"
            if module not in seen and module in graph:
                seen.add(module)
                todo.extend(graph[module])


def _tiny_with_targets(targets: list[dict]) -> str:
    data = yaml.load(TINY.read_text(), Loader=RecipeLoader)
    data["targets"] = targets
    return yaml.safe_dump(data)
