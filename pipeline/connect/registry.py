"""A registry of firmware bundles that teams pin, pull and verify: any fsspec URL, a plain folder by default.

Layout under the registry root::

    <name>/<version>-<model sha8>/      the bundle's files, exactly as the run wrote them (manifest.json checksums)
    <name>/<version>-<model sha8>/version.json   written last: the version exists once this does
    index.json                          every published version with its figures (rebuilt on each publish)

Versions are integers, increasing per name, immutable once published. A version number is claimed by creating
its folder, which fails when another publisher got there first (atomic `mkdir` on local and network
filesystems; on object stores, where folders are not real, keep one publisher per name). Publishing a model that
is already there is a no-op that says so. `pull` copies a version beside `--into`, verifies every checksum there,
and only then swaps it in: a tampered or partial version never reaches the firmware tree.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.engine.store import replace_dir, write_json

INDEX = "index.json"
VERSION = "version.json"
CLAIMS = ".claims"  # one empty folder per version number taken: the number alone, so two models cannot share one
PULLED = ".edge-pipeline-bundle"  # in every folder `pull` wrote: it may replace only such a folder
DEFAULT_REGISTRY = "registry"


class RegistryError(ValueError):
    """A registry operation refused, with what is wrong and where."""


def _fs(url: str) -> tuple[Any, str]:
    import fsspec.core

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise RegistryError(f"registry {url}: {exc}") from None


def _versions(fs: Any, root: str, name: str) -> list[dict[str, Any]]:
    """Complete versions of `name`, oldest first (folders without version.json are unfinished and ignored)."""
    folder = f"{root}/{name}"
    if not fs.isdir(folder):
        return []
    out = []
    for path in fs.ls(folder, detail=False):
        marker = f"{path}/{VERSION}"
        if fs.isfile(marker):
            out.append(json.loads(fs.cat_file(marker)))
    return sorted(out, key=lambda v: v["version"])


def _claimed_numbers(fs: Any, root: str, name: str) -> list[int]:
    """Numbers taken by a claim or by a version folder (registries written before claims existed)."""
    numbers = []
    for folder in (f"{root}/{name}", f"{root}/{name}/{CLAIMS}"):
        if fs.isdir(folder):
            for path in fs.ls(folder, detail=False):
                head = path.rstrip("/").rsplit("/", 1)[-1].split("-", 1)[0]
                if head.isdigit():
                    numbers.append(int(head))
    return numbers


def figures(report: dict[str, Any]) -> dict[str, Any]:
    """What a firmware team compares versions by: accuracy (synthetic and field), flash, RAM, latency per target."""
    stages = {s["name"]: s for s in report["stages"]}
    field = report.get("field_tests") or {}
    deployed = next((m for m in field.get("models", []) if m.get("role") == "target"), None)
    return {
        "accuracy_synthetic": stages.get("export", {}).get("accuracy"),
        "accuracy_field": {k: v["accuracy"] for k, v in deployed["sets"].items() if k != "synthetic"}
        if deployed
        else {},
        "targets": {
            t["name"]: {
                "flash_bytes": t.get("flash_bytes"),
                "ram_bytes": t.get("ram_bytes"),
                "latency_ms": (t.get("latency_ms") or {}).get("median"),
                "accuracy": t.get("accuracy"),
            }
            for t in report["targets"]
        },  # fmt: skip
    }


def publish(run_dir: Path, url: str, target: str = "tflm") -> dict[str, Any]:
    """The run's `export/<target>` bundle as the next version of the recipe's name; a no-op for a model already
    published. The bundle must verify against its own manifest first."""
    from targets.tflm.bundle import verify_manifest

    bundle = Path(run_dir) / "export" / target
    if not (bundle / "manifest.json").is_file():
        raise RegistryError(
            f"{bundle}: no bundle (manifest.json) to publish; is {run_dir} a run with a {target} target?"
        )
    broken = verify_manifest(bundle)
    if broken:
        raise RegistryError(f"{bundle}: files do not match the bundle's manifest: {', '.join(broken)}")
    report = json.loads((Path(run_dir) / "report.json").read_text())
    manifest = json.loads((bundle / "manifest.json").read_text())
    name, sha = report["recipe"], manifest["model_sha256"]
    fs, root = _fs(url)
    fs.makedirs(f"{root}/{name}", exist_ok=True)
    for existing in _versions(fs, root, name):
        if existing["model_sha256"] == sha and existing["target"] == target:
            return existing | {"status": "already published"}
    fs.makedirs(f"{root}/{name}/{CLAIMS}", exist_ok=True)
    number = max(_claimed_numbers(fs, root, name), default=0) + 1
    while True:  # claim a number: creating its (sha-free) folder fails when another publisher was first
        try:
            fs.mkdir(f"{root}/{name}/{CLAIMS}/{number}", create_parents=False)
            break
        except FileExistsError:
            number += 1
    folder = f"{root}/{name}/{number}-{sha[:8]}"
    for file in [*manifest["files"], "manifest.json"]:  # the files it vouches for, subfolders included
        fs.makedirs(f"{folder}/{file}".rsplit("/", 1)[0], exist_ok=True)
        fs.put_file(str(bundle / file), f"{folder}/{file}")
    version = {
        "name": name, "version": number, "model_sha256": sha, "target": target, "bundle": manifest.get("bundle"),
        "recipe_fingerprint": report.get("recipe_fingerprint"), "run_id": report.get("run_id"),
        "published": datetime.now(timezone.utc).isoformat(timespec="seconds"), "figures": figures(report),
        "files": manifest["files"],
    }  # fmt: skip
    _put_json(fs, f"{folder}/{VERSION}", version)  # written whole, last: a reader never sees half a version
    _write_index(fs, root)
    return version | {"status": "published"}


def _put_json(fs: Any, path: str, value: Any) -> None:
    """Write beside, then move into place (atomic on local and network filesystems)."""
    folder, name = path.rsplit("/", 1)
    tmp = f"{folder}/.{name}.{os.getpid()}"
    fs.pipe_file(tmp, (json.dumps(value, indent=2) + "\n").encode())
    fs.mv(tmp, path)


def _write_index(fs: Any, root: str) -> None:
    names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False) if fs.isdir(p))
    index = {n: [{k: v for k, v in ver.items() if k != "files"} for ver in _versions(fs, root, n)] for n in names}
    _put_json(fs, f"{root}/{INDEX}", index)


def list_versions(url: str) -> dict[str, list[dict[str, Any]]]:
    fs, root = _fs(url)
    if not fs.isdir(root):
        raise RegistryError(f"registry {url}: no such folder")
    names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False) if fs.isdir(p))
    return {n: v for n in names if (v := _versions(fs, root, n))}


def pull(spec: str, url: str, into: Path) -> dict[str, Any]:
    """NAME or NAME@VERSION into `into`: copied beside it, every checksum verified there, then swapped in whole.
    Returns the version's index entry and what its model says about itself (`identity`)."""
    from targets.tflm.bundle import verify_manifest
    from targets.tflm.metadata import read_identity

    name, _, wanted = spec.partition("@")
    fs, root = _fs(url)
    versions = _versions(fs, root, name)
    if not versions:
        raise RegistryError(f"registry {url}: no published versions of '{name}'")
    if wanted:
        if not wanted.isdigit():
            raise RegistryError(f"{spec}: a version is a number (NAME@3)")
        chosen = next((v for v in versions if v["version"] == int(wanted)), None)
        if chosen is None:
            known = ", ".join(str(v["version"]) for v in versions)
            raise RegistryError(f"{spec}: no version {wanted} of '{name}' (published: {known})")
    else:
        chosen = versions[-1]
    into = Path(into)
    if (
        into.is_symlink()
        or (into.exists() and not into.is_dir())
        or (into.is_dir() and any(into.iterdir()) and not (into / PULLED).is_file())
    ):
        raise RegistryError(f"--into {into}: exists and was not written by `pipeline pull`; nothing was changed")
    into.parent.mkdir(parents=True, exist_ok=True)
    tmp = into.parent / f".{into.name}.pull-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        folder = f"{root}/{name}/{chosen['version']}-{chosen['model_sha256'][:8]}"
        for file in chosen["files"]:
            if Path(file).is_absolute() or ".." in Path(file).parts:
                raise RegistryError(f"{name}@{chosen['version']} in {url} lists a file outside its folder: {file}")
            (tmp / file).parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(f"{folder}/{file}", str(tmp / file))
        fs.get_file(f"{folder}/manifest.json", str(tmp / "manifest.json"))
        manifest = json.loads((tmp / "manifest.json").read_text())
        broken = verify_manifest(tmp)
        if manifest["files"] != chosen["files"] or manifest["model_sha256"] != chosen["model_sha256"]:
            broken.append("manifest.json")
        if broken:
            raise RegistryError(
                f"{name}@{chosen['version']} in {url} fails its checksums ({', '.join(sorted(set(broken)))}): "
                f"tampered or partial; {into} was left as it was"
            )
        model = tmp / "model.tflite"
        identity = read_identity(model.read_bytes()) if model.is_file() else None
        write_json(tmp / PULLED, {"name": name, "version": chosen["version"], "registry": url})
        replace_dir(tmp, into)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return chosen | {"identity": identity}
