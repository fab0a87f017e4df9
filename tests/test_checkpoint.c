/* safetensors checkpoints: round trip, PyTorch layout, and every corruption rejected
 * with DPT_EINPUT and a message naming the file. */
#include "nets.h"

#include <math.h>

static dpt_net *sample_net(void)
{
    dpt_config c = tiny_config("6-5-4-3");
    c.batchnorm = 1;
    dpt_error err;
    dpt_net *net = dpt_net_create(&c, &err);
    float *p = dpt_net_params(net);
    for (size_t i = 0; i < dpt_net_nparams(net); i++)
        p[i] += (float)i * 1e-3f;
    size_t ns;
    float *s = dpt_net_stats(net, &ns);
    for (size_t i = 0; i < ns; i++)
        s[i] = 0.5f + (float)i;
    return net;
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    char *b = malloc(*n + 1);
    cr_assert_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

Test(checkpoint, round_trip_keeps_weights_and_state_bitwise)
{
    dpt_net *net = sample_net();
    dpt_train_state st;
    dpt_train_state_init(&st);
    st.epoch = 2;
    st.batch = 7;
    st.best_cost = 0.25;
    st.bad_evals = 1;
    const char *path = tmppath("a.safetensors");
    dpt_error err = { 0 };
    cr_assert_eq(dpt_checkpoint_save(path, net, &st, &err), DPT_OK, "%s", err.msg);
    dpt_net *back;
    dpt_train_state st2;
    cr_assert_eq(dpt_checkpoint_load(path, &back, &st2, &err), DPT_OK, "%s", err.msg);
    cr_assert_eq(dpt_net_fingerprint(back), dpt_net_fingerprint(net));
    cr_assert_eq(st2.epoch, 2);
    cr_assert_eq(st2.batch, 7);
    cr_assert_eq(st2.best_cost, 0.25);
    cr_assert_eq(st2.bad_evals, 1);
    cr_assert_eq(dpt_net_config(back)->batchnorm, 1);
    dpt_net_free(back);
    dpt_net_free(net);
}

Test(checkpoint, weights_are_stored_out_by_in_as_pytorch_linear)
{
    dpt_net *net = sample_net();
    const char *path = tmppath("b.safetensors");
    dpt_error err = { 0 };
    cr_assert_eq(dpt_checkpoint_save(path, net, NULL, &err), DPT_OK);
    size_t n;
    char *b = slurp(path, &n);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++)
        hl |= (uint64_t)(unsigned char)b[i] << (8 * i);
    cr_assert_lt(hl, n);
    cr_assert_eq(hl % 8, 0, "data starts 8-byte aligned");
    b[8 + hl - 1] = b[8 + hl - 1]; /* header is JSON */
    char *hdr = strndup(b + 8, hl);
    cr_assert(strstr(hdr, "\"layers.0.weight\":{\"dtype\":\"F32\",\"shape\":[5,6]"), "%s", hdr);
    cr_assert(strstr(hdr, "\"layers.0.bn.running_var\""), "%s", hdr);
    cr_assert(strstr(hdr, "\"arch\":\"6-5-4-3\""), "%s", hdr);
    /* weight [o][i] in the file = W[i][o] in memory (layer 0 starts the data) */
    const char *w = strstr(hdr, "\"layers.0.weight\"");
    unsigned long long off0;
    cr_assert_eq(sscanf(strstr(w, "data_offsets\":[") + 15, "%llu", &off0), 1);
    float f12;
    memcpy(&f12, b + 8 + hl + off0 + (1 * 6 + 2) * 4, 4); /* out 1, in 2 */
    cr_assert_eq(f12, dpt_net_params(net)[2 * 5 + 1]);
    free(hdr);
    free(b);
    dpt_net_free(net);
}

/* Saves a good checkpoint, lets `mutate` damage it, and expects a clean rejection. */
static void expect_rejected(void (*mutate)(char *b, size_t *n), const char *needle)
{
    dpt_net *net = sample_net();
    const char *path = tmppath("c.safetensors");
    dpt_error err = { 0 };
    cr_assert_eq(dpt_checkpoint_save(path, net, NULL, &err), DPT_OK);
    dpt_net_free(net);
    size_t n;
    char *b = slurp(path, &n);
    mutate(b, &n);
    write_bytes(path, b, n);
    free(b);
    dpt_net *back = (dpt_net *)1;
    int rc = dpt_checkpoint_load(path, &back, NULL, &err);
    cr_assert_eq(rc, DPT_EINPUT, "expected rejection (%s), got %d: %s", needle, rc, err.msg);
    cr_assert_null(back);
    cr_assert(strstr(err.msg, needle), "message '%s' lacks '%s'", err.msg, needle);
    cr_assert(strstr(err.msg, path), "message '%s' does not name the file", err.msg);
}

