"""Text from the model or the recipe (labels, tensor names, the name) cannot break the C++ of the TFLM bundle.

model_config.h is compiled with a real compiler, and a tiny program checks at run time that kLabels holds exactly
the UTF-8 bytes of the labels, under C++17 and under C++11 with trigraphs (where '??=' in a string is '#' and
'??/' at the end of a comment is a backslash that swallows the next line).
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.tflite_model import Tensor
from targets.tflm.bundle import _banner, c_comment, c_identifier, c_string, write_model_config

CXX = shutil.which("g++") or shutil.which("clang++")
needs_cxx = pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++ or clang++) found")

LABELS = [
    "_silence_",
    "_unknown_",
    'say "hi"',
    "back\\slash",
    "end */ of a /* comment",
    "tri??=graph ??/ ??' ??( ??)",
    "two\nlines\r\n",
    "tab\tand\x01\x7f",
    "café ☕ Grüße",
    "é123 éa éF",  # an escape followed by digits: a hex escape would swallow them
    "trailing backslash \\",
    "?",
]
NAME = "kws\n#error the name got out\\"
INPUT = Tensor(0, "input\n#error the tensor name got out\\", (1, 49, 10), "INT8", 490, False, 0.5, -128)
OUTPUT = Tensor(1, "scores ??/", (1, len(LABELS)), "INT8", len(LABELS), False, 0.00390625, -128)


def compile_and_run(src: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    built = subprocess.run(
        [CXX, *flags, "-Wall", "-Wextra", "-Werror", "-o", str(out), str(src)], capture_output=True, text=True
    )
    assert built.returncode == 0, f"{' '.join(flags)}:\n{built.stderr}"
    return subprocess.run([str(out)], capture_output=True, text=True, timeout=60)


def round_trip_program(namespace: str) -> str:
    """main(): every kLabels[i] equals the UTF-8 bytes of LABELS[i] (given as numbers, not through c_string)."""
    arrays = [
        f"static const unsigned char kExpected{i}[] = {{{', '.join(str(b) for b in label.encode())}}};"
        for i, label in enumerate(LABELS)
    ]
    return "\n".join(
        [
            "#include <cstdio>",
            "#include <cstring>",
            '#include "model_config.h"',
            "",
            *arrays,
            f"static const unsigned char* const kExpected[] = {{{', '.join(f'kExpected{i}' for i in range(len(LABELS)))}}};",
            f"static const std::size_t kExpectedLen[] = {{{', '.join(str(len(s.encode())) for s in LABELS)}}};",
            "",
            "int main() {",
            f"  using namespace {namespace};",
            # every declaration survived: none was swallowed by a comment continued onto its line
            f'  static_assert(kLabelCount == {len(LABELS)}, "label count");',
            '  static_assert(kTensorArenaSize == 4096, "arena");',
            '  static_assert(kInputDims == 3 && kInputBytes == 490 && kInputShape[2] == 10, "input");',
            '  static_assert(kInputScale == 0.5f && kInputZeroPoint == -128, "input quantization");',
            f'  static_assert(kOutputDims == 2 && kOutputBytes == {len(LABELS)}, "output");',
            '  static_assert(kOutputScale == 0.00390625f && kOutputZeroPoint == -128, "output quantization");',
            "  int bad = 0;",
            "  for (int i = 0; i < kLabelCount; ++i) {",
            "    if (std::strlen(kLabels[i]) != kExpectedLen[i] ||",
            "        std::memcmp(kLabels[i], kExpected[i], kExpectedLen[i]) != 0) {",
            '      std::printf("label %d differs: [%s]\\n", i, kLabels[i]);',
            "      bad = 1;",
            "    }",
            "  }",
            '  std::printf("%d labels match\\n", kLabelCount);',
            "  return bad;",
            "}",
            "",
        ]
    )


@needs_cxx
def test_model_config_compiles_and_labels_round_trip(tmp_path: Path):
    write_model_config(tmp_path, NAME, 4096, INPUT, OUTPUT, LABELS, None, ["// arena: 4000 bytes measured"])
    header = tmp_path / "model_config.h"
    text = header.read_text(encoding="utf-8")

    assert "#error" not in [line.strip()[:6] for line in text.splitlines()]  # nothing escaped its comment
    assert "??" not in text  # no trigraph anywhere, in strings or comments
    assert not [line for line in text.splitlines() if line.rstrip().endswith("\\")]

    for std in ("-std=c++17", "-std=c++11"):
        check = subprocess.run(
            [CXX, std, "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-x", "c++", str(header)],
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0, f"{std}:\n{check.stderr}\n{text}"

    namespace = c_identifier(NAME)
    main = tmp_path / "main.cc"
    main.write_text(round_trip_program(namespace), encoding="utf-8")
    for flags in (("-std=c++17",), ("-std=c++11", "-trigraphs")):
        done = compile_and_run(main, tmp_path / "main", *flags)
        assert done.returncode == 0 and f"{len(LABELS)} labels match" in done.stdout, (flags, done.stdout, text)


def test_c_string_escapes():
    assert c_string("yes") == '"yes"'
    assert c_string('a"b\\c?') == '"a\\"b\\\\c\\?"'
    assert c_string("é1") == '"\\303\\2511"'  # three-digit octal: the '1' stays a character
    assert c_string("a\nb\x00") == '"a\\nb\\000"'
    assert c_string("") == '""'
    literal = c_string("".join(map(chr, range(0x110))))
    assert literal.isascii() and "??" not in literal and "\n" not in literal


def test_c_comment_stays_one_inert_line():
    assert c_comment("conv2d/weights") == "conv2d/weights"
    assert c_comment("a\nb\rc\x00d\u2028e\u2029f\x85g") == "a b c d e f g"
    assert c_comment("evil\u202e// reversed") == "evil // reversed"  # no bidirectional overrides (Trojan Source)
    assert c_comment("x ??/") == "x ? ?/"
    assert c_comment("ends with \\") == "ends with \\."
    assert c_comment("ends with \\ \t ") == "ends with \\."
    assert c_comment("café") == "café"
    for text in ("\\", "\\\n", "??/", "a\\\n\\", "????"):
        out = c_comment(text)
        assert not out.endswith("\\") and "??" not in out and not re.search(r"[\x00-\x1f\x7f]", out)


def test_c_identifier_handles_empty_digit_and_keyword_names():
    assert c_identifier("kws-mcu.v2") == "kws_mcu_v2"
    assert c_identifier("") == "m_"
    assert c_identifier("2d") == "m_2d"
    assert c_identifier("int") == "m_int" and c_identifier("namespace") == "m_namespace"
    assert c_identifier("a\nb") == "a_b"


def test_banner_is_one_comment_line():
    banner = _banner("x\n#include <evil>\\")
    assert banner.count("\n") == 1 and banner.startswith("// ") and not banner.rstrip("\n").endswith("\\")
