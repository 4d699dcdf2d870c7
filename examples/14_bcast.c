/*
 * 14_bcast.c - broadcast: rank 0's data, copied to every rank.
 * demo: mprun -n 4
 *
 * The seeds' broadcasting: "takes a variable and sends an exact copy of it
 * to all processes on a communicator".  mpi4py broadcasts a dict; in C the
 * data is bytes - here a struct of settings that only rank 0 knows at
 * first.  On the local engine the root writes it once into shared memory
 * and every other rank copies it out at the same time.
 *
 * Python:  data = {'key1': [7, 2.72, 2+3j], 'key2': ('abc', 'xyz')} if rank == 0 else None
 *          data = comm.bcast(data, root=0)
 */
#include <mproc.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

typedef struct settings {
    int key1_int;
    double key1_real;
    double key1_complex[2];
    char key2[2][4];
} settings;

int main(void)
{
    mp_comm *world;
    if (mp_comm_world(&world) < 0)
        return 1;
    int rank = mp_comm_rank(world);
    const settings want = {7, 2.72, {2, 3}, {"abc", "xyz"}};

    settings data;
    memset(&data, 0, sizeof data);
    if (rank == 0)
        data = want;
    int rc = mp_comm_bcast(world, &data, sizeof data, 0, 10.0);
    if (rc < 0) {
        fprintf(stderr, "rank %d: bcast: %s\n", rank, mp_strerror(rc));
        return 1;
    }
    printf("rank %d has key1 = [%d, %.2f, %g+%gj], key2 = ('%s', '%s')\n", rank, data.key1_int,
           data.key1_real, data.key1_complex[0], data.key1_complex[1], data.key2[0], data.key2[1]);
    bool same = data.key1_int == want.key1_int && data.key1_real == want.key1_real &&
                data.key1_complex[0] == want.key1_complex[0] &&
                data.key1_complex[1] == want.key1_complex[1] &&
                strcmp(data.key2[0], want.key2[0]) == 0 && strcmp(data.key2[1], want.key2[1]) == 0;
    if (!same) {
        fprintf(stderr, "rank %d: the copy differs from rank 0's\n", rank);
        return 1;
    }
    return 0;
}
