"""The README's two commands are the ones CI runs."""

from tests.conftest import ROOT


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = "scripts/setup.sh && .venv/bin/pytest"
    assert test_command in readme and test_command in ci
    assert "scripts/setup.sh && .venv/bin/pipeline run recipes/kws_mcu.yaml" in readme
