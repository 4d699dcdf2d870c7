/*
 * 13_hello_ranks.c - hello world from every rank.
 * demo: mprun -n 4
 *
 * The seeds' MPI hello world: the same program runs as N ranks at once,
 * every line on every rank, and each tells itself apart by its rank.
 * Started by `mprun -n 4 ./13_hello_ranks` it is 4 ranks on this machine,
 * under `mpiexec -n 4` the same binary runs on MPI, and started plainly it
 * is a world of one.  Rank 0 then gathers every rank's number to check
 * that all of them answered.
 *
 * Python:  comm = MPI.COMM_WORLD  (run with: mpiexec -n 4 python main.py)
 */
#include <mproc.h>
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    mp_comm *world;
    int rc = mp_comm_world(&world);
    if (rc < 0) {
        fprintf(stderr, "no world: %s\n", mp_strerror(rc));
        return 1;
    }
    int rank = mp_comm_rank(world), size = mp_comm_size(world);
    char host[256] = "?";
    (void)mp_comm_processor_name(host, sizeof host);
    printf("Hello from rank %d of %d on %s\n", rank, size, host);
    fflush(stdout);

    /* Rank 0 collects every rank's number: all must have answered. */
    int *ranks = malloc((size_t)size * sizeof *ranks);
    if (!ranks)
        return 1;
    rc = mp_comm_gather(world, &rank, ranks, 1, MP_TYPE_i, 0, 10.0);
    if (rc < 0) {
        fprintf(stderr, "rank %d: gather: %s\n", rank, mp_strerror(rc));
        return 1;
    }
    int ok = 1;
    if (rank == 0) {
        for (int r = 0; r < size; r++)
            ok &= ranks[r] == r;
        printf("rank 0: %s %d ranks answered (engine: %s)\n", ok ? "all" : "NOT all", size,
               mp_comm_engine(world));
    }
    free(ranks);
    return ok ? 0 : 1;
}
