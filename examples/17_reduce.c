/*
 * 17_reduce.c - reduce: a parallel sum and a parallel maximum.
 * demo: mprun -n 4
 *
 * Each rank works on its share of 1 .. 10 000 000: it sums its numbers and
 * finds its largest value of f(i) = (i * 7919) mod 10007.  reduce combines
 * the ranks' partial results on rank 0 - the sum with MP_OP_SUM, the
 * maximum with MP_OP_MAXLOC, which also says which number gave it - and
 * allreduce gives every rank the total.  Rank 0 checks against n(n+1)/2.
 *
 * Python:  total = comm.reduce(partial, op=MPI.SUM, root=0)
 *          best = comm.reduce((value, i), op=MPI.MAXLOC, root=0)
 */
#include <mproc.h>
#include <stdio.h>

#define N 10000000L

int main(void)
{
    mp_comm *world;
    if (mp_comm_world(&world) < 0)
        return 1;
    int rank = mp_comm_rank(world), size = mp_comm_size(world);
    long lo = N * rank / size + 1, hi = N * (rank + 1) / size;

    long sum = 0;
    mp_2int best = {-1, 0}; /* value, index */
    for (long i = lo; i <= hi; i++) {
        sum += i;
        int f = (int)(i * 7919 % 10007);
        if (f > best.value)
            best = (mp_2int){f, (int)i};
    }
    printf("rank %d: numbers %ld..%ld sum to %ld, largest f = %d at %d\n", rank, lo, hi, sum,
           best.value, best.index);
    fflush(stdout);

    long total = 0, everywhere = 0;
    mp_2int top;
    int rc = mp_comm_reduce(world, &sum, &total, 1, MP_TYPE_l, MP_OP_SUM, 0, 10.0);
    if (rc == 0)
        rc = mp_comm_reduce(world, &best, &top, 1, MP_TYPE_2INT, MP_OP_MAXLOC, 0, 10.0);
    if (rc == 0)
        rc = mp_comm_allreduce(world, &sum, &everywhere, 1, MP_TYPE_l, MP_OP_SUM, 10.0);
    if (rc < 0) {
        fprintf(stderr, "rank %d: %s\n", rank, mp_strerror(rc));
        return 1;
    }
    if (everywhere != N * (N + 1) / 2)
        return 1;
    if (rank == 0) {
        printf("rank 0: sum 1..%ld = %ld (n(n+1)/2 = %ld); max f = %d, first at %d\n", N, total,
               N * (N + 1) / 2, top.value, top.index);
        if (total != N * (N + 1) / 2 || top.value != 10006)
            return 1;
    }
    return 0;
}
