"""MCU profiles that budgets and reports refer to by name.

Figures are the parts' datasheet memories: what a firmware image and its tensor arena must share.
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


BOARDS: dict[str, Board] = {
    b.name: b
    for b in [
        Board("cortex-m4f-256k", "Cortex-M4F", 80, 256, 1024, "STM32L4R5 / nRF52840-class"),
        Board("cortex-m7-512k", "Cortex-M7", 216, 512, 2048, "STM32F767 / i.MX RT1060-class"),
        Board("cortex-m33-256k", "Cortex-M33", 110, 256, 1024, "nRF5340 app core / STM32U5-class"),
        Board("esp32-s3", "Xtensa LX7", 240, 512, 8192, "ESP32-S3 (internal SRAM, 8 MB flash module)"),
    ]
}
