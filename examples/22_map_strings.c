/*
 * 22_map_strings.c - a map over strings of any length, each giving back
 * an output of any length, with one item failing with a message.
 *
 * A map over an array of char * works only for strings the workers saw
 * when they started (a fork worker sees the parent's memory as it was
 * then; forkserver and spawn workers see none of it).  mp_pool_map_bytes()
 * copies each string's bytes into the pool's shared memory instead, chunk
 * by chunk, so strings made at any time reach the workers whole.
 *
 * Python:  with Pool() as pool:
 *              print(pool.map(shout, lines))
 */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include <ctype.h>
#include <mproc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Upper-cases a line and says how many words it has; refuses empty
 * lines with a message, as a Python function raises ValueError. */
static int shout(const void *in, size_t len, mp_buf *out)
{
    const char *s = in;
    if (len == 0)
        return mp_task_fail(out, "an empty line has nothing to shout");
    int words = 0;
    for (size_t i = 0; i < len; i++) {
        char c = (char)toupper((unsigned char)s[i]);
        if (mp_buf_append(out, &c, 1) < 0)
            return MP_ENOMEM;
        words += !isspace((unsigned char)s[i]) && (i == 0 || isspace((unsigned char)s[i - 1]));
    }
    char tail[32];
    int n = snprintf(tail, sizeof tail, " (%d words)", words);
    return mp_buf_append(out, tail, (size_t)n);
}

int main(void)
{
    mp_pool *pool = NULL;
    int rc = mp_pool_new(NULL, &pool);
    if (rc < 0) {
        fprintf(stderr, "pool: %s\n", mp_strerror(rc));
        return 1;
    }
    /* Made after the workers started: a map over these pointers would
     * read garbage in the workers; a map over their bytes does not. */
    const char *text[] = {"the quick brown fox", "jumps over", "", "the lazy dog", "again"};
    enum { N = sizeof text / sizeof *text };
    mp_bytes items[N];
    for (size_t i = 0; i < N; i++) {
        char *copy = strdup(text[i]);
        items[i] = (mp_bytes){copy, strlen(copy)};
    }
    mp_results *res = NULL;
    rc = mp_pool_map_bytes(pool, shout, items, N, 0, &res);
    printf("map: %s (the first failed item's error)\n", rc == 0 ? "ok" : mp_err_name(rc));
    for (size_t i = 0; res && i < N; i++) {
        size_t len = 0;
        const char *o = mp_results_item(res, i, &len);
        if (mp_results_error(res, i) == 0)
            printf("  %zu: %.*s\n", i, (int)len, o ? o : "");
        else
            printf("  %zu: failed, %s: %s\n", i, mp_err_name(mp_results_error(res, i)),
                   mp_results_message(res, i));
    }
    mp_results_free(res);
    for (size_t i = 0; i < N; i++)
        free((void *)items[i].data);
    mp_pool_free(pool);
    return rc == MP_ETASK ? 0 : 1;
}
