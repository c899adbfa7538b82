"""MCU profiles that budgets and reports refer to by name.

Memories are the parts' datasheet figures: what a firmware image and its tensor arena must share.
`cycles_per_mac` is an *assumption* used only for labelled latency estimates when no board is attached: typical
int8 throughput of CMSIS-NN (Cortex-M) or ESP-NN (ESP32-S3) kernels on depthwise-separable convnets, including
kernel overhead. Measured numbers come only from a board that ran the model.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Board:
    name: str
    core: str
    clock_mhz: int
    ram_kb: int
    flash_kb: int
    example: str
    cycles_per_mac: float


BOARDS: dict[str, Board] = {
    b.name: b
    for b in [
        Board("cortex-m4f-256k", "Cortex-M4F", 80, 256, 1024, "STM32L4R5 / nRF52840-class", 4.0),
        Board("cortex-m7-512k", "Cortex-M7", 216, 512, 2048, "STM32F767 / i.MX RT1060-class", 2.0),
        Board("cortex-m33-256k", "Cortex-M33", 110, 256, 1024, "nRF5340 app core / STM32U5-class", 3.5),
        Board("esp32-s3", "Xtensa LX7", 240, 512, 8192, "ESP32-S3 (internal SRAM, 8 MB flash module)", 2.5),
    ]
}
