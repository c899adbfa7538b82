// Reset and fault handlers and the vector table: the C runtime's start on a bare Cortex-M, nothing more.
#include <stdint.h>
#include <string.h>

#include "board.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern void (*__init_array_start[])(void);
extern void (*__init_array_end[])(void);
extern int main(void);

static void put_line(const char* s) {
  while (*s) board_putc(*s++);
}

void Default_Handler(void) {
  board_init();
  put_line("e-[fault: the firmware took an exception]\r\nm-ready\r\n");
  for (;;) {
  }
}

void SysTick_Handler(void) __attribute__((weak, alias("Default_Handler")));

void Reset_Handler(void) {
  memcpy(&_sdata, &_sidata, (uintptr_t)&_edata - (uintptr_t)&_sdata);
  memset(&_sbss, 0, (uintptr_t)&_ebss - (uintptr_t)&_sbss);
#if defined(__ARM_FP)
  *(volatile uint32_t*)0xE000ED88u |= 0xFu << 20;  // CPACR: CP10 and CP11 full access (the FPU)
  __asm volatile("dsb\n isb");
#endif
  for (void (**init)(void) = __init_array_start; init < __init_array_end; ++init) (*init)();  // constructors
  main();
  for (;;) {
  }
}

__attribute__((section(".isr_vector"), used)) void (*const g_vectors[16])(void) = {
    (void (*)(void))(&_estack), Reset_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler,          Default_Handler, 0, 0, 0, 0, Default_Handler, Default_Handler, 0,
    Default_Handler,          SysTick_Handler,
};

// newlib's hooks for a program without an operating system (nothing here allocates or exits).
void _exit(int status) {
  (void)status;
  for (;;) {
  }
}
void* _sbrk(intptr_t increment) {
  (void)increment;
  return (void*)-1;
}
