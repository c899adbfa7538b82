// MPS2 / MPS3 peripherals as QEMU emulates them: CMSDK APB UART and CMSDK APB timer (counting down at the
// peripheral clock). Under `qemu-system-arm -icount shift=0` virtual time advances one nanosecond per instruction,
// so a timer tick of the PCLK is (1e9 / PCLK) instructions: main.cc multiplies it out (EDGE_COUNTER_NUM / _DEN).
#include "board.h"

#define REG(addr) (*(volatile uint32_t*)(addr))

#define UART_DATA REG(EDGE_UART_BASE + 0x00)
#define UART_STATE REG(EDGE_UART_BASE + 0x04)
#define UART_CTRL REG(EDGE_UART_BASE + 0x08)
#define UART_BAUDDIV REG(EDGE_UART_BASE + 0x10)
#define UART_TX_FULL 1u
#define UART_RX_FULL 2u

#if EDGE_COUNTER_DWT
#define DEMCR REG(0xE000EDFCu)
#define DWT_CTRL REG(0xE0001000u)
#define DWT_CYCCNT REG(0xE0001004u)
#elif EDGE_COUNTER_SYSTICK
// Boards whose timers are not CMSDK's (the SSE-300 of AN547): the core's own SysTick at the processor clock, its
// 24-bit count extended by counting wraps in its exception.
#define SYST_CSR REG(0xE000E010u)
#define SYST_RVR REG(0xE000E014u)
#define SYST_CVR REG(0xE000E018u)
static volatile uint32_t g_systick_wraps;
void SysTick_Handler(void) { ++g_systick_wraps; }
#else
#define TIMER_CTRL REG(EDGE_TIMER_BASE + 0x00)
#define TIMER_VALUE REG(EDGE_TIMER_BASE + 0x04)
#define TIMER_RELOAD REG(EDGE_TIMER_BASE + 0x08)
#endif

void board_init(void) {
  UART_BAUDDIV = 16;
  UART_CTRL = 3u;  // TX and RX enabled, no interrupts: the firmware polls
  // Reading DATA tells the emulator the receiver can take input: QEMU only starts listening to the host side when
  // a read frees the receive buffer, not when RX is enabled, so without this read input may never arrive.
  (void)UART_DATA;
#if EDGE_COUNTER_DWT
  DEMCR |= 1u << 24;  // TRCENA
  DWT_CYCCNT = 0;
  DWT_CTRL |= 1u;
#elif EDGE_COUNTER_SYSTICK
  SYST_RVR = 0xFFFFFFu;
  SYST_CVR = 0;
  SYST_CSR = 7u;  // enabled, exception on wrap, processor clock
#else
  TIMER_CTRL = 0;
  TIMER_RELOAD = 0xFFFFFFFFu;
  TIMER_VALUE = 0xFFFFFFFFu;
  TIMER_CTRL = 1u;  // enabled, PCLK, no interrupt
#endif
}

void board_putc(char c) {
  while (UART_STATE & UART_TX_FULL) {
  }
  UART_DATA = (uint32_t)(unsigned char)c;
}

int board_getc(void) {
  while (!(UART_STATE & UART_RX_FULL)) {
  }
  return (int)(UART_DATA & 0xFFu);
}

uint32_t board_counter(void) {
#if EDGE_COUNTER_DWT
  return DWT_CYCCNT;
#elif EDGE_COUNTER_SYSTICK
  uint32_t wraps, value;
  do {
    wraps = g_systick_wraps;
    value = SYST_CVR;
  } while (wraps != g_systick_wraps);
  return (wraps << 24) + (0xFFFFFFu - value);  // counts down: complement it; deltas stay right across 2^32
#else
  return ~TIMER_VALUE;  // counts down: complement it so the count goes up
#endif
}

uint32_t board_counter_sync(void) {
  uint32_t now = board_counter();
  uint32_t next;
  while ((next = board_counter()) == now) {
  }
  return next;
}
