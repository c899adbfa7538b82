// Benchmark firmware: the bundle's model on TFLite Micro, answering the serial protocol of targets/serial_dut.py
// (MLPerf Tiny style: commands end with '%', replies are `m-` / `e-` lines and end with `m-ready`).
//
// Built by targets/tflm/firmware.py from the bundle's own sources (model_data, op_resolver, model_config, front end)
// and this folder; EDGE_NS names the bundle's namespace, EDGE_MODEL_DATA its model array.
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "model_config.h"
#include "model_data.h"
#include "op_resolver.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"
#if EDGE_HAS_FRONTEND
#include "frontend.h"
#endif
#if EDGE_HAS_DETECTOR
#include "detector.h"
#endif

extern "C" uint32_t _ebss, _estack;

namespace {

constexpr int kMaxRuns = 1000;
constexpr uint32_t kStackPaint = 0xA5A5A5A5u;
#if EDGE_HAS_FRONTEND
constexpr int kPcmBytes = EDGE_FRONTEND_CLIP_SAMPLES * 2;
constexpr int kBufferBytes = kPcmBytes > EDGE_NS::kInputBytes ? kPcmBytes : EDGE_NS::kInputBytes;
int8_t g_features[EDGE_NS::kInputBytes];
#else
constexpr int kBufferBytes = EDGE_NS::kInputBytes;
#endif

// The bundle's kTensorArenaSize was measured with the host interpreter's kernels; a core's optimized kernels may ask
// for more scratch (CMSIS-NN's Helium kernels on a Cortex-M55 do), so the firmware gives a margin and reports what
// TFLM used: the host compares it with the bundle's figure.
#ifndef EDGE_ARENA_MARGIN
#define EDGE_ARENA_MARGIN 16384
#endif
constexpr int kArenaBytes = EDGE_NS::kTensorArenaSize + EDGE_ARENA_MARGIN;
alignas(16) uint8_t g_arena[kArenaBytes];
alignas(4) uint8_t g_buffer[kBufferBytes];
int g_expected = 0;
int g_loaded = 0;
uint32_t g_counts[kMaxRuns];
// A `db` line of up to 512 bytes (1,024 hex digits, for audio; EEMBC hosts send 64). Static, not on the stack: the
// stack's high-water mark is reported as the model's, and this buffer is the harness's.
char g_command[1100];
bool g_have_results = false;
tflite::MicroInterpreter* g_interpreter = nullptr;

void put(const char* s) {
  while (*s) board_putc(*s++);
}

void put_u64(uint64_t v) {
  char digits[21];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) board_putc(digits[--n]);
}

void put_i32(int32_t v) {
  if (v < 0) {
    board_putc('-');
    put_u64(static_cast<uint64_t>(-static_cast<int64_t>(v)));
  } else {
    put_u64(static_cast<uint64_t>(v));
  }
}

void end_line() { put("\r\n"); }

// The stack is painted at boot; the deepest word no longer holding the paint is its high-water mark.
void paint_stack() {
  uint32_t marker = 0;
  for (volatile uint32_t* p = &_ebss; p < &marker - 64; ++p) *p = kStackPaint;
}

uint32_t stack_used() {
  const uint32_t* p = &_ebss;
  while (p < &_estack && *p == kStackPaint) ++p;
  return static_cast<uint32_t>(reinterpret_cast<uintptr_t>(&_estack) - reinterpret_cast<uintptr_t>(p));
}

void error(const char* what) {
  put("e-[");
  put(what);
  put("]");
  end_line();
}

