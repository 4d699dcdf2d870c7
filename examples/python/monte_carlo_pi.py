"""monte_carlo_pi.py - the Python twin of examples/apps/monte_carlo_pi.c.

64 batches of random points over a Pool, with a progress line on stderr.
Batch 13 fails.  In C it segfaults and fails alone; here it raises an
exception: a real segfault in a worker would hang multiprocessing.Pool, and
break a ProcessPoolExecutor for every batch not yet done.
"""
import math
import random
import sys
import time
from multiprocessing import Pool

BATCHES, SAMPLES, BAD = 64, 250000, 13


def count_hits(args):
    index, seed = args
    rnd = random.Random(seed)
    hits = 0
    for _ in range(SAMPLES):
        x, y = rnd.random(), rnd.random()
        hits += x * x + y * y <= 1.0
    if index == BAD:
        raise RuntimeError("batch %d: a record whose pointer nobody set" % index)
    return index, hits


def safe_count(args):
    try:
        return count_hits(args)
    except Exception as e:  # the task's failure, as a value
        return args[0], e


def main():
    t0 = time.monotonic()
    inside = total = failed = 0
    with Pool() as pool:
        done = 0
        for index, result in pool.imap_unordered(safe_count,
                                                 [(i, i + 1) for i in range(BATCHES)]):
            done += 1
            if sys.stderr.isatty():  # redrawn in place; a line a quarter otherwise
                sys.stderr.write("\r%3d%% %d/%d" % (100 * done // BATCHES, done, BATCHES))
            elif done % (BATCHES // 4) == 0:
                sys.stderr.write("%3d%% %d/%d\n" % (100 * done // BATCHES, done, BATCHES))
            if isinstance(result, Exception):
                failed += 1
                print("batch %d failed: %s" % (index, result))
                continue
            inside += result
            total += SAMPLES
        if sys.stderr.isatty():
            sys.stderr.write("\n")
        elapsed = time.monotonic() - t0
        again = pool.map(count_hits, [(i, i + 100) for i in range(2)])
    pi = 4.0 * inside / total
    print("pi is about %.6f from %d batches (error %.6f)"
          % (pi, BATCHES - failed, abs(pi - math.pi)))
    print("afterwards: another map -> %d results" % len(again))
    print("time: %.3f s" % elapsed)
    return 0 if failed == 1 and abs(pi - math.pi) < 0.01 and len(again) == 2 else 1


if __name__ == "__main__":
    raise SystemExit(main())
