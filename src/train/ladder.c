/* The thread-count ladder of --threads auto (see ladder.h). */
#include "train/ladder.h"

#include <stdlib.h>
#include <string.h>

void dpt_ladder_init(dpt_ladder *lad, int T, int adapt)
{
    memset(lad, 0, sizeof *lad);
    lad->probe = -1;
    lad->down = 1;
    lad->since = DPT_LADDER_PROBE - 1; /* the first probe after one timed chunk */
    for (int c = T > 1 ? T : 1; lad->n < DPT_LADDER_RUNGS; c = (c + 1) / 2) {
        lad->count[lad->n++] = c;
        if (c == 1 || !adapt)
            break;
    }
    const char *s = getenv("DPTRAIN_ADAPT");
    if (s && !strcmp(s, "shuffle"))
        lad->shuffle = 0x9e3779b97f4a7c15ull;
}

int dpt_ladder_next(dpt_ladder *lad, size_t *most)
{
    *most = 0;
    if (lad->shuffle) {
        lad->shuffle = lad->shuffle * 6364136223846793005ull + 1442695040888963407ull;
        *most = 1 + (lad->shuffle >> 33) % 16;
        return (int)((lad->shuffle >> 40) % (unsigned)lad->n);
    }
    if (lad->probe < 0 && lad->since >= DPT_LADDER_PROBE && lad->n > 1) {
        int r = lad->cur + (lad->down ? 1 : -1);
        if (r < 0 || r >= lad->n) /* at an end: the only neighbour */
            r = lad->cur + (lad->down ? -1 : 1);
        lad->down = !lad->down;
        lad->since = 0;
        lad->probe = r;
    }
    if (lad->probe < 0)
        return lad->cur;
    *most = lad->warm[lad->probe] ? DPT_LADDER_STEPS : DPT_LADDER_WARM;
    return lad->probe;
}

int dpt_ladder_drop(dpt_ladder *lad, size_t *most)
{
    lad->probe = -1;
    *most = 0;
    return lad->cur;
}

void dpt_ladder_took(dpt_ladder *lad, int r, size_t steps, size_t samples, double secs)
{
    if (r < 0 || r >= lad->n)
        return;
    if (!lad->warm[r]) {
        lad->warm[r] = 1;
        return;
    }
    if (secs <= 0 || steps < DPT_LADDER_WARM)
        return; /* too short to tell (an epoch's last steps, say): asked again */
    const double v = (double)samples / secs;
    if (r == lad->probe) {
        lad->rate[r] = v;
        lad->probe = -1;
        if (v > lad->rate[lad->cur] * 1.03)
            lad->cur = r;
        return;
    }
    if (r != lad->cur)
        return;
    lad->rate[r] = lad->rate[r] > 0 ? 0.5 * lad->rate[r] + 0.5 * v : v;
    lad->since++;
}
