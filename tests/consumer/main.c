/* A program outside the project that uses the installed library. */
#include <mproc.h>
#include <stdio.h>

static int square(void *arg)
{
    int x = *(int *)arg;
    return x * x;
}

int main(void)
{
    int x = 7;
    mp_process *p;
    if (mp_process_new(square, &x, "consumer", &p) != 0)
        return 1;
    int code = -1;
    int rc = mp_process_start(p);
    if (rc == 0)
        rc = mp_process_join(p, 30.0);
    if (rc == 0)
        rc = mp_process_exitcode(p, &code);
    mp_process_free(p);
    if (rc != 0)
        return 1;
    printf("mproc %s: 7 squared in a child is %d\n", mp_version_string(), code);
    return code == 49 ? 0 : 1;
}
