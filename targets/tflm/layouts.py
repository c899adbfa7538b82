"""One bundle, three build systems: a CMake library with a ctest, a Zephyr module, an Arduino library.

Every source sits in `src/` (what Arduino compiles recursively; `.cpp`, since Arduino does not compile `.cc`);
the build files around it only name those sources, so the three layouts cannot drift apart. What needs no TFLM
headers (model array, configuration, front end, metadata check) forms the library; `op_resolver.h` is header-only
and needs TFLM's, which the firmware project provides.

`test/frontend_test.c` is the front end's own check, for firmware teams to rerun with `ctest`: it feeds
`test/frontend_vectors.bin` (signals spanning silence to full scale, with the features training's code computed
for them) through the C front end, compares, and checks that the model array names this front end.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from targets.tflm.bundle import _banner, c_comment, c_identifier
from targets.tflm.frontend import to_pcm16

SRC = "src"
VECTORS_FILE = "test/frontend_vectors.bin"
VECTORS_MAGIC = b"EPFV"


def frontend_signals(sample_rate: int, samples: int, upper_hz: float, seed: int = 0) -> np.ndarray:
    """float32 [n, samples] on the 16-bit grid (what the C front end reads): digital silence, quiet noise, a chirp
    across the mel band, a voiced buzz with an envelope and a clipped full-scale burst, so the check covers the
    front end's whole dynamic range. The chirp carries a -60 dB noise floor, as any microphone does: a pure tone
    leaves the mel bands away from it with nothing but float round-off, on which no two FFTs agree."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / sample_rate
    top = 0.9 * upper_hz
    chirp = 1e-3 * rng.standard_normal(samples) + 0.5 * np.sin(
        2 * np.pi * 100 * t[-1] / np.log(top / 100) * (top / 100) ** (t / t[-1])
    )
    buzz = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 25)) * 0.15 * np.sin(np.pi * t / t[-1]) ** 2
    burst = np.clip(3 * np.sign(np.sin(2 * np.pi * 440 * t)) * (t > 0.3) * (t < 0.6), -1, 1)
    signals = np.stack([np.zeros(samples), 0.01 * rng.standard_normal(samples), chirp, buzz, burst])
    return (to_pcm16(signals) / 32768).astype(np.float32)


def write_frontend_vectors(
    out: Path, audio: np.ndarray, features: np.ndarray, quantized: np.ndarray, tolerances: tuple[float, float]
) -> None:
    """`test/frontend_vectors.bin`: header (magic, version, clips, samples, features, float and fixed-point
    tolerance), then per clip int16 PCM, float32 features and int8 model input, little-endian."""
    pcm = to_pcm16(audio)
    n, samples = pcm.shape
    count = features[0].size
    parts = [VECTORS_MAGIC, struct.pack("<IIIIff", 1, n, samples, count, *tolerances)]
    for i in range(n):
        parts += [pcm[i].tobytes(), features[i].astype("<f4").tobytes(), quantized[i].astype(np.int8).tobytes()]
    (out / VECTORS_FILE).parent.mkdir(parents=True, exist_ok=True)
    (out / VECTORS_FILE).write_bytes(b"".join(parts))


