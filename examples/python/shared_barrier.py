"""shared_barrier.py - the Python twin of examples/apps/shared_barrier.c.

Four processes smooth one shared Array('d') step after step, each its
quarter, with a Barrier between steps, and count their steps in a shared
Value('q').  The result is checked against the same computation alone.
"""
import time
from multiprocessing import Array, Barrier, Process, Value

PROCS, POINTS, STEPS = 4, 20000, 200


def smooth(cur, nxt, lo, hi):
    last = POINTS - 1
    for i in range(lo, hi):
        nxt[i] = cur[i] if i == 0 or i == last else (cur[i - 1] + cur[i] + cur[i + 1]) / 3.0


def worker(bufs, steps, barrier, lo, hi):
    for s in range(STEPS):
        smooth(bufs[s % 2], bufs[(s + 1) % 2], lo, hi)
        with steps.get_lock():
            steps.value += 1
        barrier.wait(30)


def initial():
    return [float((i * 7919) % 1000) for i in range(POINTS)]


def main():
    bufs = [Array("d", initial(), lock=False), Array("d", POINTS, lock=False)]
    steps = Value("q", 0)
    barrier = Barrier(PROCS)
    t0 = time.monotonic()
    procs = [Process(target=worker,
                     args=(bufs, steps, barrier, i * POINTS // PROCS, (i + 1) * POINTS // PROCS))
             for i in range(PROCS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    elapsed = time.monotonic() - t0
    a, b = initial(), [0.0] * POINTS
    for _ in range(STEPS):
        smooth(a, b, 0, POINTS)
        a, b = b, a
    got = bufs[STEPS % 2][:]
    same = got == a
    print("%d processes, %d steps over %d shared points, a barrier between steps"
          % (PROCS, STEPS, POINTS))
    print("point %d: %.6f; the result %s the single-process one"
          % (POINTS // 2, got[POINTS // 2], "is bit for bit" if same else "DIFFERS from"))
    print("shared step counter: %d (want %d)" % (steps.value, PROCS * STEPS))
    print("time: %.3f s" % elapsed)
    ok = same and steps.value == PROCS * STEPS and all(p.exitcode == 0 for p in procs)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
