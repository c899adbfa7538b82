"""The streaming detector in portable C: 16-bit PCM in as it arrives, keywords out, as `pipeline.detection` decides.

`detector.h` / `detector.c` (C99, no heap, the state is one struct the caller owns):

- an incremental front end: samples collect in a window-sized buffer; each time a frame's samples are in, that
  frame alone is computed (`<name>_frontend_frame_int8`) into a ring of the window's frames, so a run of the model
  costs the new frames only, not the whole window again;
- every `hop` frames (the recipe's `streaming.stride_ms`) a model input is ready: `<name>_detector_input` copies
  the ring, oldest frame first, into the model's input tensor;
- `<name>_detector_push_scores` takes the model's int8 output: the last `smoothing` outputs are summed in
  integers (output - zero point), a keyword fires when its sum reaches its threshold (the largest sum wins), and
  nothing fires for `suppression` runs after. The integer thresholds are the float ones of the Python detector
  divided by the output scale and rounded up, so both decide alike on the same outputs.

`test/detector_test.c` feeds the bundle's recorded stream through the detector in uneven chunks, checks every
model input it assembles against the whole-window front end bit for bit, pushes the model outputs the TFLM
interpreter gave for those inputs, and requires exactly the detections the Python detector made.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from targets.tflm.bundle import _banner, c_identifier

if TYPE_CHECKING:
    from pipeline.detection import Detector

STREAM_FILE = "test/stream_vectors.bin"
STREAM_MAGIC = b"EPSV"


def integer_thresholds(detector: Detector, scale: float) -> list[int]:
    """Sums of (output - zero point) at which each keyword fires: the smallest integer s with s x scale >=
    threshold x smoothing (what the Python detector compares on dequantized outputs)."""
    out = []
    for t in detector.thresholds:
        s = math.ceil(t * detector.smoothing / scale)
        while s > 0 and (s - 1) * scale >= t * detector.smoothing:
            s -= 1
        while s * scale < t * detector.smoothing:
            s += 1
        out.append(s)
    return out


def write_detector(out: Path, name: str, detector: Detector, classes: int, output_scale: float,
                   output_zero_point: int, features: dict) -> dict:  # fmt: skip
    """`detector.h` and `detector.c` in `out`; returns the settings it baked in (for the manifest and report)."""
    ns = c_identifier(name)
    prefix = f"{ns.upper()}_DETECTOR"
    fe = f"{ns.upper()}_FRONTEND"
    stride = features["stride_samples"]
    if detector.hop % stride:
        raise ValueError(f"the detector's hop ({detector.hop} samples) is not a whole number of frames ({stride})")
    hop_frames = detector.hop // stride
    thresholds = integer_thresholds(detector, output_scale)
    keyword_ids = ", ".join(str(k) for k in detector.keyword_ids)
    header = f"""{_banner(name)}#ifndef {prefix}_H_
#define {prefix}_H_

#include <stdint.h>

#include "frontend.h"

#ifdef __cplusplus
extern "C" {{
#endif

// The model runs every {hop_frames} frame(s) ({detector.hop} samples); the last {detector.smoothing} outputs are summed; no
// detection for {detector.suppression} runs after one. Thresholds (chosen by the pipeline on validation streams) are in detector.c.
#define {prefix}_HOP_FRAMES {hop_frames}
#define {prefix}_SMOOTHING {detector.smoothing}
#define {prefix}_SUPPRESSION {detector.suppression}
#define {prefix}_CLASSES {classes}
#define {prefix}_KEYWORDS {len(detector.keyword_ids)}
#define {prefix}_NONE (-1)

typedef struct {{
  int16_t samples[{fe}_WINDOW_SAMPLES];  // the next frame's samples
  int32_t filled;                        // samples in `samples`
  int8_t frames[{fe}_FRAMES][{fe}_COEFFICIENTS];  // ring of quantized frames; `next` is the oldest
  int32_t next;
  int32_t frames_seen;
  int32_t ready;                         // a model input is waiting for its scores
  int32_t scores[{prefix}_SMOOTHING][{prefix}_CLASSES];  // (output - zero point) of the last runs
  int32_t runs;
  int32_t quiet_until;                   // no detection up to this run
}} {ns}_detector_t;

void {ns}_detector_init({ns}_detector_t* d);
// Takes samples until a model input is ready (or all `count` are taken); returns how many it took.
int32_t {ns}_detector_feed({ns}_detector_t* d, const int16_t* pcm, int32_t count);
// 1 when a model input is ready: copy it, invoke the model, push its scores.
int32_t {ns}_detector_ready(const {ns}_detector_t* d);
// The model input ({fe}_FEATURES int8 values, oldest frame first).
void {ns}_detector_input(const {ns}_detector_t* d, int8_t* input);
// The model's int8 output for that input; returns the detected class index, or {prefix}_NONE.
int32_t {ns}_detector_push_scores({ns}_detector_t* d, const int8_t* scores);

#ifdef __cplusplus
}}
#endif

