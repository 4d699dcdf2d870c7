/*
 * 15_scatter.c - scatter: 16 numbers in equal parts over the ranks.
 * demo: mprun -n 4
 *
 * The seeds' scattering: "Scatter takes an array and distributes
 * contiguous sections of it across the ranks" - 16 numbers over 4 ranks,
 * 4 each.  Each rank squares its part; gather brings the parts back to
 * rank 0 in rank order, which checks them.  Scatter needs the count to
 * divide evenly over the ranks (16_scatterv does without).
 *
 * Python:  recvbuf = np.empty(16 // size); comm.Scatter(sendbuf, recvbuf, root=0)
 */
#include <mproc.h>
#include <stdio.h>

#define N 16

int main(void)
{
    mp_comm *world;
    if (mp_comm_world(&world) < 0)
        return 1;
    int rank = mp_comm_rank(world), size = mp_comm_size(world);
    if (N % size != 0) {
        if (rank == 0)
            fprintf(stderr, "%d numbers do not divide over %d ranks: see 16_scatterv\n", N, size);
        return 2;
    }
    int part = N / size;
    double all[N], mine[N];
    if (rank == 0)
        for (int i = 0; i < N; i++)
            all[i] = i;

    int rc = mp_comm_scatter(world, all, mine, (size_t)part, MP_TYPE_d, 0, 10.0);
    if (rc < 0) {
        fprintf(stderr, "rank %d: scatter: %s\n", rank, mp_strerror(rc));
        return 1;
    }
    printf("rank %d got", rank);
    for (int i = 0; i < part; i++) {
        printf(" %g", mine[i]);
        mine[i] *= mine[i];
    }
    printf("\n");
    fflush(stdout);

    rc = mp_comm_gather(world, mine, all, (size_t)part, MP_TYPE_d, 0, 10.0);
    if (rc < 0) {
        fprintf(stderr, "rank %d: gather: %s\n", rank, mp_strerror(rc));
        return 1;
    }
    if (rank == 0) {
        int ok = 1;
        printf("rank 0 gathered the squares:");
        for (int i = 0; i < N; i++) {
            printf(" %g", all[i]);
            ok &= all[i] == (double)i * i;
        }
        printf("\n");
        if (!ok) {
            fprintf(stderr, "the squares are wrong\n");
            return 1;
        }
    }
    return 0;
}
