#include "cli.h"
int cmd_sweep(int argc, char **argv) { (void)argc; (void)argv; return cli_failf(2, "sweep: not built yet"); }
