/*
 * 11_executor.c - submit work, take the results as they complete.
 *
 * concurrent.futures in C: submit() returns a future at once; as_completed
 * hands the futures back in the order they finish, whatever the order of
 * submission; mp_wait waits for the first, for all, or for the first
 * failure.  Each future carries its result bytes, or the error its task
 * ended with.
 *
 * Python:  with ProcessPoolExecutor() as ex:
 *              futures = [ex.submit(collatz_steps, n) for n in starts]
 *              for f in as_completed(futures):
 *                  print(f.result())
 */
#include <mproc.h>
#include <stdint.h>
#include <stdio.h>

typedef struct answer {
    uint64_t start;
    uint32_t steps;
} answer;

/* How many steps the Collatz sequence from n takes to reach 1: a task
 * whose length varies a lot from one input to the next. */
static int collatz_steps(const void *arg, size_t len, mp_buf *out)
{
    if (len != sizeof(uint64_t))
        return MP_EINVAL;
    uint64_t n = *(const uint64_t *)arg;
    answer a = {n, 0};
    /* Make the differences visible: repeat the walk many times. */
    for (int rep = 0; rep < 20000; rep++) {
        uint64_t x = n;
        uint32_t steps = 0;
        while (x != 1) {
            x = x % 2 ? 3 * x + 1 : x / 2;
            steps++;
        }
        a.steps = steps;
    }
    return mp_buf_append(out, &a, sizeof a);
}

int main(void)
{
    uint64_t starts[] = {27, 97, 871, 6171, 7, 3, 837799, 1, 63728127, 1161};
    enum { N = sizeof starts / sizeof starts[0] };
    mp_pool *ex = NULL;
    int err = mp_pool_new(NULL, &ex); /* one worker per CPU */
    if (err < 0) {
        fprintf(stderr, "mp_pool_new: %s\n", mp_strerror(err));
        return 1;
    }

    mp_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = mp_pool_submit(ex, collatz_steps, &starts[i], sizeof starts[i]);

    int n = mp_wait(fs, N, MP_FIRST_COMPLETED, 30.0);
    printf("mp_wait(FIRST_COMPLETED) -> %d finished so far\n", n);

    mp_as_completed *it;
    if (mp_as_completed_new(fs, N, &it) < 0)
        return 1;
    mp_future *f;
    int got = 0, ok = 1;
    printf("in order of completion:\n");
    while (mp_as_completed_next(it, &f, 30.0) == 0) {
        answer a;
        int rc = mp_future_get(f, &a, sizeof a, NULL, 0);
        printf("  collatz(%llu) takes %u steps (%s)\n", (unsigned long long)a.start, a.steps,
               mp_err_name(rc));
        ok &= rc == 0;
        got++;
    }
    mp_as_completed_free(it);
    /* Known answers to check against. */
    answer a;
    mp_future_get(fs[0], &a, sizeof a, NULL, 0);
    ok &= a.steps == 111;
    mp_future_get(fs[6], &a, sizeof a, NULL, 0);
    ok &= a.steps == 524;

    printf("mp_wait(ALL_COMPLETED) -> %d\n", mp_wait(fs, N, MP_ALL_COMPLETED, 30.0));
    for (int i = 0; i < N; i++)
        mp_future_free(fs[i]);
    mp_pool_shutdown(ex, false, 30.0);
    mp_pool_free(ex);
    printf("%d of %d results, %s\n", got, N, ok && got == N ? "all correct" : "WRONG");
    return ok && got == N ? 0 : 1;
}
