/*
 * 04_shared_value.c - a number in shared memory, cubed by a child.
 *
 * The seeds' Value: the number 4 is put in shared memory as a double, a
 * child process reads it, cubes it and writes it back, and the parent,
 * which never saw the child's memory, prints 64.  As in Python, 'd' is a
 * double and 'i' a signed int, and the value comes with a lock.
 *
 * Python:  num = Value('d', 4.0)
 *          p = Process(target=cube, args=(num,)); p.start(); p.join()
 *          print(num.value)                       # 64.0
 */
#include <mproc.h>
#include <stdio.h>

static int cube(void *arg)
{
    mp_value *num = arg;
    double x;
    int rc = mp_value_get_double(num, &x);
    if (rc == 0)
        rc = mp_value_set_double(num, x * x * x);
    printf("  %s: %g cubed is %g\n", mp_process_current_name(), x, x * x * x);
    return rc; /* an error code would be reported to the parent */
}

int main(void)
{
    double four = 4.0;
    mp_value *num;
    int rc = mp_value_new(mp_type_from_code('d'), &four, true, &num);
    if (rc < 0) {
        fprintf(stderr, "no shared memory: %s\n", mp_strerror(rc));
        return 1;
    }
    mp_process *p;
    int code = -1;
    rc = mp_process_new(cube, num, NULL, &p);
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

    double result;
    mp_value_get_double(num, &result);
    printf("num.value = %g (typecode '%c', %zu bytes)\n", result, mp_type_code(MP_TYPE_d),
           mp_type_size(MP_TYPE_d));
    mp_value_free(num);
    if (result != 64.0) {
        printf("WRONG: expected 64\n");
        return 1;
    }
    printf("the child's cube came back through shared memory\n");
    return 0;
}
