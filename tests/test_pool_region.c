/* Tests of a pool's data region on its own (src/pool/region.h): where
 * blocks go, how freed blocks merge and return to the top, growth in
 * place, refusal when the reservation is used up, references, and how
 * much freed memory stays in memory.  Each region here is small, so that
 * its limits are reached in a few calls; memory given back to the system
 * is read from the file's allocated blocks (fstat's st_blocks). */
#define _GNU_SOURCE
#include "internal.h"
#include "mp_test.h"
#include "pool/region.h"

#include <dirent.h>
#include <sys/stat.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* A region of `reserve` bytes starting at 64 KiB, with the given limits on
 * what it gives back.  published receives its size. */
static void region_new(mp__region *r, size_t reserve, size_t release_min, size_t retain_max,
                       _Atomic uint64_t *published)
{
    mp__region_limits lim = {reserve, 64 * KiB, release_min, retain_max};
    r->fd = -1;
    CHECK_OK(mp__region_init(r, &lim, published));
}

static size_t alloc_ok(mp__region *r, size_t len)
{
    size_t off = SIZE_MAX;
    CHECK_OK(mp__region_alloc(r, len, &off));
    CHECK(off != SIZE_MAX);
    return off;
}

/* Bytes of the region's file that hold memory. */
static size_t resident(const mp__region *r)
{
    struct stat st;
    CHECK_OK(fstat(r->fd, &st) == 0 ? 0 : -errno);
    return (size_t)st.st_blocks * 512;
}

static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    CHECK(d != NULL);
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* Fails if blocks overlap or are not aligned (a bad first fit or a free
 * list that hands out a block twice). */
TEST(region_blocks_are_aligned_disjoint_and_writable)
{
    mp__region r;
    region_new(&r, 4 * MiB, 1 * MiB, 1 * MiB, NULL);
    static const size_t lens[] = {1, 63, 64, 65, 1000, 4096, 10000, 1};
    enum { N = MP__ARRAY_SIZE(lens) };
    size_t off[N];
    for (size_t i = 0; i < N; i++) {
        off[i] = alloc_ok(&r, lens[i]);
        CHECK_EQ(off[i] % MP__REGION_ALIGN, 0);
        memset(mp__region_at(&r, off[i]), (int)i + 1, lens[i]);
    }
    for (size_t i = 0; i < N; i++) {
        const unsigned char *b = mp__region_at(&r, off[i]);
        for (size_t k = 0; k < lens[i]; k++)
            CHECK_EQ(b[k], i + 1); /* no later block wrote over it */
    }
    CHECK_ERR(mp__region_alloc(&r, 0, &off[0]), MP_ENOMEM);
    mp__region_destroy(&r);
}

/* Fails if a freed block does not merge with the free block before it,
 * after it, or both (fragmentation: the big block would come from the
 * top instead). */
TEST(region_free_blocks_merge_with_their_neighbours)
{
    mp__region r;
    region_new(&r, 4 * MiB, 1 * MiB, 1 * MiB, NULL);
    size_t a = alloc_ok(&r, 1024), b = alloc_ok(&r, 1024), c = alloc_ok(&r, 1024);
    size_t d = alloc_ok(&r, 1024), e = alloc_ok(&r, 1024);
    (void)alloc_ok(&r, 64); /* keeps the others off the top */
    CHECK_EQ(b, a + 1024);
    CHECK_EQ(e, a + 4096);
    /* Both neighbours: a and c free, then b. */
    mp__region_release(&r, a);
    mp__region_release(&r, c);
    mp__region_release(&r, b);
    CHECK_EQ(alloc_ok(&r, 3 * 1024), a);
    /* The one before: d, then e. */
    mp__region_release(&r, d);
    mp__region_release(&r, e);
    CHECK_EQ(alloc_ok(&r, 2 * 1024), d);
    /* The one after: a block split off the front, then freed again. */
    mp__region_release(&r, d);
    size_t front = alloc_ok(&r, 1024);
    CHECK_EQ(front, d);
    mp__region_release(&r, front);
    CHECK_EQ(alloc_ok(&r, 2 * 1024), d);
    mp__region_destroy(&r);
}

/* Fails if a block freed at the end stays in the free list instead of
 * lowering the top: a larger block would then start after it. */