static uint64_t hlen(const char *b)
{
    uint64_t h = 0;
    for (int i = 0; i < 8; i++)
        h |= (uint64_t)(unsigned char)b[i] << (8 * i);
    return h;
}

static void replace_in_header(char *b, const char *from, const char *to)
{
    char *p = memmem(b + 8, hlen(b), from, strlen(from));
    cr_assert_not_null(p, "no '%s' in header", from);
    cr_assert_eq(strlen(from), strlen(to));
    memcpy(p, to, strlen(to));
}

static void truncate_data(char *b, size_t *n) { (void)b; *n -= 10; }
static void truncate_header(char *b, size_t *n) { *n = 8 + hlen(b) / 2; }
static void tiny_file(char *b, size_t *n) { (void)b; *n = 5; }
static void huge_length(char *b, size_t *n) { (void)n; b[6] = 0x7f; }
static void bad_json(char *b, size_t *n) { (void)n; b[8 + 10] = '}'; }
static void wrong_shape(char *b, size_t *n) { (void)n; replace_in_header(b, "[5,6]", "[6,5]"); }
static void wrong_dtype(char *b, size_t *n) { (void)n; replace_in_header(b, "\"F32\"", "\"F16\""); }
static void foreign(char *b, size_t *n) { (void)n; replace_in_header(b, "\"dptrain\"", "\"pytorch\""); }
static void missing(char *b, size_t *n) { (void)n; replace_in_header(b, "layers.2.bias", "layers.9.bias"); }
static void offsets_beyond(char *b, size_t *n)
{
    /* cut the data, keeping the header: the last tensor's end is now beyond the file */
    (void)b;
    *n -= 4;
}
/* Rewrites the header with `from` replaced by `to` (any lengths), fixing the length. */
static void rewrite_header(char *b, size_t *n, const char *from, const char *to)
{
    uint64_t hl = hlen(b);
    char *hdr = strndup(b + 8, hl);
    char *p = strstr(hdr, from);
    cr_assert_not_null(p, "no '%s' in header", from);
    size_t nh = hl - strlen(from) + strlen(to);
    char *out = malloc(*n + strlen(to));
    memcpy(out + 8, hdr, (size_t)(p - hdr));
    memcpy(out + 8 + (p - hdr), to, strlen(to));
    strcpy(out + 8 + (p - hdr) + strlen(to), p + strlen(from));
    memcpy(out + 8 + nh, b + 8 + hl, *n - 8 - hl);
    for (int i = 0; i < 8; i++)
        out[i] = (char)(nh >> (8 * i));
    *n = 8 + nh + (*n - 8 - hl);
    memcpy(b, out, *n);
    free(out);
    free(hdr);
}

/* the batchnorm weight of layer 0 pointing at the bias's bytes (same size): overlap */
static void overlap(char *b, size_t *n)
{
    char *hdr = strndup(b + 8, hlen(b)), from[96], to[96];
    unsigned long long b0, b1, g0, g1;
    cr_assert_eq(sscanf(strstr(hdr, "\"layers.0.bias\""), "\"layers.0.bias\":{\"dtype\":\"F32\","
                        "\"shape\":[5],\"data_offsets\":[%llu,%llu]", &b0, &b1), 2);
    cr_assert_eq(sscanf(strstr(hdr, "\"layers.0.bn.weight\""), "\"layers.0.bn.weight\":{\"dtype\":"
                        "\"F32\",\"shape\":[5],\"data_offsets\":[%llu,%llu]", &g0, &g1), 2);
    snprintf(from, sizeof from, "[%llu,%llu]", g0, g1);
    snprintf(to, sizeof to, "[%llu,%llu]", b0, b1);
    free(hdr);
    rewrite_header(b, n, from, to);
}

