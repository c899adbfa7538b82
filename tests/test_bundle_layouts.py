"""Firmware bundles drop into CMake, Zephyr and Arduino projects, and the model says who it is (issue #19, items 2-3).

What needs no TFLM headers (model array, configuration, front end, metadata check) is compiled here: with the host
`cc`/`c++` through the bundle's own CMake project and its ctest, and with `arm-none-eabi-gcc` for a Cortex-M4F when
that cross compiler is installed (`scripts/setup.sh` installs it with apt when it can).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess

import pytest
import yaml

from pipeline.connect.registry import publish
from pipeline.tflite_model import read_model
from targets.tflm.bundle import write_c_array
from targets.tflm.metadata import embed, identity, read_identity
from tests.conftest import run_cli

ARM = ["-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-mthumb", "-Os", "-Wall", "-Wextra", "-Werror"]


@pytest.fixture(scope="module")
def bundle(tiny_run):
    runs, _ = tiny_run
    return (runs / "tiny" / "latest" / "export" / "tflm").resolve()


def _cmake_ctest(source, build) -> subprocess.CompletedProcess:
    for step in (["cmake", "-S", str(source), "-B", str(build)], ["cmake", "--build", str(build)]):
        done = subprocess.run(step, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return subprocess.run(["ctest", "--test-dir", str(build), "-V"], capture_output=True, text=True, timeout=300)


needs_cmake = pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("c++") is None, reason="no cmake/c++")


@needs_cmake
def test_publish_pull_then_cmake_build_and_ctest_pass(bundle, tmp_path):
    """The issue's 'done when': publish -> pull -> cmake -S <pulled> -B build && cmake --build && ctest."""
    run_dir = bundle.parent.parent
    registry = tmp_path / "registry"
    publish(run_dir, str(registry))
    into = tmp_path / "firmware" / "kws"
    done = run_cli("pull", "tiny@1", "--registry", str(registry), "--into", str(into))
    assert done.returncode == 0, done.stderr
    assert "made by recipe 'tiny'" in done.stdout and "front end" in done.stdout  # pull reads the model's identity
    tested = _cmake_ctest(into, tmp_path / "build")
    assert tested.returncode == 0, tested.stdout[-3000:]
    assert "model metadata names this front end: yes" in tested.stdout and "100% tests passed" in tested.stdout
    clips = re.findall(r"max feature error ([0-9.e+-]+)", tested.stdout)
    assert len(clips) >= 5 and max(float(c) for c in clips) < 1e-3


@needs_cmake
def test_ctest_fails_when_the_model_and_the_front_end_are_out_of_step(bundle, tmp_path):
    """A model whose metadata names another front end (here: another input scale) fails the boot check."""
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    model = (copy / "model.tflite").read_bytes()
    graph = read_model(model)
    inp = graph.tensors[graph.inputs[0]]
    info = read_identity(model)
    other = identity(
        model, recipe="tiny", recipe_fingerprint="x", labels=info["labels"], features=info["features"],
        input_tensor=dataclasses.replace(inp, scale=inp.scale * 2), arena_bytes=1, producer="test",
    )  # fmt: skip
    assert other["frontend_fingerprint"] != info["frontend_fingerprint"]
    write_c_array(embed(model, other), copy / "src", "tiny")
    tested = _cmake_ctest(copy, tmp_path / "build")
    assert tested.returncode != 0 and "model metadata names this front end: NO" in tested.stdout


