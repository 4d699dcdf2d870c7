/*
 * 18_rank_pool.c - a pool whose workers are ranks: rank 0 maps, the others
 * serve.
 * demo: mprun -n 4
 *
 * Every rank calls mp_pool_new() with opts.comm set to the world.  On rank
 * 0 it returns a pool whose workers are ranks 1..N-1; on every other rank
 * it serves that pool until rank 0 closes it, then returns with no pool.
 * Rank 0 counts the primes below each of 1000 numbers with an ordinary
 * mp_pool_map() and checks the counts against its own.  Under
 * `mpiexec -n 4` (or across machines, with a hostfile) the same binary
 * does the same.
 *
 * Python:  with MPICommExecutor(MPI.COMM_WORLD, root=0) as ex:
 *              if ex is not None:
 *                  counts = list(ex.map(primes_below, range(1000)))
 */
#include <mproc.h>
#include <stdio.h>

#define N 1000

static bool is_prime(long v)
{
    if (v < 2)
        return false;
    for (long d = 2; d * d <= v; d++)
        if (v % d == 0)
            return false;
    return true;
}

/* The map function: how many primes lie below *in (run on a worker rank,
 * found there by its place in this program). */
static int primes_below(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    long n = *(const long *)in, count = 0;
    for (long v = 2; v < n; v++)
        count += is_prime(v);
    *(long *)out = count;
    return 0;
}

int main(void)
{
    mp_comm *world;
    if (mp_comm_world(&world) < 0)
        return 1;
    mp_pool_opts opts = MP_POOL_OPTS_INIT;
    opts.comm = world;
    mp_pool *pool;
    int rc = mp_pool_new(&opts, &pool);
    if (rc < 0) {
        fprintf(stderr, "rank %d: mp_pool_new: %s (%s)\n", mp_comm_rank(world), mp_strerror(rc),
                mp_last_error_detail());
        return 1;
    }
    if (!pool)
        return 0; /* a worker rank: it served until rank 0 was done */

    static long in[N], out[N];
    for (long i = 0; i < N; i++)
        in[i] = i * 10;
    rc = mp_pool_map(pool, primes_below, in, N, sizeof in[0], out, sizeof out[0], 0);
    if (rc < 0) {
        fprintf(stderr, "map: %s\n", mp_strerror(rc));
        return 1;
    }
    long bad = 0, running = 0, upto = 0;
    for (long i = 0; i < N; i++) {
        while (upto < in[i])
            running += is_prime(upto++);
        bad += out[i] != running;
    }
    printf("rank 0: %d numbers mapped by %d worker ranks (engine: %s)\n", N, mp_pool_size(pool),
           mp_comm_engine(world));
    printf("primes below 100: %ld, below 1000: %ld, below 9990: %ld\n", out[10], out[100],
           out[N - 1]);
    printf("%s\n", bad ? "MISMATCH against the sequential count" : "all counts checked");
    mp_pool_close(pool);
    mp_pool_join(pool, 30);
    mp_pool_free(pool);
    return bad != 0;
}
