/* libFuzzer target: the safetensors loader on arbitrary bytes. It must reject them with
 * a one-line error naming the file, or load a network that trains a step and can be
 * saved again; never crash. Build and run: make fuzz (clang). */
#include "dptrain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/dpt_fuzz_ckpt_%d", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    dpt_net *net;
    dpt_train_state st;
    dpt_error err;
    if (dpt_checkpoint_load(path, &net, &st, &err) == DPT_OK) {
        if (dpt_net_nparams(net) == 0)
            abort();
        (void)dpt_net_fingerprint(net);
        dpt_train_state_free(&st);
        dpt_net_free(net);
    } else if (strchr(err.msg, '\n') || !strstr(err.msg, path)) {
        abort();
    }
    unlink(path);
    return 0;
}
