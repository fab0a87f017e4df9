#include "cli.h"
int cmd_bench(int argc, char **argv) { (void)argc; (void)argv; return cli_failf(2, "bench: not built yet"); }