#endif  // {prefix}_H_
"""
    source = f"""{_banner(name)}// No heap: all state is in the caller's {ns}_detector_t.
#include "detector.h"

#include <string.h>

#define OUTPUT_ZERO_POINT {output_zero_point}  // the model's output quantization (scale {output_scale!r})
static const int32_t kKeywordIds[{prefix}_KEYWORDS] = {{{keyword_ids}}};
// A keyword fires when the sum of its last {prefix}_SMOOTHING (output - zero point) reaches this.
static const int32_t kThresholds[{prefix}_KEYWORDS] = {{{", ".join(map(str, thresholds))}}};

void {ns}_detector_init({ns}_detector_t* d) {{
  memset(d, 0, sizeof *d);
  d->quiet_until = -1;
}}

int32_t {ns}_detector_feed({ns}_detector_t* d, const int16_t* pcm, int32_t count) {{
  int32_t taken = 0;
  while (taken < count && !d->ready) {{
    int32_t n = {fe}_WINDOW_SAMPLES - d->filled;
    if (n > count - taken) n = count - taken;
    memcpy(d->samples + d->filled, pcm + taken, (size_t)n * sizeof pcm[0]);
    d->filled += n;
    taken += n;
    if (d->filled < {fe}_WINDOW_SAMPLES) break;
    {ns}_frontend_frame_int8(d->samples, d->frames[d->next]);  // the one new frame
    d->next = (d->next + 1) % {fe}_FRAMES;
    d->frames_seen += 1;
    memmove(d->samples, d->samples + {fe}_STRIDE_SAMPLES,
            ({fe}_WINDOW_SAMPLES - {fe}_STRIDE_SAMPLES) * sizeof d->samples[0]);
    d->filled -= {fe}_STRIDE_SAMPLES;
    if (d->frames_seen >= {fe}_FRAMES && (d->frames_seen - {fe}_FRAMES) % {prefix}_HOP_FRAMES == 0) d->ready = 1;
  }}
  return taken;
}}

int32_t {ns}_detector_ready(const {ns}_detector_t* d) {{ return d->ready; }}

void {ns}_detector_input(const {ns}_detector_t* d, int8_t* input) {{
  const int32_t head = {fe}_FRAMES - d->next;  // frames from the oldest to the ring's end
  memcpy(input, d->frames[d->next], (size_t)head * {fe}_COEFFICIENTS);
  memcpy(input + head * {fe}_COEFFICIENTS, d->frames[0], (size_t)d->next * {fe}_COEFFICIENTS);
}}

int32_t {ns}_detector_push_scores({ns}_detector_t* d, const int8_t* scores) {{
  int32_t* slot = d->scores[d->runs % {prefix}_SMOOTHING];
  for (int c = 0; c < {prefix}_CLASSES; ++c) slot[c] = (int32_t)scores[c] - OUTPUT_ZERO_POINT;
  const int32_t run = d->runs++;
  d->ready = 0;
  if (run <= d->quiet_until) return {prefix}_NONE;
  int32_t best = {prefix}_NONE, best_sum = 0;
  for (int k = 0; k < {prefix}_KEYWORDS; ++k) {{
    int32_t sum = 0;
    for (int s = 0; s < {prefix}_SMOOTHING; ++s) sum += d->scores[s][kKeywordIds[k]];
    if (sum >= kThresholds[k] && (best == {prefix}_NONE || sum > best_sum)) {{
      best = kKeywordIds[k];
      best_sum = sum;
    }}
  }}
  if (best != {prefix}_NONE) d->quiet_until = run + {prefix}_SUPPRESSION;
  return best;
}}
"""
    (out / "detector.h").write_text(header, encoding="utf-8")
    (out / "detector.c").write_text(source, encoding="utf-8")
    return {
        "hop_samples": detector.hop, "hop_frames": hop_frames, "smoothing": detector.smoothing,
        "suppression_runs": detector.suppression, "keyword_ids": list(detector.keyword_ids),
        "thresholds": list(detector.thresholds), "integer_thresholds": thresholds,
        "state_bytes": 2 * features["window_samples"] + features["frames"] * features["coefficients"]
        + 4 * detector.smoothing * classes + 4 * 6,
    }  # fmt: skip


def write_stream_vectors(out: Path, pcm: np.ndarray, scores: np.ndarray, detections: np.ndarray) -> None:
    """`test/stream_vectors.bin`: magic, version, samples, runs, classes, detections; int16 PCM; int8 model
    outputs per run; int32 (run, class) per detection; little-endian."""
    pcm = np.asarray(pcm, "<i2")
    scores = np.asarray(scores, np.int8)
    detections = np.asarray(detections, "<i4").reshape(-1, 2)
    head = STREAM_MAGIC + struct.pack("<IIIII", 1, len(pcm), len(scores), scores.shape[1], len(detections))
    path = out / STREAM_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(head + pcm.tobytes() + scores.tobytes() + detections.tobytes())


def write_detector_test(out: Path, name: str) -> None:
    ns = c_identifier(name)
    prefix = f"{ns.upper()}_DETECTOR"
    fe = f"{ns.upper()}_FRONTEND"
    source = f"""{_banner(name)}// The streaming detector on the bundle's recorded stream: fed in uneven chunks, every model input it assembles