def write_frontend_test(out: Path, name: str, model_symbol: str) -> None:
    ns = c_identifier(name)
    prefix = f"{ns.upper()}_FRONTEND"
    source = f"""{_banner(name)}// The front end on the bundle's test vectors, against the features training computed: features within the file's
// tolerance for this arithmetic ({prefix}_FIXED_POINT), int8 input at most one quantization step apart; and the
// model array names this front end.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"
#include "model_data.h"
#include "model_metadata.h"

static int16_t pcm[{prefix}_CLIP_SAMPLES];
static float expected[{prefix}_FEATURES], features[{prefix}_FEATURES];
static int8_t expected_q[{prefix}_FEATURES], quantized[{prefix}_FEATURES];

static unsigned long u32(const unsigned char* p) {{
  return (unsigned long)p[0] | (unsigned long)p[1] << 8 | (unsigned long)p[2] << 16 | (unsigned long)p[3] << 24;
}}
static int read_le(FILE* f, void* out, size_t size, size_t count) {{
  unsigned char* bytes = (unsigned char*)out;
  if (fread(bytes, size, count, f) != count) return 0;
  const unsigned probe = 1;
  if (*(const unsigned char*)&probe == 0)  // big-endian host: the file is little-endian
    for (size_t i = 0; i < count; ++i)
      for (size_t a = 0, b = size - 1; a < b; ++a, --b) {{
        unsigned char t = bytes[i * size + a]; bytes[i * size + a] = bytes[i * size + b]; bytes[i * size + b] = t;
      }}
  return 1;
}}

int main(int argc, char** argv) {{
  if (argc != 2) {{ fprintf(stderr, "usage: %s frontend_vectors.bin\\n", argv[0]); return 2; }}
  FILE* f = fopen(argv[1], "rb");
  unsigned char head[28];
  if (!f || fread(head, 1, sizeof head, f) != sizeof head || memcmp(head, "EPFV", 4) != 0) {{
    fprintf(stderr, "%s: not a front-end vector file\\n", argv[1]);
    return 2;
  }}
  const unsigned long clips = u32(head + 8), samples = u32(head + 12), count = u32(head + 16);
  float tolerance;
  {{  // the file holds one tolerance per arithmetic
    const uint32_t bits = (uint32_t)u32(head + ({prefix}_FIXED_POINT ? 24 : 20));
    memcpy(&tolerance, &bits, 4);
  }}
  if (samples != {prefix}_CLIP_SAMPLES || count != {prefix}_FEATURES) {{
    fprintf(stderr, "vectors are for %lu samples -> %lu features; this front end: %d -> %d\\n", samples, count,
            {prefix}_CLIP_SAMPLES, {prefix}_FEATURES);
    return 1;
  }}
  int failures = 0;
  float worst = 0.0f;
  for (unsigned long c = 0; c < clips; ++c) {{
    if (!read_le(f, pcm, 2, samples) || !read_le(f, expected, 4, count) || !read_le(f, expected_q, 1, count)) {{
      fprintf(stderr, "%s: truncated at clip %lu\\n", argv[1], c);
      return 2;
    }}
    {ns}_frontend_float(pcm, features);
    {ns}_frontend_int8(pcm, quantized);
    float error = 0.0f;
    int steps = 0;
    for (unsigned long i = 0; i < count; ++i) {{
      const float e = fabsf(features[i] - expected[i]);
      const int s = abs((int)quantized[i] - (int)expected_q[i]);
      if (e > error) error = e;
      if (s > steps) steps = s;
    }}
    if (error > worst) worst = error;
    const int ok = error <= tolerance && steps <= 1;
    printf("clip %lu: max feature error %.2e (tolerance %.1e), max int8 difference %d step(s): %s\\n", c,
           (double)error, (double)tolerance, steps, ok ? "ok" : "FAIL");
    failures += !ok;
  }}
  fclose(f);
  const int matches = {ns}_model_matches_frontend({model_symbol}, {model_symbol}_len);
  printf("model metadata names this front end: %s\\n", matches ? "yes" : "NO");
  printf("%s (%s point): %lu clips, worst feature error %.2e\\n", failures || !matches ? "FAILED" : "passed",
         {prefix}_FIXED_POINT ? "fixed" : "floating", clips, (double)worst);
  return failures || !matches;
}}
"""
    (out / "test").mkdir(parents=True, exist_ok=True)
    (out / "test" / "frontend_test.c").write_text(source, encoding="utf-8")