def test_c_reads_the_models_metadata_as_python_does_and_survives_broken_arrays(bundle, tmp_path):
    """model_metadata.c returns the exact JSON bytes; on every truncation and on flipped bytes it answers without
    reading out of bounds (AddressSanitizer and UBSan watch)."""
    if shutil.which("cc") is None or shutil.which("c++") is None:
        pytest.skip("no host C/C++ compiler")
    main = tmp_path / "main.c"
    main.write_text(
        r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model_data.h"
#include "model_metadata.h"
int main(void) {
  const char* json = 0;
  size_t len = tiny_model_metadata(g_tiny_model_data, g_tiny_model_data_len, &json);
  fwrite(json, 1, len, stdout);
  unsigned char* copy = malloc(g_tiny_model_data_len);
  for (size_t cut = 0; cut < g_tiny_model_data_len; cut += 7) {  // every truncation: heap-exact, so ASan sees
    unsigned char* part = malloc(cut ? cut : 1);
    memcpy(part, g_tiny_model_data, cut);
    tiny_model_matches_frontend(part, cut);
    free(part);
  }
  srand(1);
  for (int trial = 0; trial < 3000; ++trial) {  // random damage to the header, tables and vtables
    memcpy(copy, g_tiny_model_data, g_tiny_model_data_len);
    for (int k = 0; k < 4; ++k) copy[rand() % 512] = (unsigned char)rand();
    tiny_model_matches_frontend(copy, g_tiny_model_data_len);
  }
  free(copy);
  return tiny_model_matches_frontend(g_tiny_model_data, g_tiny_model_data_len) ? 0 : 3;
}
"""
    )
    src = bundle / "src"
    sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g", "-I", str(src)]
    objects = []
    for source in ("model_metadata.c", "frontend.c", "model_data.cpp"):
        obj = tmp_path / f"{source}.o"
        compiler = (
            ["c++", "-std=c++11"] if source.endswith(".cpp") else ["cc", "-std=c99", "-Wall", "-Wextra", "-Werror"]
        )
        done = subprocess.run([*compiler, *sanitize, "-c", str(src / source), "-o", str(obj)], capture_output=True,
                              text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr
        objects.append(str(obj))
    exe = tmp_path / "meta"
    done = subprocess.run(["cc", "-std=c99", *sanitize, str(main), *objects, "-o", str(exe), "-lm"], capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    ran = subprocess.run([str(exe)], capture_output=True, timeout=300)
    assert ran.returncode == 0, ran.stderr.decode()[-3000:]
    model = (bundle / "model.tflite").read_bytes()
    assert json.loads(ran.stdout) == read_identity(model) and read_identity(model)["recipe"] == "tiny"


def test_profile_reads_back_the_identity_of_a_model_this_pipeline_made(bundle, tmp_path):
    done = run_cli("profile", str(bundle / "model.tflite"), "--out", str(tmp_path / "p"), "--runs", "50")
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "p" / "profile.json").read_text())
    assert report["identity"] == read_identity((bundle / "model.tflite").read_bytes())
    assert "made by recipe 'tiny'" in done.stdout


def test_cross_compiles_for_a_cortex_m4f_and_the_front_end_ram_is_as_reported(bundle, tmp_path):
    """What Arduino and Zephyr would compile from src/, built with arm-none-eabi-gcc; the front end's .bss is
    exactly the static RAM the report states."""
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        pytest.skip("arm-none-eabi-gcc is not installed (Debian: gcc-arm-none-eabi); host builds are tested above")
    src = bundle / "src"
    for source in sorted(src.glob("*.c")) + sorted(src.glob("*.cpp")):
        compiler = [gcc, "-std=c99"] if source.suffix == ".c" else [gcc.replace("gcc", "g++"), "-std=c++11"]
        done = subprocess.run([*compiler, *ARM, "-c", str(source), "-o", str(tmp_path / f"{source.name}.o")],
                              capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr
    sizes = subprocess.run(["arm-none-eabi-size", "-A", str(tmp_path / "frontend.c.o")], capture_output=True, text=True)
    bss = int(re.search(r"^\.bss\s+(\d+)", sizes.stdout, re.M).group(1))
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert bss == manifest["frontend"]["static_ram_bytes"]


def test_zephyr_module_and_arduino_library_are_well_formed(bundle, tmp_path):
    module = yaml.safe_load((bundle / "zephyr" / "module.yml").read_text())
    assert module["name"] == "tiny_model" and module["build"] == {"cmake": "zephyr", "kconfig": "zephyr/Kconfig"}
    listed = re.findall(r"\.\./src/(\S+)", (bundle / "zephyr" / "CMakeLists.txt").read_text())
    assert listed and all((bundle / "src" / name).is_file() for name in listed)
    kconfiglib = pytest.importorskip("kconfiglib")  # the parser Zephyr's own build uses
    kconf = kconfiglib.Kconfig(str(bundle / "zephyr" / "Kconfig"), warn_to_stderr=False)
    option = kconf.syms["TINY_MODEL"]
    assert option.type == kconfiglib.BOOL and {s.name for s, _ in option.selects} == {"CPP", "REQUIRES_FULL_LIBC"}
    props = dict(line.split("=", 1) for line in (bundle / "library.properties").read_text().splitlines() if line)
    required = {"name", "version", "author", "maintainer", "sentence", "paragraph", "category", "url", "architectures"}
    assert required <= set(props) and re.fullmatch(r"\d+\.\d+\.\d+\+[0-9a-f]{8}", props["version"])
    assert all((bundle / "src" / h).is_file() for h in props["includes"].split(","))
    sources = {p.name for p in (bundle / "src").iterdir() if p.suffix in (".c", ".cpp")}
    assert sources == set(listed) and not any((bundle / "src").glob("*.cc"))  # Arduino compiles .c/.cpp, not .cc


def test_the_fixed_point_front_end_needs_no_floating_point_on_a_core_without_an_fpu(bundle, tmp_path):
    """Linked for a Cortex-M0+ (no FPU) with unused code dropped, the fixed-point int8 path pulls in no soft-float
    routine and no libm call, where the float build of the same program does."""
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        pytest.skip("arm-none-eabi-gcc is not installed (Debian: gcc-arm-none-eabi)")
    (tmp_path / "main.c").write_text(
        '#include "frontend.h"\nstatic int16_t pcm[TINY_FRONTEND_CLIP_SAMPLES];\n'
        "static int8_t features[TINY_FRONTEND_FEATURES];\n"
        "int main(void) { return tiny_frontend_int8(pcm, features); }\n"
    )
    float_symbols = re.compile(r"__aeabi_[fd]\w+|\b(?:logf|sqrtf|roundf)\b")
    found = {}
    for fixed in (1, 0):
        elf = tmp_path / f"fe{fixed}.elf"
        link = [gcc, "-std=c99", "-mcpu=cortex-m0plus", "-mthumb", "-Os", "-ffunction-sections", "-fdata-sections",
                f"-DTINY_FRONTEND_FIXED_POINT={fixed}", "-I", str(bundle / "src"), str(tmp_path / "main.c"),
                str(bundle / "src" / "frontend.c"), "--specs=nosys.specs", "-Wl,--gc-sections", "-lm", "-o", str(elf)]  # fmt: skip
        done = subprocess.run(link, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        symbols = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True).stdout
        found[fixed] = sorted(set(float_symbols.findall(symbols)))
    assert found[1] == [] and found[0], found  # the check can fail: the float build needs soft-float routines