// must equal the whole-window front end bit for bit; with the TFLM interpreter's outputs for those inputs, it must
// detect exactly what the pipeline's Python detector detected (same runs, same keywords).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detector.h"
#include "frontend.h"

static {ns}_detector_t detector;
static int8_t input[{fe}_FEATURES], whole[{fe}_FEATURES];

static unsigned long u32(const unsigned char* p) {{
  return (unsigned long)p[0] | (unsigned long)p[1] << 8 | (unsigned long)p[2] << 16 | (unsigned long)p[3] << 24;
}}

int main(int argc, char** argv) {{
  if (argc != 2) {{ fprintf(stderr, "usage: %s stream_vectors.bin\\n", argv[0]); return 2; }}
  FILE* f = fopen(argv[1], "rb");
  unsigned char head[24];
  if (!f || fread(head, 1, sizeof head, f) != sizeof head || memcmp(head, "EPSV", 4) != 0) {{
    fprintf(stderr, "%s: not a stream vector file\\n", argv[1]);
    return 2;
  }}
  const unsigned long samples = u32(head + 8), runs = u32(head + 12), classes = u32(head + 16),
                      expected_count = u32(head + 20);
  if (classes != {prefix}_CLASSES) {{
    fprintf(stderr, "vectors have %lu classes; this detector %d\\n", classes, {prefix}_CLASSES);
    return 1;
  }}
  unsigned char* raw = malloc(samples * 2);  // the test's own buffers; the detector itself uses no heap
  int16_t* pcm = malloc(samples * sizeof *pcm);
  int8_t* scores = malloc(runs * classes + 1);
  unsigned char* events = malloc(expected_count * 8 + 1);
  if (!raw || !pcm || !scores || !events || fread(raw, 2, samples, f) != samples ||
      fread(scores, 1, runs * classes, f) != runs * classes || fread(events, 8, expected_count, f) != expected_count) {{
    fprintf(stderr, "%s: truncated\\n", argv[1]);
    return 2;
  }}
  fclose(f);
  for (unsigned long i = 0; i < samples; ++i) pcm[i] = (int16_t)(raw[2 * i] | raw[2 * i + 1] << 8);
  {ns}_detector_init(&detector);
  unsigned long at = 0, run = 0, found = 0, input_mismatches = 0, event_mismatches = 0;
  const int32_t chunks[] = {{160, 1, 517, 320, 33, 1000}};  // uneven, as audio drivers deliver
  for (unsigned long c = 0; at < samples; ++c) {{
    int32_t n = chunks[c % 6];
    if ((unsigned long)n > samples - at) n = (int32_t)(samples - at);
    int32_t fed = 0;
    while (fed < n) {{
      fed += {ns}_detector_feed(&detector, pcm + at + fed, n - fed);
      if (!{ns}_detector_ready(&detector)) continue;
      if (run >= runs) {{ fprintf(stderr, "more model runs than the vectors hold (%lu)\\n", runs); return 1; }}
      {ns}_detector_input(&detector, input);
      // The window's last frame ends at the last sample fed; its first frame starts (FRAMES - 1) strides earlier.
      const unsigned long end = at + (unsigned long)fed;
      const unsigned long start = end - ({fe}_FRAMES - 1) * {fe}_STRIDE_SAMPLES - {fe}_WINDOW_SAMPLES;
      {ns}_frontend_int8(pcm + start, whole);
      input_mismatches += memcmp(input, whole, sizeof input) != 0;
      const int32_t detected = {ns}_detector_push_scores(&detector, scores + run * classes);
      if (detected != {prefix}_NONE) {{
        const int ok = found < expected_count && u32(events + 8 * found) == run && (int32_t)u32(events + 8 * found + 4) == detected;
        printf("run %lu: class %d %s\\n", run, (int)detected, ok ? "(as the pipeline)" : "(NOT in the pipeline's list)");
        event_mismatches += !ok;
        found += 1;
      }}
      run += 1;
    }}
    at += (unsigned long)n;
  }}
  const int ok = run == runs && found == expected_count && !event_mismatches && !input_mismatches;
  printf("%s (%s point front end): %lu runs (expected %lu), %lu detections (expected %lu), %lu input(s) differing "
         "from the whole-window front end\\n", ok ? "passed" : "FAILED", {fe}_FIXED_POINT ? "fixed" : "floating",
         run, runs, found, expected_count, input_mismatches);
  free(raw); free(pcm); free(scores); free(events);
  return !ok;
}}
"""
    (out / "test").mkdir(parents=True, exist_ok=True)
    (out / "test" / "detector_test.c").write_text(source, encoding="utf-8")
