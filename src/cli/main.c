/* dptrain: the command. Dispatches subcommands; see --help. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: dptrain <command> [options]\n"
    "\n"
    "Data-parallel trainer for fully connected networks on MNIST-style data.\n"
    "\n"
    "commands:\n"
    "  train     train a network (default 784-128-64-10, Adam, dropout 0.2)\n"
    "  eval      test accuracy and cost of a saved model\n"
    "  predict   predictions of a saved model, optionally as a PNG grid\n"
    "  bench     thread scaling: samples/s and the time split per thread count\n"
    "  sweep     one training per value of a hyperparameter, as a Markdown table\n"
    "  info      CPU topology, threads and the gemm kernel in use\n"
    "\n"
    "Run 'dptrain <command> --help' for a command's options.\n"
    "Exit status: 0 success, 1 the run failed, 2 bad usage or bad input.\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("dptrain %s\n", DPT_VERSION);
        return 0;
    }
    /* DPTRAIN_ISA forces a gemm kernel; a bad value is a usage error. */
    const char *isa = getenv("DPTRAIN_ISA");
    if (isa && *isa) {
        dpt_error err;
        if (dpt_gemm_select(isa, &err))
            return cli_fail(&err);
    }
    if (dpt_sparse_mode() < 0)
        return cli_failf(2, "DPTRAIN_SPARSE: unknown value '%s' (expected auto, 0, input "
                         "or dz)", getenv("DPTRAIN_SPARSE"));
    if (dpt_balance_mode() < 0)
        return cli_failf(2, "DPTRAIN_BALANCE: unknown value '%s' (expected on, off or "
                         "shuffle)", getenv("DPTRAIN_BALANCE"));
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = { { "train", cmd_train }, { "eval", cmd_eval }, { "predict", cmd_predict },
                 { "bench", cmd_bench }, { "sweep", cmd_sweep }, { "info", cmd_info } };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(cmd, cmds[i].name))
            return cmds[i].fn(argc - 1, argv + 1);
    return cli_failf(2, "%s: unknown command (train, eval, predict, bench, sweep, info; see "
                     "dptrain --help)", cmd);
}