TEST(region_gives_the_last_block_back_to_the_top)
{
    mp__region r;
    region_new(&r, 4 * MiB, 1 * MiB, 1 * MiB, NULL);
    size_t a = alloc_ok(&r, 4096);
    size_t b = alloc_ok(&r, 4096);
    mp__region_release(&r, b);
    CHECK_EQ(alloc_ok(&r, 3 * 4096), b);
    /* Freeing everything brings the top to 0. */
    mp__region_release(&r, b);
    mp__region_release(&r, a);
    CHECK_EQ(alloc_ok(&r, 64), 0);
    mp__region_destroy(&r);
}

/* Fails if growth moves the base (pointers handed out would dangle), does
 * not keep what was written, or does not publish the new size where the
 * workers read it. */
TEST(region_grows_in_place_and_publishes_its_size)
{
    _Atomic uint64_t published = 0;
    mp__region r;
    region_new(&r, 4 * MiB, 1 * MiB, 1 * MiB, &published);
    CHECK_EQ(atomic_load(&published), 64 * KiB);
    unsigned char *base = r.base;
    size_t a = alloc_ok(&r, 1000);
    memset(mp__region_at(&r, a), 0x5a, 1000);
    size_t b = alloc_ok(&r, 200 * KiB);
    CHECK(r.base == base);
    CHECK_EQ(r.size, 256 * KiB); /* doubled twice */
    CHECK_EQ(atomic_load(&published), 256 * KiB);
    CHECK_EQ(atomic_load(&r.mapped), 256 * KiB);
    memset(mp__region_at(&r, b), 0xa5, 200 * KiB);
    CHECK_EQ(mp__region_at(&r, a)[999], 0x5a);
    CHECK_EQ(mp__region_at(&r, b)[200 * KiB - 1], 0xa5);
    mp__region_destroy(&r);
}

/* Fails if an allocation beyond the reservation succeeds (it would map
 * past the reserved address space) or if a refused growth leaves the
 * published size changed. */
TEST(region_refuses_when_exhausted_and_recovers)
{
    _Atomic uint64_t published = 0;
    mp__region r;
    region_new(&r, 1 * MiB, 4 * MiB, 4 * MiB, &published);
    size_t off = 0;
    CHECK_ERR(mp__region_alloc(&r, 2 * MiB, &off), MP_ENOMEM);
    CHECK_ERR(mp__region_alloc(&r, SIZE_MAX, &off), MP_ENOMEM);
    size_t big = alloc_ok(&r, 768 * KiB);
    CHECK_EQ(atomic_load(&published), 1 * MiB);
    size_t small = alloc_ok(&r, 200 * KiB);
    CHECK_ERR(mp__region_alloc(&r, 100 * KiB, &off), MP_ENOMEM);
    CHECK_EQ(atomic_load(&published), 1 * MiB);
    CHECK_EQ(r.size, 1 * MiB);
    mp__region_release(&r, big);
    CHECK_EQ(alloc_ok(&r, 100 * KiB), big);
    mp__region_release(&r, small);
    mp__region_destroy(&r);
}

/* Fails if the first release frees a block that has a second reference
 * (a map's inputs freed while the submitting thread still copies them),
 * or if the last release does not free it. */
TEST(region_references_keep_a_block_alive)
{
    mp__region r;
    region_new(&r, 4 * MiB, 1 * MiB, 1 * MiB, NULL);
    size_t a = alloc_ok(&r, 4096);
    (void)alloc_ok(&r, 64);
    size_t in = 0;
    mp__region_retain(&r, a);
    mp__region_release(&r, a);
    CHECK(mp__region_contains(&r, mp__region_at(&r, a), 4096, &in));
    CHECK_NE(alloc_ok(&r, 4096), a);
    mp__region_release(&r, a);
    CHECK(!mp__region_contains(&r, mp__region_at(&r, a), 1, &in));
    CHECK_EQ(alloc_ok(&r, 4096), a);
    /* Offsets where no block starts are ignored. */
    mp__region_retain(&r, a + 64);
    mp__region_release(&r, a + 64);
    CHECK(mp__region_contains(&r, mp__region_at(&r, a), 4096, &in));
    mp__region_destroy(&r);
}

