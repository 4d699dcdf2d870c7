/*
 * word_freq.c - word frequencies over 200 text files, on a pool.
 *
 * The program writes 200 files of generated text into a temporary
 * directory (and removes them at the end), counts the words of each file
 * in a worker and merges the counts in the parent.  The count is a map
 * over the files' numbers: the directory travels once as the map's ctx
 * bytes, and each item's output is a fixed-size block of "count, length,
 * word" records that the parent merges.  (A map's inputs are copied or
 * read in place; pointers in them - to file names allocated after the
 * pool started, say - would name memory the workers do not have.)  The
 * counts are checked against what the generator wrote.
 *
 * Python twin: examples/python/word_freq.py (Pool.map over the paths,
 * collections.Counter).
 */
#define _POSIX_C_SOURCE 200809L
#include <mproc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NFILES      200
#define WORDS       6000 /* per file */
#define VOCAB       1000
#define MAX_WORD    16
#define TABLE_SLOTS 4096 /* a power of two, well above VOCAB */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- a small word -> count table (open addressing) -------------------------------- */

typedef struct entry {
    char word[MAX_WORD];
    long count;
} entry;

typedef struct table {
    entry slot[TABLE_SLOTS];
    int used;
} table;

static unsigned long hash(const char *s, size_t len)
{
    unsigned long h = 1469598103934665603UL; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211UL;
    return h;
}

/* Adds n to word's count.  Returns 0, or -1 when the table is full. */
static int table_add(table *t, const char *word, size_t len, long n)
{
    if (len == 0 || len >= MAX_WORD)
        return 0; /* not a word of this text */
    for (unsigned long i = hash(word, len);; i++) {
        entry *e = &t->slot[i & (TABLE_SLOTS - 1)];
        if (e->count == 0) {
            if (t->used >= TABLE_SLOTS / 2)
                return -1;
            memcpy(e->word, word, len);
            e->word[len] = '\0';
            e->count = n;
            t->used++;
            return 0;
        }
        if (strncmp(e->word, word, len) == 0 && e->word[len] == '\0') {
            e->count += n;
            return 0;
        }
    }
}

static long table_get(const table *t, const char *word)
{
    size_t len = strlen(word);
    for (unsigned long i = hash(word, len);; i++) {
        const entry *e = &t->slot[i & (TABLE_SLOTS - 1)];
        if (e->count == 0)
            return 0;
        if (strcmp(e->word, word) == 0)
            return e->count;
    }
}

/* ---- the text ------------------------------------------------------------------------- */

/* Word k of the vocabulary: syllables picked by the digits of k. */
static void vocab_word(int k, char *out)
{
    static const char *syl[] = {"ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa"};
    out[0] = '\0';
    for (int d = k + 10; d > 0; d /= 10)
        strcat(out, syl[d % 10]);
}

static unsigned long long rng_state = 88172645463325252ULL;

