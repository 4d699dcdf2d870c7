"""queue_pipeline.py - the Python twin of examples/apps/queue_pipeline.c.

A reader makes numbers, a squarer squares them, a writer adds them up;
Queues join the three processes.  On Ctrl-C (KeyboardInterrupt in the main
process) a shutdown Event is set, the reader stops and sends END, and each
stage drains, passes END on and ends.  The stages ignore SIGINT.  For the
demo the program sends itself SIGINT once 100000 numbers went through.
"""
import os
import signal
import time
from multiprocessing import Event, Process, Queue, Value

ENOUGH = 100000
END = None


def reader(numbers, shutdown, made):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    n = 0
    while not shutdown.is_set():
        n += 1
        numbers.put(n)
    made.value = n
    numbers.put(END)


def squarer(numbers, squares):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while (x := numbers.get()) is not END:
        squares.put(x * x)
    squares.put(END)


def writer(squares, through, count, total):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    n = s = 0
    while (y := squares.get()) is not END:
        s += y
        n += 1
        if n % 1024 == 0:
            through.value = n
    count.value, total.value = n, s


def main():
    numbers, squares = Queue(1 << 12), Queue(1 << 12)
    shutdown = Event()
    made, through, count, total = (Value("q", 0, lock=False) for _ in range(4))
    t0 = time.monotonic()
    procs = [Process(target=reader, args=(numbers, shutdown, made), name="reader"),
             Process(target=squarer, args=(numbers, squares), name="squarer"),
             Process(target=writer, args=(squares, through, count, total), name="writer")]
    for p in procs:
        p.start()
    print("3 stages running: reader -> squarer -> writer", flush=True)
    sent = False
    try:
        while True:
            if not sent and through.value >= ENOUGH:
                print("%d numbers through: sending SIGINT to myself" % through.value, flush=True)
                sent = True
                os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.002)
    except KeyboardInterrupt:
        print("SIGINT: shutting down")
    shutdown.set()
    for p in procs:
        p.join(30)
        print("  %s ended with %s" % (p.name, p.exitcode))
    elapsed = time.monotonic() - t0
    n = made.value
    want = n * (n + 1) * (2 * n + 1) // 6
    ok = count.value == n and total.value == want and n >= ENOUGH
    print("reader made %d, writer took %d with sum %d (%s)"
          % (n, count.value, total.value, "nothing lost" if ok else "LOST SOME"))
    print("%.0f numbers/s through 3 processes" % (count.value / elapsed))
    print("time: %.3f s" % elapsed)
    return 0 if ok and all(p.exitcode == 0 for p in procs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