/* Fails if a block at or above release_min stays in memory after its
 * release, or if a smaller one is given back (the next map would fault
 * its pages in again). */
TEST(region_gives_large_blocks_back_at_once)
{
    mp__region r;
    region_new(&r, 4 * MiB, 256 * KiB, 4 * MiB, NULL);
    size_t small = alloc_ok(&r, 64 * KiB);
    size_t large = alloc_ok(&r, 256 * KiB);
    (void)alloc_ok(&r, 64); /* keeps both off the top */
    memset(mp__region_at(&r, small), 1, 64 * KiB);
    memset(mp__region_at(&r, large), 1, 256 * KiB);
    size_t before = resident(&r);
    CHECK_GE(before, 320 * KiB);
    mp__region_release(&r, small);
    CHECK_EQ(resident(&r), before);
    mp__region_release(&r, large);
    CHECK_EQ(resident(&r), before - 256 * KiB);
    mp__region_destroy(&r);
}

/* Fails if freed memory is kept beyond retain_max (a pool that ran one
 * huge map would hold its memory forever), or given back before. */
TEST(region_bounds_the_memory_it_retains)
{
    mp__region r;
    region_new(&r, 4 * MiB, 1 * MiB, 96 * KiB, NULL);
    size_t blk[4];
    for (int i = 0; i < 4; i++) {
        blk[i] = alloc_ok(&r, 32 * KiB);
        memset(mp__region_at(&r, blk[i]), 1, 32 * KiB);
    }
    size_t live = alloc_ok(&r, 4 * KiB);
    memset(mp__region_at(&r, live), 1, 4 * KiB);
    size_t full = resident(&r);
    mp__region_release(&r, blk[0]);
    mp__region_release(&r, blk[2]);
    mp__region_release(&r, blk[1]);
    CHECK_EQ(resident(&r), full);   /* 96 KiB retained: at the bound */
    mp__region_release(&r, blk[3]); /* 128 KiB: past it, all go back */
    CHECK_LE(resident(&r), full - 128 * KiB);
    CHECK_EQ(mp__region_at(&r, live)[4 * KiB - 1], 1); /* live data kept */
    mp__region_destroy(&r);
}

/* Fails if a pointer outside every live block, or a range running past
 * its block's end, is taken for one (a map would then use a caller's
 * array in place that workers do not see, or overrun a block). */
TEST(region_finds_the_block_holding_a_pointer)
{
    mp__region r;
    region_new(&r, 4 * MiB, 1 * MiB, 1 * MiB, NULL);
    size_t a = alloc_ok(&r, 1024);
    size_t b = alloc_ok(&r, 1024);
    size_t off = 0;
    CHECK(mp__region_contains(&r, mp__region_at(&r, a), 1024, &off));
    CHECK_EQ(off, a);
    CHECK(mp__region_contains(&r, mp__region_at(&r, b) + 100, 924, &off));
    CHECK_EQ(off, b + 100);
    CHECK(!mp__region_contains(&r, mp__region_at(&r, b) + 100, 925, &off));
    CHECK(!mp__region_contains(&r, mp__region_at(&r, a) + 1000, 100, &off));
    CHECK(!mp__region_contains(&r, mp__region_at(&r, b) + 2048, 1, &off));
    int local = 0;
    CHECK(!mp__region_contains(&r, &local, sizeof local, &off));
    CHECK(!mp__region_contains(&r, NULL, 1, &off));
    mp__region_release(&r, a);
    CHECK(!mp__region_contains(&r, mp__region_at(&r, a), 1, &off));
    mp__region_destroy(&r);
}

/* Fails if an init that cannot reserve its address space leaks the file
 * it made, or if destroy after such a failure crashes. */
TEST(region_init_failure_leaves_nothing_behind)
{
    int before = open_fds();
    mp__region r;
    r.fd = -1;
    mp__region_limits lim = {SIZE_MAX & ~(size_t)0xfff, 64 * KiB, 1 * MiB, 1 * MiB};
    CHECK(mp__region_init(&r, &lim, NULL) < 0);
    mp__region_destroy(&r);
    CHECK_EQ(open_fds(), before);
    /* Destroy of a region that was never initialised. */
    mp__region z;
    memset(&z, 0, sizeof z);
    z.fd = -1;
    mp__region_destroy(&z);
}

MPT_MAIN()
