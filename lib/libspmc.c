/* libspmc.c - the library: the newest day's queue (-I dayN), compiled with
 * -fvisibility=hidden. The public header is read first, under default
 * visibility, so the functions it declares, and only those, are exported
 * from libspmc.so; libspmc.map then names them. */
#define _GNU_SOURCE /* as spmc_queue.c does, before any system header */
#pragma GCC visibility push(default)
#include "spmc_queue.h"
#pragma GCC visibility pop
#include "spmc_queue.c"
