"""word_freq.py - the Python twin of examples/apps/word_freq.c.

Writes 200 files of generated text into a temporary directory (removed at
the end), counts the words of each file in a pool worker (Pool.map over the
paths, a Counter per file), merges the counters and checks them against
what the generator wrote.
"""
import collections
import os
import random
import shutil
import tempfile
import time
from multiprocessing import Pool

NFILES, WORDS, VOCAB = 200, 6000, 1000
SYL = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa"]


def vocab_word(k):
    out, d = "", k + 10
    while d > 0:
        out += SYL[d % 10]
        d //= 10
    return out


def write_files(directory):
    rnd = random.Random(88172645463325252)
    words = [vocab_word(k) for k in range(VOCAB)]
    expected = collections.Counter()
    paths = []
    for f in range(NFILES):
        path = os.path.join(directory, "text-%03d.txt" % f)
        chosen = []
        for _ in range(WORDS):
            k = rnd.randrange(VOCAB) * rnd.randrange(VOCAB) // VOCAB
            chosen.append(words[k])
        expected.update(chosen)
        with open(path, "w") as fp:
            for i in range(0, WORDS, 12):
                fp.write(" ".join(chosen[i:i + 12]) + "\n")
        paths.append(path)
    return paths, expected


def count_file(path):
    with open(path) as fp:
        return collections.Counter(fp.read().split())


def main():
    directory = tempfile.mkdtemp(prefix="mproc-wordfreq-py-")
    try:
        paths, expected = write_files(directory)
        print("%d files of %d words written to %s" % (NFILES, WORDS, directory))
        t0 = time.monotonic()
        with Pool() as pool:
            counters = pool.map(count_file, paths)
        total = collections.Counter()
        for c in counters:
            total.update(c)
        elapsed = time.monotonic() - t0
    finally:
        shutil.rmtree(directory)
    words = sum(total.values())
    print("%d distinct words, %d in all; the most frequent: %s"
          % (len(total), words,
             ", ".join("%s %d" % (w, n) for w, n in total.most_common(5))))
    ok = total == expected and words == NFILES * WORDS
    print("counts %s the generator's" % ("match" if ok else "DIFFER from"))
    print("time: %.3f s" % elapsed)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
