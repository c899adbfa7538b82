"""The model says who it is: a JSON entry in the .tflite's metadata, and C that reads it back on the device.

A firmware tree updates the model array and the audio front end as separate files; when one moves without the
other, the device mishears and nothing says why. The bundle's model carries, under the metadata name
"edge_pipeline", the recipe's name and fingerprint, the model's version, the labels, the feature parameters and the
input quantization, and the measured arena. `frontend_fingerprint` hashes what the front end must agree on (the
features and the input quantization); `frontend.h` defines the same value, and `model_metadata.c` compares the two
at boot. TFLM ignores metadata it does not know, so neither the operators nor the arena change.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pipeline.tflite_model import Tensor, get_metadata, set_metadata
from targets.tflm.bundle import _banner, c_identifier, c_string

METADATA_NAME = "edge_pipeline"
SCHEMA = 1


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def frontend_fingerprint(features: dict[str, Any], input_tensor: Tensor) -> str:
    """16 hex digits naming the front end a model needs: its feature parameters and input quantization."""
    key = {"features": features, "input_scale": input_tensor.scale, "input_zero_point": input_tensor.zero_point}
    return hashlib.sha256(_canonical(key)).hexdigest()[:16]


def identity(
    model: bytes,
    *,
    recipe: str,
    recipe_fingerprint: str,
    labels: list[str],
    features: dict[str, Any],
    input_tensor: Tensor,
    arena_bytes: int,
    producer: str,
) -> dict[str, Any]:
    """What the model carries. Its version is the sha8 of the model without this entry (the bytes that compute)."""
    return {
        "schema": SCHEMA,
        "producer": producer,
        "recipe": recipe,
        "recipe_fingerprint": recipe_fingerprint,
        "model_version": hashlib.sha256(model).hexdigest()[:8],
        "labels": labels,
        "features": features,
        "input": {
            "shape": list(input_tensor.shape),
            "dtype": input_tensor.dtype,
            "scale": input_tensor.scale,
            "zero_point": input_tensor.zero_point,
        },  # fmt: skip
        "frontend_fingerprint": frontend_fingerprint(features, input_tensor),
        "arena_bytes": arena_bytes,
    }


def embed(model: bytes, info: dict[str, Any]) -> bytes:
    """The model with `info` as its "edge_pipeline" metadata (canonical JSON: C finds keys by exact text)."""
    return set_metadata(model, METADATA_NAME, _canonical(info))


def read_identity(model: bytes) -> dict[str, Any] | None:
    """The "edge_pipeline" metadata of a model, or None (a model no recipe here made)."""
    data = get_metadata(model, METADATA_NAME)
    if data is None:
        return None
    try:
        return json.loads(data.decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def write_metadata_c(src: Path, name: str, fingerprint: str) -> None:
    """`model_metadata.h/.c` (C99, no heap, no flatbuffers library): find the "edge_pipeline" entry in a model
    array and check it names the front end compiled beside it. Reads bytes little-endian and bounds-checks every
    offset, so a truncated or foreign array yields 0, never a fault."""
    ns = c_identifier(name)
    guard = f"{ns.upper()}_MODEL_METADATA_H_"
    needle = c_string(f'"frontend_fingerprint":"{fingerprint}"')
    header = f"""{_banner(name)}#ifndef {guard}
#define {guard}

#include <stddef.h>

#ifdef __cplusplus
extern "C" {{
#endif

// The JSON edge-pipeline stored in the model's "{METADATA_NAME}" metadata (recipe, fingerprint, model version,
// labels, features, arena): returns its length and points *json into the model (not NUL-terminated); 0 when the
// model has no such entry or is not a valid TFLite flatbuffer.
size_t {ns}_model_metadata(const unsigned char* model, size_t model_len, const char** json);

// 1 when the model's metadata names the front end compiled into this firmware (frontend fingerprint
// {fingerprint}): call it at boot, so a model updated without its front end, or the reverse, is caught.
int {ns}_model_matches_frontend(const unsigned char* model, size_t model_len);

#ifdef __cplusplus
}}
#endif

#endif  // {guard}
"""
    source = f"""{_banner(name)}#include "model_metadata.h"

