/*
 * 09_pool.c - a pool of worker processes: map, starmap and apply_async.
 *
 * The seeds' "4_basic_pool.py": squares of numbers with map, powers of
 * pairs with starmap, and a few squares with apply_async whose results are
 * collected later with get().  In C a map runs over an array of fixed-size
 * elements, and starmap's tuples of arguments are structs.
 *
 * Python:  with Pool(4) as pool:
 *              squares = pool.map(square_number, numbers)
 *              powers = pool.starmap(pow, [(2, 3), (4, 5), (6, 7)])
 *              results = [pool.apply_async(square_number, (n,)) for n in numbers[:5]]
 *              async_squares = [r.get() for r in results]
 */
#include <mproc.h>
#include <stdio.h>

/* map: one input element to one output element. */
static int square_number(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    long n = *(const long *)in;
    *(long *)out = n * n;
    return 0;
}

/* starmap: the arguments of one call, as a struct. */
typedef struct pow_args {
    long base, exp;
} pow_args;

static int power(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    const pow_args *a = in;
    long r = 1;
    for (long i = 0; i < a->exp; i++)
        r *= a->base;
    *(long *)out = r;
    return 0;
}

/* apply_async: argument bytes in, result bytes out. */
static int square_task(const void *arg, size_t len, mp_buf *out)
{
    (void)len;
    long n = *(const long *)arg;
    long sq = n * n;
    return mp_buf_append(out, &sq, sizeof sq);
}

int main(void)
{
    long numbers[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    enum { N = sizeof numbers / sizeof numbers[0] };
    int ok = 1;

    mp_pool_opts opts = MP_POOL_OPTS_INIT;
    opts.processes = 4;
    mp_pool *pool = NULL;
    int err = mp_pool_new(&opts, &pool);
    if (err < 0) {
        fprintf(stderr, "mp_pool_new: %s\n", mp_strerror(err));
        return 1;
    }

    long squares[N];
    int rc = mp_pool_map(pool, square_number, numbers, N, sizeof numbers[0], squares,
                         sizeof squares[0], 0);
    printf("map(square_number, numbers) -> %s:", mp_err_name(rc));
    for (int i = 0; i < N; i++) {
        printf(" %ld", squares[i]);
        ok &= squares[i] == numbers[i] * numbers[i];
    }
    printf("\n");

    pow_args pairs[] = {{2, 3}, {4, 5}, {6, 7}};
    long powers[3];
    rc = mp_pool_starmap(pool, power, pairs, 3, sizeof pairs[0], powers, sizeof powers[0], 0);
    printf("starmap(pow, [(2,3), (4,5), (6,7)]) -> %s: %ld %ld %ld\n", mp_err_name(rc), powers[0],
           powers[1], powers[2]);
    ok &= powers[0] == 8 && powers[1] == 1024 && powers[2] == 279936;

    mp_future *results[5];
    for (int i = 0; i < 5; i++)
        results[i] = mp_pool_apply_async(pool, square_task, &numbers[i], sizeof numbers[i]);
    printf("apply_async, then get():");
    for (int i = 0; i < 5; i++) {
        long v = 0;
        rc = mp_future_get(results[i], &v, sizeof v, NULL, 10.0);
        printf(" %ld", v);
        ok &= rc == 0 && v == numbers[i] * numbers[i];
        mp_future_free(results[i]);
    }
    printf("\n");

    mp_pool_close(pool);
    rc = mp_pool_join(pool, 10.0);
    printf("close + join -> %s\n", mp_err_name(rc));
    mp_pool_free(pool);
    printf("%s\n", ok && rc == 0 ? "all results correct" : "WRONG RESULTS");
    return ok && rc == 0 ? 0 : 1;
}
