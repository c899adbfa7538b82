// The two things the benchmark firmware needs from a board: a UART and an instruction or cycle counter.
// board.c implements them for Arm's MPS2/MPS3 FPGA boards (CMSDK UART and timer), which QEMU emulates; on your own
// board, implement these four functions with its HAL (and set EDGE_COUNTER_DWT to count cycles with the DWT).
#ifndef EDGE_BOARD_H_
#define EDGE_BOARD_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void board_init(void);
void board_putc(char c);
int board_getc(void);  // blocks until a byte arrives
// A free-running count and what one unit of it is worth in instructions or cycles (see EDGE_COUNTER_UNIT).
uint32_t board_counter(void);
// Waits for the counter's next tick, so that a measurement starts at the same phase of a coarse timer every time.
uint32_t board_counter_sync(void);

#ifdef __cplusplus
}
#endif

#endif  // EDGE_BOARD_H_