static unsigned long long rng(void)
{
    rng_state ^= rng_state << 13; /* xorshift64 */
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Writes the files, counting in expected what was written. */
static int write_files(const char *dir, long expected[VOCAB])
{
    char path[256], word[MAX_WORD];
    for (int f = 0; f < NFILES; f++) {
        snprintf(path, sizeof path, "%s/text-%03d.txt", dir, f);
        FILE *fp = fopen(path, "w");
        if (!fp)
            return -1;
        for (int w = 0; w < WORDS; w++) {
            /* Skewed: low words are frequent, as in real text. */
            unsigned long long r = rng() % VOCAB;
            int k = (int)(r * (rng() % VOCAB) / VOCAB);
            vocab_word(k, word);
            expected[k]++;
            fprintf(fp, "%s%c", word, w % 12 == 11 ? '\n' : ' ');
        }
        if (fclose(fp) != 0)
            return -1;
    }
    return 0;
}

static void remove_files(const char *dir)
{
    char path[256];
    for (int f = 0; f < NFILES; f++) {
        snprintf(path, sizeof path, "%s/text-%03d.txt", dir, f);
        unlink(path);
    }
    rmdir(dir);
}

/* ---- the map: one file's counts --------------------------------------------------- */

/* One file's counts: len bytes of records (long count, unsigned char
 * length, the word), in a block of fixed size as a map output must be. */
typedef struct file_counts {
    size_t len;
    unsigned char data[32768];
} file_counts;

/* Runs in a worker: counts the words of file *in of the directory ctx. */
static int count_file(const void *in, void *out, const void *ctx)
{
    char path[256];
    snprintf(path, sizeof path, "%s/text-%03d.txt", (const char *)ctx, *(const int *)in);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return 1;
    static char text[1 << 20]; /* a worker runs one item at a time */
    size_t len = fread(text, 1, sizeof text - 1, fp);
    fclose(fp);
    text[len] = '\0';
    table *t = calloc(1, sizeof *t);
    int rc = t ? 0 : 2;
    for (char *p = text; rc == 0 && *p;) {
        while (*p == ' ' || *p == '\n')
            p++;
        char *w = p;
        while (*p && *p != ' ' && *p != '\n')
            p++;
        if (p > w)
            rc = table_add(t, w, (size_t)(p - w), 1);
    }
    file_counts *fc = out;
    fc->len = 0;
    for (int i = 0; rc == 0 && i < TABLE_SLOTS; i++) {
        const entry *e = &t->slot[i];
        size_t l = strlen(e->word);
        if (!e->count)
            continue;
        if (fc->len + sizeof e->count + 1 + l > sizeof fc->data) {
            rc = 3; /* more words than the block holds */
            break;
        }
        memcpy(fc->data + fc->len, &e->count, sizeof e->count);
        fc->data[fc->len + sizeof e->count] = (unsigned char)l;
        memcpy(fc->data + fc->len + sizeof e->count + 1, e->word, l);
        fc->len += sizeof e->count + 1 + l;
    }
    free(t);
    return rc;
}

/* Merges one file's records into t. */
static int merge(table *t, const unsigned char *p, size_t len)
{
    const unsigned char *end = p + len;
    while (p < end) {
        long count;
        if ((size_t)(end - p) < sizeof count + 1)
            return -1;
        memcpy(&count, p, sizeof count);
        unsigned char l = p[sizeof count];
        p += sizeof count + 1;
        if ((size_t)(end - p) < l || table_add(t, (const char *)p, l, count) < 0)
            return -1;
        p += l;
    }
    return 0;
}

static int count_all(mp_pool *pool, const char *dir, table *total)
{
    static int files[NFILES];
    static file_counts counts[NFILES];
    static int errors[NFILES];
    for (int f = 0; f < NFILES; f++)
        files[f] = f;
    mp_map_spec spec = MP_MAP_SPEC_INIT;
    spec.fn = count_file;
    spec.in = files;
    spec.n = NFILES;
    spec.in_size = sizeof files[0];
    spec.out = counts;
    spec.out_size = sizeof counts[0];
    spec.ctx = dir;
    spec.ctx_size = strlen(dir) + 1;
    spec.errors = errors;
    int rc = mp_pool_map_ex(pool, &spec);
    for (int f = 0; f < NFILES; f++) {
        if (errors[f] || counts[f].len > sizeof counts[f].data ||
            merge(total, counts[f].data, counts[f].len) < 0) {
            fprintf(stderr, "file %d: %s\n", f, mp_err_name(errors[f]));
            rc = rc ? rc : MP_EPROTO;
        }
    }
    return rc;
}

static int check(const table *total, const long expected[VOCAB], long *words)
{
    char word[MAX_WORD];
    int bad = 0;
    *words = 0;
    for (int k = 0; k < VOCAB; k++) {
        vocab_word(k, word);
        long got = table_get(total, word);
        *words += got;
        bad += got != expected[k];
    }
    return bad;
}

int main(void)
{
    char dir[] = "/tmp/mproc-wordfreq-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    static long expected[VOCAB];
    static table total;
    int ok = write_files(dir, expected) == 0;
    printf("%d files of %d words written to %s\n", NFILES, WORDS, dir);

    double t0 = now();
    mp_pool *pool = NULL;
    int rc = ok ? mp_pool_new(NULL, &pool) : MP_EIO;
    if (rc == 0)
        rc = count_all(pool, dir, &total);
    mp_pool_free(pool);
    double elapsed = now() - t0;
    remove_files(dir);

    long words = 0;
    int bad = rc == 0 ? check(&total, expected, &words) : VOCAB;
    /* Low words of the vocabulary are the most frequent (write_files). */
    printf("%d distinct words, %ld in all; the most frequent:", total.used, words);
    char word[MAX_WORD];
    for (int k = 0; k < 5; k++) {
        vocab_word(k, word);
        printf(" %s %ld%s", word, table_get(&total, word), k < 4 ? "," : "\n");
    }
    printf("counts %s the generator's (%d words differ)\n", bad ? "DIFFER from" : "match", bad);
    printf("time: %.3f s\n", elapsed);
    return rc == 0 && ok && bad == 0 && words == (long)NFILES * WORDS ? 0 : 1;
}
