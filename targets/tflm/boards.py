"""MCU profiles that budgets, firmware builds and reports refer to by name.

Memories are the parts' datasheet figures: what a firmware image and its tensor arena must share; the firmware is
linked against exactly these sizes. A board with a `qemu_machine` is also *emulated*: QEMU's model of Arm's
MPS2/MPS3 FPGA board with the same core runs the firmware, counting instructions (`-icount shift=0`: one
nanosecond of virtual time per instruction). `cpi` is the stated *assumption* that turns instructions into
cycles for a latency estimate (in-order Cortex-M cores with CMSIS-NN's load/multiply-accumulate loops and flash
wait states: about 1.3 on M4/M33, 1.0 on the dual-issue M7, 1.0 per MVE beat-instruction on the M55); it is
printed beside every figure it makes. `cycles_per_mac` is the older MAC-based assumption, used only where no
firmware ran.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The MPS2 boards' (AN385/386/500) and QEMU's peripheral clock: the CMSDK timer ticks at 25 MHz. The TrustZone
# boards (AN505, AN547) run their firmware in the Secure state, so it is linked at the Secure aliases of their memory
# and peripherals; their timers tick at the system clock QEMU gives them (20 and 32 MHz).
MPS2_PCLK_HZ = 25_000_000


@dataclass(frozen=True)
class Board:
    name: str
    core: str
    clock_mhz: int
    ram_kb: int
    flash_kb: int
    example: str
    cycles_per_mac: float
    cpu: str = ""  # arm-none-eabi-gcc -mcpu
    fpu: str | None = None  # -mfpu, None for no FPU
    float_abi: str = "soft"
    cmsis_core: str = ""  # CMSIS device name suffix: M4 -> ARMCM4.h, CPU_M4
    cpi: float = 1.0
    qemu_machine: str | None = None  # the qemu-system-arm machine that emulates this core
    flash_origin: int = 0x0000_0000
    ram_origin: int = 0x2000_0000
    uart_base: int = 0x4000_4000  # CMSDK APB UART0
    timer_base: int = 0x4000_0000  # CMSDK APB timer 0
    timer_hz: int = MPS2_PCLK_HZ
    emulator_kb: tuple[int, int] = (4096, 4096)  # what the emulated machine maps at the two origins (flash, RAM)
    systick: bool = False  # count with the core's SysTick (processor clock = timer_hz) instead of a CMSDK timer

    @property
    def buildable(self) -> bool:
        return bool(self.cpu)

    def latency_ms(self, instructions):
        """Instructions (a number or an array) as milliseconds on this board: x the stated CPI / the clock. An
        estimate: the CPI is an assumption, printed beside every figure it makes."""
        return instructions * self.cpi / (self.clock_mhz * 1e3)

    @property
    def counter(self) -> dict[str, object]:
        """How the harness counts: on the emulator, timer ticks at `timer_hz` of virtual time, each worth
        1e9 / timer_hz instructions (`num` / `den`, exact); `per_us` converts ticks to virtual microseconds."""
        div = math.gcd(1_000_000_000, self.timer_hz)
        num, den = 1_000_000_000 // div, self.timer_hz // div
        per_tick = f"{num / den:g}"
        return {
            "dwt": False,
            "systick": self.systick,
            "num": num,
            "den": den,
            "per_us": self.timer_hz // 1_000_000,
            "unit": f"instructions; qemu icount shift=0, {self.timer_hz / 1e6:g} MHz {'SysTick' if self.systick else 'timer'}: "
            f"{per_tick} per tick",
        }


BOARDS: dict[str, Board] = {
    b.name: b
    for b in [
        Board("cortex-m4f-256k", "Cortex-M4F", 80, 256, 1024, "STM32L4R5 / nRF52840-class", 4.0,
              cpu="cortex-m4", fpu="fpv4-sp-d16", float_abi="hard", cmsis_core="M4", cpi=1.3,
              qemu_machine="mps2-an386"),
        Board("cortex-m7-512k", "Cortex-M7", 216, 512, 2048, "STM32F767 / i.MX RT1060-class", 2.0,
              cpu="cortex-m7", fpu="fpv5-sp-d16", float_abi="hard", cmsis_core="M7", cpi=1.0,
              qemu_machine="mps2-an500"),
        Board("cortex-m33-256k", "Cortex-M33", 110, 256, 1024, "nRF5340 app core / STM32U5-class", 3.5,
              cpu="cortex-m33", fpu="fpv5-sp-d16", float_abi="hard", cmsis_core="M33", cpi=1.3,
              qemu_machine="mps2-an505", flash_origin=0x1000_0000, ram_origin=0x3800_0000,
              uart_base=0x5020_0000, timer_base=0x5000_0000, timer_hz=20_000_000),
        Board("cortex-m55-512k", "Cortex-M55 (Helium)", 160, 512, 512, "Alif Ensemble E3 high-efficiency core-class",
              1.0, cpu="cortex-m55", fpu="auto", float_abi="hard", cmsis_core="M55", cpi=1.0,
              qemu_machine="mps3-an547", flash_origin=0x1000_0000, ram_origin=0x3000_0000,
              uart_base=0x5930_3000, timer_base=0x5800_0000, timer_hz=32_000_000, emulator_kb=(512, 512),
              systick=True),
        Board("esp32-s3", "Xtensa LX7", 240, 512, 8192, "ESP32-S3 (internal SRAM, 8 MB flash module)", 2.5),
    ]
}  # fmt: skip