def write_cmake(
    out: Path,
    name: str,
    bundle: str,
    sources: list[str],
    with_test: bool,
    fixed_point: bool | None,
    with_detector_test: bool = False,
) -> None:
    """`CMakeLists.txt`: a static library `<name>_model` (plus the front-end ctests, one per arithmetic, when built
    on its own). `fixed_point`: the front end's default arithmetic (None: the bundle has no front end)."""
    ns = c_identifier(name)
    option = f"{ns.upper()}_FRONTEND_FIXED_POINT"
    listed = " ".join(f"{SRC}/{s}" for s in sources)
    detector_test = (
        f"""      add_executable(${{exe}}_detector test/detector_test.c {listed})
      target_include_directories(${{exe}}_detector PRIVATE {SRC})
      target_compile_definitions(${{exe}}_detector PRIVATE {option}=$<STREQUAL:${{arithmetic}},fixed>)
      if({ns.upper()}_LIBM)
        target_link_libraries(${{exe}}_detector PRIVATE ${{{ns.upper()}_LIBM}})
      endif()
      add_test(NAME {ns}_detector_${{arithmetic}} COMMAND ${{exe}}_detector ${{CMAKE_CURRENT_SOURCE_DIR}}/test/stream_vectors.bin)
"""
        if with_detector_test
        else ""
    )
    test = (
        f"""
# The front end's own check, in both arithmetics: `ctest` runs them when this folder is the top-level project.
if(CMAKE_SOURCE_DIR STREQUAL CMAKE_CURRENT_SOURCE_DIR)
  include(CTest)
  if(BUILD_TESTING)
    foreach(arithmetic float fixed)
      set(exe {ns}_frontend_test_${{arithmetic}})
      add_executable(${{exe}} test/frontend_test.c {listed})
      target_include_directories(${{exe}} PRIVATE {SRC})
      target_compile_definitions(${{exe}} PRIVATE {option}=$<STREQUAL:${{arithmetic}},fixed>)
      if({ns.upper()}_LIBM)
        target_link_libraries(${{exe}} PRIVATE ${{{ns.upper()}_LIBM}})
      endif()
      add_test(NAME {ns}_frontend_${{arithmetic}} COMMAND ${{exe}} ${{CMAKE_CURRENT_SOURCE_DIR}}/{VECTORS_FILE})
{detector_test}    endforeach()
  endif()
endif()
"""
        if with_test
        else ""
    )
    fixed = (
        f"""
# The front end's arithmetic: fixed point for cores without an FPU (the header's default is the recipe's).
option({option} "edge-pipeline front end in fixed point" {"ON" if fixed_point else "OFF"})
target_compile_definitions({ns}_model PUBLIC {option}=$<BOOL:${{{option}}}>)
"""
        if fixed_point is not None
        else ""
    )
    text = f"""# Generated by edge-pipeline for '{c_comment(name)}' ({c_comment(bundle)}). Do not edit: regenerate instead.
#
# add_subdirectory(<this folder>) and link {ns}_model. op_resolver.h also needs TFLite Micro's headers: link your
# tflite-micro target beside this one (with CMSIS-NN kernels on Cortex-M).
cmake_minimum_required(VERSION 3.13)
project({ns}_model LANGUAGES C CXX)

add_library({ns}_model STATIC {listed})
target_include_directories({ns}_model PUBLIC {SRC})
set_target_properties({ns}_model PROPERTIES C_STANDARD 99 CXX_STANDARD 11)
find_library({ns.upper()}_LIBM m)
if({ns.upper()}_LIBM)
  target_link_libraries({ns}_model PUBLIC ${{{ns.upper()}_LIBM}})
endif()
{fixed}{test}"""
    (out / "CMakeLists.txt").write_text(text, encoding="utf-8")


