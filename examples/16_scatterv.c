/*
 * 16_scatterv.c - scatterv: 15 numbers over 4 ranks, in unequal parts.
 * demo: mprun -n 4
 *
 * The seeds' Scatterv: the size of an array is rarely a multiple of the
 * number of ranks, so each rank gets its own count, at its own place
 * (displacement) in the array.  15 numbers over 4 ranks: 4, 4, 4 and 3.
 * Rank 0 computes the counts and displacements and broadcasts them, every
 * rank receives its part, and gatherv puts the parts back together on
 * rank 0, which checks the result.
 *
 * Python:  ave, res = divmod(sendbuf.size, nprocs)
 *          count = [ave + 1 if p < res else ave for p in range(nprocs)]
 *          comm.Scatterv([sendbuf, count, displ, MPI.DOUBLE], recvbuf, root=0)
 */
#include <mproc.h>
#include <stdio.h>
#include <stdlib.h>

#define N 15

int main(void)
{
    mp_comm *world;
    if (mp_comm_world(&world) < 0)
        return 1;
    int rank = mp_comm_rank(world), size = mp_comm_size(world);
    size_t *count = calloc((size_t)size, sizeof *count);
    size_t *displ = calloc((size_t)size, sizeof *displ);
    double send[N], back[N], recv[N];
    if (!count || !displ)
        return 1;
    if (rank == 0) {
        size_t ave = N / (size_t)size, res = N % (size_t)size;
        for (int p = 0; p < size; p++) {
            count[p] = ave + ((size_t)p < res ? 1 : 0);
            displ[p] = p ? displ[p - 1] + count[p - 1] : 0;
        }
        for (int i = 0; i < N; i++)
            send[i] = i;
    }
    size_t bytes = (size_t)size * sizeof *count;
    int rc = mp_comm_bcast(world, count, bytes, 0, 10.0);
    if (rc == 0)
        rc = mp_comm_bcast(world, displ, bytes, 0, 10.0);
    if (rc == 0)
        rc = mp_comm_scatterv(world, send, count, displ, recv, N, MP_TYPE_d, 0, 10.0);
    if (rc < 0) {
        fprintf(stderr, "rank %d: %s\n", rank, mp_strerror(rc));
        return 1;
    }
    printf("After Scatterv, rank %d has data:", rank);
    int ok = 1;
    for (size_t i = 0; i < count[rank]; i++) {
        printf(" %g", recv[i]);
        ok &= recv[i] == (double)(displ[rank] + i);
    }
    printf("\n");
    fflush(stdout);

    rc = mp_comm_gatherv(world, recv, count[rank], back, count, displ, MP_TYPE_d, 0, 10.0);
    if (rc < 0) {
        fprintf(stderr, "rank %d: gatherv: %s\n", rank, mp_strerror(rc));
        return 1;
    }
    if (rank == 0) {
        for (int i = 0; i < N; i++)
            ok &= back[i] == send[i];
        printf("rank 0 gathered all %d numbers back: %s\n", N, ok ? "the same" : "DIFFERENT");
    }
    free(count);
    free(displ);
    return ok ? 0 : 1;
}