Test(checkpoint, truncated_data_is_rejected) { expect_rejected(truncate_data, "data"); }
Test(checkpoint, truncated_header_is_rejected) { expect_rejected(truncate_header, "header length"); }
Test(checkpoint, a_file_shorter_than_the_length_is_rejected) { expect_rejected(tiny_file, "truncated"); }
Test(checkpoint, bad_header_length_is_rejected) { expect_rejected(huge_length, "bad header length"); }
Test(checkpoint, bad_json_is_rejected) { expect_rejected(bad_json, "bad safetensors header"); }
Test(checkpoint, wrong_shape_is_rejected) { expect_rejected(wrong_shape, "has shape [6, 5], expected [5, 6]"); }
Test(checkpoint, wrong_dtype_is_rejected) { expect_rejected(wrong_dtype, "dtype F16"); }
Test(checkpoint, a_foreign_file_is_rejected) { expect_rejected(foreign, "not a dptrain checkpoint"); }
Test(checkpoint, a_missing_tensor_is_rejected) { expect_rejected(missing, "unexpected tensor 'layers.9.bias'"); }
Test(checkpoint, offsets_beyond_the_file_are_rejected) { expect_rejected(offsets_beyond, "data_offsets"); }
Test(checkpoint, overlapping_tensors_are_rejected) { expect_rejected(overlap, "overlaps"); }

Test(checkpoint, a_missing_file_is_a_clear_error)
{
    dpt_net *net;
    dpt_error err = { 0 };
    cr_assert_eq(dpt_checkpoint_load(tmppath("none"), &net, NULL, &err), DPT_EINPUT);
    cr_assert(strstr(err.msg, "cannot open"), "%s", err.msg);
}

Test(checkpoint, saving_never_leaves_a_partial_file_under_the_final_name)
{
    dpt_net *net = sample_net();
    dpt_error err = { 0 };
    /* a directory that does not exist: the temporary file cannot even be created */
    cr_assert_eq(dpt_checkpoint_save("/nonexistent/x.safetensors", net, NULL, &err), DPT_EFAIL);
    cr_assert(strstr(err.msg, "/nonexistent/x.safetensors"), "%s", err.msg);
    dpt_net_free(net);
}

Test(checkpoint, a_resumed_run_may_change_epochs_and_threads_but_not_the_recipe)
{
    dpt_net *net = sample_net();
    dpt_config c = *dpt_net_config(net);
    dpt_error err = { 0 };
    c.epochs = 50;
    c.threads = 3;
    c.patience = 4;
    cr_assert_eq(dpt_net_reconfigure(net, &c, &err), DPT_OK, "%s", err.msg);
    cr_assert_eq(dpt_net_config(net)->epochs, 50);
    c.lr *= 2;
    cr_assert_eq(dpt_net_reconfigure(net, &c, &err), DPT_EINPUT);
    cr_assert(strstr(err.msg, "--lr: differs from the checkpoint's"), "%s", err.msg);
    c = *dpt_net_config(net);
    c.sizes[1] = 7;
    cr_assert_eq(dpt_net_reconfigure(net, &c, &err), DPT_EINPUT);
    cr_assert(strstr(err.msg, "--arch"), "%s", err.msg);
    dpt_net_free(net);
}

/* A resumable checkpoint (with the early-stopping copy of the best weights) whose
 * training-state metadata is damaged: rejected, and nothing leaks on that path (the
 * sanitizer build checks; found by tests/fuzz). */
Test(checkpoint, damaged_training_state_is_rejected_without_leaks)
{
    dpt_net *net = sample_net();
    dpt_train_state st;
    dpt_train_state_init(&st);
    st.best = calloc(dpt_net_nparams(net) + 64, sizeof(float));
    const char *path = tmppath("state.safetensors");
    dpt_error err = { 0 };
    cr_assert_eq(dpt_checkpoint_save(path, net, &st, &err), DPT_OK, "%s", err.msg);
    dpt_train_state_free(&st);
    dpt_net_free(net);
    size_t n;
    char *b = slurp(path, &n);
    char *grown = realloc(b, n + 16);
    cr_assert_not_null(grown);
    rewrite_header(grown, &n, "\"bad_evals\":\"0\"", "\"bad_evals\":\"zero\"");
    write_bytes(path, grown, n);
    free(grown);
    dpt_net *back = NULL;
    cr_assert_eq(dpt_checkpoint_load(path, &back, &st, &err), DPT_EINPUT);
    cr_assert(strstr(err.msg, "'bad_evals' = 'zero' is not a number"), "%s", err.msg);
    cr_assert_null(back);
    cr_assert_null(st.best);
}