def write_zephyr(out: Path, name: str, bundle: str, sources: list[str], fixed_point: bool | None) -> str:
    """`zephyr/module.yml`, `zephyr/CMakeLists.txt`, `zephyr/Kconfig`: list the folder in ZEPHYR_EXTRA_MODULES
    (or west.yml) and set the Kconfig option. `fixed_point` is the front end's default arithmetic (None: the
    bundle has no front end). Returns the option's name."""
    ns = c_identifier(name)
    option = f"{ns.upper()}_MODEL"
    fixed = f"{ns.upper()}_FRONTEND_FIXED_POINT"
    folder = out / "zephyr"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "module.yml").write_text(
        f"# Generated by edge-pipeline for {bundle}.\nname: {ns}_model\nbuild:\n  cmake: zephyr\n"
        "  kconfig: zephyr/Kconfig\n",
        encoding="utf-8",
    )
    listed = "\n".join(f"    ${{CMAKE_CURRENT_LIST_DIR}}/../{SRC}/{s}" for s in sources)
    arithmetic = (
        f"  zephyr_compile_definitions({fixed}=$<BOOL:${{CONFIG_{fixed}}}>)\n" if fixed_point is not None else ""
    )
    (folder / "CMakeLists.txt").write_text(
        f"# Generated by edge-pipeline for '{c_comment(name)}' ({c_comment(bundle)}).\n"
        f"if(CONFIG_{option})\n"
        f"  zephyr_library_named({ns}_model)\n"
        f"  zephyr_library_sources(\n{listed}\n  )\n"
        f"  zephyr_include_directories(${{CMAKE_CURRENT_LIST_DIR}}/../{SRC})\n"
        f"{arithmetic}"
        "endif()\n",
        encoding="utf-8",
    )
    kconfig = (
        f"# Generated by edge-pipeline for {bundle}.\n"
        f"config {option}\n"
        f'\tbool "{ns} model{", its audio front end and metadata check" if fixed_point is not None else ""}"\n'
        "\tselect CPP\n" + ("\tselect REQUIRES_FULL_LIBC\n" if fixed_point is not None else "") + "\thelp\n"
        f"\t  The {bundle} model array and model_config.h"
        + (
            ", the MFCC front end that computes its input and the\n\t  boot-time check that both belong together"
            if fixed_point is not None
            else ""
        )  # fmt: skip
        + ".\n\t  op_resolver.h needs TFLite Micro (the tflite-micro Zephyr module).\n"
    )
    if fixed_point is not None:
        kconfig += (
            f"\nconfig {fixed}\n"
            '\tbool "front end in fixed point (no FPU needed)"\n'
            f"\tdepends on {option}\n"
            f"\tdefault {'y' if fixed_point else 'n'}\n"
            "\thelp\n"
            "\t  Integer arithmetic only on the int8 path; features within 0.005 of training's.\n"
        )
    (folder / "Kconfig").write_text(kconfig, encoding="utf-8")
    return f"CONFIG_{option}"


def write_arduino(out: Path, name: str, bundle: str, model_version: str, sources: list[str]) -> None:
    """`library.properties` (Arduino library format 1.5: sources in `src/`, compiled recursively). Arduino wants a
    semantic version; the model's sha8 rides in its build metadata (the registry's integer is the version to pin)."""
    ns = c_identifier(name)
    headers = ",".join(["model_data.h", "model_config.h"] + [s.rsplit(".", 1)[0] + ".h" for s in sources[1:]])
    text = (
        f"name={ns}_model\n"
        f"version=1.0.0+{model_version}\n"
        "author=edge-pipeline\n"
        "maintainer=edge-pipeline\n"
        f"sentence=The {c_comment(bundle)} model for TensorFlow Lite Micro, with what computes its input.\n"
        "paragraph=Generated by edge-pipeline: the model array, its measured tensor arena and labels "
        "(model_config.h), the audio front end it was trained with, and a boot-time check that model and front end "
        "belong together. op_resolver.h needs a TensorFlow Lite Micro library.\n"
        "category=Data Processing\n"
        "url=https://github.com/tensorflow/tflite-micro\n"
        "architectures=*\n"
        f"includes={headers}\n"
    )
    (out / "library.properties").write_text(text, encoding="utf-8")