bool parse_uint(const char* s, const char** end, uint32_t* out) {
  if (*s < '0' || *s > '9') return false;
  uint64_t v = 0;
  while (*s >= '0' && *s <= '9') {
    v = v * 10 + static_cast<uint64_t>(*s++ - '0');
    if (v > 0xFFFFFFFFu) return false;
  }
  *end = s;
  *out = static_cast<uint32_t>(v);
  return true;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void put_results() {
  const TfLiteTensor* out = g_interpreter->output(0);
  put("m-results-[");
  for (size_t i = 0; i < out->bytes; ++i) {
    if (i) board_putc(',');
    put_i32(out->type == kTfLiteInt8 ? out->data.int8[i] : out->data.uint8[i]);
  }
  put("]");
  end_line();
}

void put_counts(const char* prefix, int runs, bool as_us) {
  put(prefix);
  for (int i = 0; i < runs; ++i) {
    if (i) board_putc(',');
    uint64_t c = g_counts[i];
    put_u64(as_us ? c / EDGE_COUNTER_PER_US : c * EDGE_COUNTER_NUM / EDGE_COUNTER_DEN);
  }
  put("]");
  end_line();
}

void infer(uint32_t runs, uint32_t warmup) {
  TfLiteTensor* in = g_interpreter->input(0);
  if (g_loaded != static_cast<int>(in->bytes)) {
    put("e-[input needs ");
    put_u64(in->bytes);
    put(" bytes, ");
    put_u64(static_cast<uint64_t>(g_loaded));
    put(" loaded]");
    end_line();
    return;
  }
  if (runs < 1 || runs > kMaxRuns) return error("runs must be 1..1000");
  put("m-warmup-start-");
  put_u64(warmup);
  end_line();
  // The input is copied in before every invoke: TFLM's planner may reuse the input tensor's bytes.
  for (uint32_t i = 0; i < warmup; ++i) {
    memcpy(in->data.raw, g_buffer, in->bytes);
    if (g_interpreter->Invoke() != kTfLiteOk) return error("Invoke failed");
  }
  put("m-warmup-done");
  end_line();
  put("m-infer-start-");
  put_u64(runs);
  end_line();
  uint64_t total = 0;
  for (uint32_t i = 0; i < runs; ++i) {
    memcpy(in->data.raw, g_buffer, in->bytes);
    uint32_t start = board_counter_sync();
    TfLiteStatus status = g_interpreter->Invoke();
    g_counts[i] = board_counter() - start;
    total += g_counts[i];
    if (status != kTfLiteOk) return error("Invoke failed");
  }
  g_have_results = true;
  put("m-lap-us-0");
  end_line();
  put("m-lap-us-");
  put_u64(total / EDGE_COUNTER_PER_US);
  end_line();
  put_counts("m-timings-us-[", static_cast<int>(runs), true);
  put_counts("m-counts-[", static_cast<int>(runs), false);
  put("m-infer-done");
  end_line();
  put_results();
}

#if EDGE_HAS_FRONTEND
void frontend() {
  if (g_loaded != kPcmBytes) {
    put("e-[the front end needs ");
    put_u64(kPcmBytes);
    put(" bytes of 16-bit PCM]");
    end_line();
    return;
  }
  uint32_t start = board_counter_sync();
  int status = EDGE_FRONTEND_INT8(reinterpret_cast<const int16_t*>(g_buffer), g_features);
  g_counts[0] = board_counter() - start;
  if (status != 0) return error("the front end failed");
  put_counts("m-frontend-counts-[", 1, false);
  put("m-features-[");
  for (int i = 0; i < EDGE_NS::kInputBytes; ++i) {
    if (i) board_putc(',');
    put_i32(g_features[i]);
  }
  put("]");
  end_line();
}
#endif

#if EDGE_HAS_DETECTOR
EDGE_DETECTOR_T g_detector;
uint32_t g_listen_carry = 0;  // counts of frames computed after the last run, carried into the next run's figure
uint32_t g_listen_runs = 0;
int32_t g_detections[2 * kMaxRuns];

void listen_reset() {
  EDGE_DETECTOR_INIT(&g_detector);
  g_listen_carry = 0;
  g_listen_runs = 0;
}

// The loaded bytes are the next stretch of a stream of 16-bit PCM: the bundle's detector takes it, the model runs
// whenever an input is ready. Per run, the count covers everything since the previous run: the new frames of the
// incremental front end, the input copy, the invoke and the detector's decision.
void listen() {
  if (g_loaded % 2) return error("listen needs whole 16-bit samples");
  const int16_t* pcm = reinterpret_cast<const int16_t*>(g_buffer);
  const int32_t count = g_loaded / 2;
  TfLiteTensor* in = g_interpreter->input(0);
  const TfLiteTensor* out = g_interpreter->output(0);
  int runs = 0, detections = 0;
  uint32_t start = board_counter_sync();
  for (int32_t fed = 0; fed < count;) {
    fed += EDGE_DETECTOR_FEED(&g_detector, pcm + fed, count - fed);
    if (!EDGE_DETECTOR_READY(&g_detector)) continue;
    if (runs == kMaxRuns) return error("more than 1000 runs in one listen: send shorter stretches");
    EDGE_DETECTOR_INPUT(&g_detector, in->data.int8);
    if (g_interpreter->Invoke() != kTfLiteOk) return error("Invoke failed");
    const int32_t detected = EDGE_DETECTOR_PUSH(&g_detector, out->data.int8);
    const uint32_t now = board_counter();
    g_counts[runs] = g_listen_carry + (now - start);
    g_listen_carry = 0;
    if (detected >= 0) {
      g_detections[2 * detections] = static_cast<int32_t>(g_listen_runs + runs);
      g_detections[2 * detections + 1] = detected;
      ++detections;
    }
    ++runs;
    start = board_counter_sync();
  }
  g_listen_carry += board_counter() - start;
  g_listen_runs += runs;
  put_counts("m-listen-counts-[", runs, false);
  put("m-detections-[");
  for (int i = 0; i < 2 * detections; ++i) {
    if (i) board_putc(',');
    put_i32(g_detections[i]);
  }
  put("]");
  end_line();
}
#endif

void handle(char* command) {
  const char* end = nullptr;
  uint32_t a = 0, b = 0;
  if (strcmp(command, "name") == 0) {
    put("m-name-dut-" EDGE_DUT_NAME);
    end_line();
  } else if (strcmp(command, "profile") == 0) {
    put("m-profile-[" EDGE_FIRMWARE "]");
    end_line();
    put("m-model-[" EDGE_MODEL_SHA "]");
    end_line();
    put("m-arena-[");
    put_u64(EDGE_NS::kTensorArenaSize);
    put("]");
    end_line();
    put("m-arena-used-[");
    put_u64(g_interpreter->arena_used_bytes());
    put("]");
    end_line();
    put("m-stack-used-[");
    put_u64(stack_used());
    put("]");
    end_line();
    put("m-counter-[" EDGE_COUNTER_UNIT "]");
    end_line();
  } else if (strncmp(command, "db load ", 8) == 0 && parse_uint(command + 8, &end, &a) && *end == 0) {
    if (a > static_cast<uint32_t>(kBufferBytes)) return error("more bytes than the input buffer holds");
    g_expected = static_cast<int>(a);
    g_loaded = 0;
    put("m-[Expecting ");
    put_u64(a);
    put(" bytes]");
    end_line();
  } else if (strncmp(command, "db ", 3) == 0) {
    const char* hex = command + 3;
    size_t n = strlen(hex);
    if (n % 2) return error("bad hex");
    for (size_t i = 0; i < n; i += 2) {
      int hi = hex_value(hex[i]), lo = hex_value(hex[i + 1]);
      if (hi < 0 || lo < 0) return error("bad hex");
      if (g_loaded >= g_expected) return error("more bytes than announced");
      g_buffer[g_loaded++] = static_cast<uint8_t>(hi * 16 + lo);
    }
    if (g_loaded == g_expected) {
      put("m-load-done");
      end_line();
    }
  } else if (strncmp(command, "infer ", 6) == 0 && parse_uint(command + 6, &end, &a) && *end == ' ' &&
             parse_uint(end + 1, &end, &b) && *end == 0) {
    infer(a, b);
  } else if (strcmp(command, "results") == 0) {
    if (!g_have_results) return error("no inference yet");
    put_results();
#if EDGE_HAS_FRONTEND
  } else if (strcmp(command, "frontend") == 0) {
    frontend();
#endif
#if EDGE_HAS_DETECTOR
  } else if (strcmp(command, "listen reset") == 0) {
    listen_reset();
    put("m-listen-reset");
    end_line();
  } else if (strcmp(command, "listen") == 0) {
    listen();
#endif
  } else {
    put("e-[unknown command: ");
    put(command);
    put("]");
    end_line();
  }
}

}  // namespace

int main() {
  paint_stack();
  board_init();
  static EDGE_NS::OpResolver resolver;
  if (EDGE_NS::RegisterOps(resolver) != kTfLiteOk) {
    error("op registration failed");
  }
  static tflite::MicroInterpreter interpreter(tflite::GetModel(EDGE_MODEL_DATA), resolver, g_arena, kArenaBytes);
  g_interpreter = &interpreter;
#if EDGE_HAS_DETECTOR
  listen_reset();
#endif
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    error("AllocateTensors failed: the arena (kTensorArenaSize + margin) is too small or an operator is missing");
  }
  put("m-boot-[" EDGE_FIRMWARE "]");
  end_line();
  put("m-ready");
  end_line();
  size_t length = 0;
  for (;;) {
    char c = static_cast<char>(board_getc());
    if (c == '%') {
      g_command[length] = 0;
      handle(g_command);
      put("m-ready");
      end_line();
      length = 0;
    } else if (c != '\r' && c != '\n') {
      if (length < sizeof(g_command) - 1) g_command[length++] = c;
    }
  }
}
