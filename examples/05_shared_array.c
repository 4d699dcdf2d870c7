/*
 * 05_shared_array.c - an array in shared memory, updated by a child.
 *
 * The seeds' Array: three signed ints ('i'), zero to begin with; a child
 * adds 1 to every element and the parent sees [1, 1, 1].  Reading the
 * whole array at once takes the lock once, as a Python slice does.
 *
 * Python:  arr = Array('i', 3)
 *          p = Process(target=add_one, args=(arr,)); p.start(); p.join()
 *          print(arr[:])                          # [1, 1, 1]
 */
#include <mproc.h>
#include <stdio.h>

static int add_one(void *arg)
{
    mp_array *arr = arg;
    for (size_t i = 0; i < mp_array_len(arr); i++) {
        int64_t x;
        int rc = mp_array_get_i64(arr, i, &x);
        if (rc == 0)
            rc = mp_array_set_i64(arr, i, x + 1);
        if (rc < 0)
            return rc;
    }
    printf("  %s added 1 to each of %zu elements\n", mp_process_current_name(), mp_array_len(arr));
    return 0;
}

int main(void)
{
    enum { N = 3 };
    mp_array *arr;
    int rc = mp_array_new(MP_TYPE_i, N, NULL, true, &arr);
    if (rc < 0) {
        fprintf(stderr, "no shared memory: %s\n", mp_strerror(rc));
        return 1;
    }
    mp_process *p;
    int code = -1;
    rc = mp_process_new(add_one, arr, NULL, &p);
    if (rc == 0)
        rc = mp_process_start(p);
    if (rc == 0)
        rc = mp_process_join(p, 10.0);
    if (rc == 0)
        rc = mp_process_exitcode(p, &code);
    if (rc < 0 || code != 0) {
        fprintf(stderr, "child failed: %s\n", rc < 0 ? mp_strerror(rc) : "exit code");
        return 1;
    }
    mp_process_free(p);

    int out[N];
    mp_array_read(arr, 0, N, out);
    int ok = 1;
    printf("arr[:] = [");
    for (int i = 0; i < N; i++) {
        printf("%s%d", i ? ", " : "", out[i]);
        ok &= out[i] == 1;
    }
    printf("]\n");
    mp_array_free(arr);
    printf("%s\n", ok ? "every element was incremented once" : "WRONG: expected [1, 1, 1]");
    return ok ? 0 : 1;
}
