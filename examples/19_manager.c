/*
 * 19_manager.c - four workers write into a dict and a list that a manager
 * process holds; the parent prints both.
 *
 * The seeds' 8_adv_manager.py.  The manager is a server process; the
 * workers are forked children that use their parent's handles (each
 * connects as a client of its own on its first call).  On this machine
 * every call goes straight to the manager's shared store, under its lock:
 * no message, no pickling.
 *
 * Python:  manager = multiprocessing.Manager()
 *          shared_dict = manager.dict(); shared_list = manager.list()
 *          shared_dict[f"worker_{i}"] = ...; shared_list.append(...)
 */
#include <mproc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { WORKERS = 4 };

typedef struct job {
    mp_mdict *dict;
    mp_mlist *list;
    int id;
} job;

static int worker_with_manager(void *arg)
{
    job *j = arg;
    char key[32], text[64];
    snprintf(key, sizeof key, "worker_%d", j->id);
    snprintf(text, sizeof text, "Hello from worker %d", j->id);
    int rc = mp_mdict_set(j->dict, key, text, strlen(text));
    if (rc < 0)
        return rc;
    snprintf(text, sizeof text, "Item from worker %d", j->id);
    rc = mp_mlist_append(j->list, text, strlen(text));
    return rc < 0 ? rc : 0;
}

static int by_key(const void *a, const void *b)
{
    return strcmp(((const mp_mitem *)a)->key, ((const mp_mitem *)b)->key);
}

int main(void)
{
    mp_manager *manager;
    mp_mdict *shared_dict;
    mp_mlist *shared_list;
    int rc = mp_manager_start(NULL, &manager);
    if (rc == MP_ENOTSUP) {
        printf("this build of mproc has no manager (libsodium): nothing to show\n");
        return 0;
    }
    if (rc < 0 || (rc = mp_mdict_new(manager, NULL, &shared_dict)) < 0 ||
        (rc = mp_mlist_new(manager, NULL, &shared_list)) < 0) {
        fprintf(stderr, "manager: %s\n", mp_strerror(rc));
        return 1;
    }
    printf("manager process %d at %s\n", (int)mp_manager_pid(manager), mp_manager_address(manager));

    job jobs[WORKERS];
    mp_process *procs[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        jobs[i] = (job){shared_dict, shared_list, i};
        if (mp_process_new(worker_with_manager, &jobs[i], NULL, &procs[i]) < 0 ||
            mp_process_start(procs[i]) < 0) {
            fprintf(stderr, "cannot start worker %d\n", i);
            return 1;
        }
    }
    int failed = 0;
    for (int i = 0; i < WORKERS; i++) {
        int code = -1;
        if (mp_process_join(procs[i], 30.0) < 0 || mp_process_exitcode(procs[i], &code) < 0 ||
            code != 0)
            failed++;
        mp_process_free(procs[i]);
    }

    mp_mitems *items, *list;
    int n = mp_mdict_items(shared_dict, &items);
    int m = mp_mlist_slice(shared_list, 0, INT64_MAX, &list);
    if (n < 0 || m < 0) {
        fprintf(stderr, "reading back: %s\n", mp_strerror(n < 0 ? n : m));
        return 1;
    }
    qsort(items->item, items->n, sizeof items->item[0], by_key);
    printf("Shared dict:\n");
    for (size_t i = 0; i < items->n; i++)
        printf("  %s: %s\n", items->item[i].key, (const char *)items->item[i].value);
    printf("Shared list (in the order the workers appended):\n");
    for (size_t i = 0; i < list->n; i++)
        printf("  %s\n", (const char *)list->item[i].value);

    /* Every worker's entry, and nothing else. */
    int ok = failed == 0 && n == WORKERS && m == WORKERS;
    for (int i = 0; ok && i < WORKERS; i++) {
        char want[64];
        snprintf(want, sizeof want, "Hello from worker %d", i);
        ok = strcmp(items->item[i].value, want) == 0;
        snprintf(want, sizeof want, "Item from worker %d", i);
        bool listed = false;
        for (size_t k = 0; k < list->n; k++)
            listed = listed || strcmp(list->item[k].value, want) == 0;
        ok = ok && listed;
    }
    mp_mitems_free(items);
    mp_mitems_free(list);
    mp_mdict_free(shared_dict);
    mp_mlist_free(shared_list);
    rc = mp_manager_shutdown(manager, 10.0);
    mp_manager_free(manager);
    printf("%s\n", ok && rc == 0 ? "all four workers reached the manager" : "WRONG RESULT");
    return ok && rc == 0 ? 0 : 1;
}