#include <string.h>

static const char kName[] = {c_string(METADATA_NAME)};
static const char kFrontend[] = {needle};

static int fits(size_t len, size_t pos, size_t size) {{ return pos <= len && size <= len - pos; }}
static unsigned long u32(const unsigned char* p) {{
  return (unsigned long)p[0] | (unsigned long)p[1] << 8 | (unsigned long)p[2] << 16 | (unsigned long)p[3] << 24;
}}
static unsigned u16(const unsigned char* p) {{ return (unsigned)p[0] | (unsigned)p[1] << 8; }}
static long long s32(const unsigned char* p) {{
  const unsigned long v = u32(p);
  return v & 0x80000000ul ? (long long)v - 0x100000000LL : (long long)v;
}}

// Position of field `index` of the table at `table`, or 0 when absent or out of bounds.
static size_t field(const unsigned char* m, size_t len, size_t table, unsigned index) {{
  if (!fits(len, table, 4)) return 0;
  const long long vtable = (long long)table - s32(m + table);
  if (vtable < 0 || vtable > (long long)len || !fits(len, (size_t)vtable, 4)) return 0;
  const unsigned vsize = u16(m + (size_t)vtable);
  if (4u + 2u * index + 2u > vsize || !fits(len, (size_t)vtable, vsize)) return 0;
  const unsigned offset = u16(m + (size_t)vtable + 4 + 2 * index);
  return offset && fits(len, table + offset, 4) ? table + offset : 0;
}}

// The vector an offset field points at: its element count, and *start at its first element.
static size_t vector(const unsigned char* m, size_t len, size_t at, size_t element, size_t* start) {{
  if (!at || u32(m + at) > len - at) return 0;
  const size_t vec = at + u32(m + at);
  if (!fits(len, vec, 4)) return 0;
  const size_t count = u32(m + vec);
  if (element && count > (len - vec - 4) / element) return 0;
  *start = vec + 4;
  return count;
}}

static size_t table_at(const unsigned char* m, size_t len, size_t at) {{
  if (u32(m + at) > len - at) return 0;
  const size_t table = at + u32(m + at);
  return fits(len, table, 4) ? table : 0;
}}

size_t {ns}_model_metadata(const unsigned char* model, size_t model_len, const char** json) {{
  if (!model || !fits(model_len, 0, 8) || memcmp(model + 4, "TFL3", 4) != 0) return 0;
  const size_t root = table_at(model, model_len, 0);
  size_t entries, buffers;
  const size_t n_entries = vector(model, model_len, field(model, model_len, root, 6), 4, &entries);
  const size_t n_buffers = vector(model, model_len, field(model, model_len, root, 4), 4, &buffers);
  for (size_t i = 0; i < n_entries; ++i) {{
    const size_t entry = table_at(model, model_len, entries + 4 * i);
    size_t text;
    const size_t text_len = vector(model, model_len, field(model, model_len, entry, 0), 1, &text);
    if (!entry || text_len != sizeof kName - 1 || memcmp(model + text, kName, text_len) != 0) continue;
    const size_t at = field(model, model_len, entry, 1);
    const size_t index = at ? u32(model + at) : 0;
    if (index >= n_buffers) return 0;
    const size_t buffer = table_at(model, model_len, buffers + 4 * index);
    size_t data;
    const size_t data_len = buffer ? vector(model, model_len, field(model, model_len, buffer, 0), 1, &data) : 0;
    if (!data_len) return 0;
    *json = (const char*)(model + data);
    return data_len;
  }}
  return 0;
}}

int {ns}_model_matches_frontend(const unsigned char* model, size_t model_len) {{
  const char* json = 0;
  const size_t len = {ns}_model_metadata(model, model_len, &json);
  const size_t needle = sizeof kFrontend - 1;
  for (size_t i = 0; len >= needle && i <= len - needle; ++i)
    if (memcmp(json + i, kFrontend, needle) == 0) return 1;
  return 0;
}}
"""
    (src / "model_metadata.h").write_text(header, encoding="utf-8")
    (src / "model_metadata.c").write_text(source, encoding="utf-8")
