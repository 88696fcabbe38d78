"""pypool: a multiprocessing.Pool (fork start method) for the shared memory
round trip: its locks and semaphores are unlinked /dev/shm/sem.* files
mapped by the parent and every worker, its queues pipes between them.

Usage: pypool.py TRIGGER
Starts a pool of two workers, runs one map through it, prints "ready",
polls every 1 ms until TRIGGER exists, then runs maps through the same
pool again and prints "OK" (exit 0) or "FAIL ..." (exit 1).
"""
import multiprocessing as mp
import os
import sys
import time


def square(x):
    return x * x


def main():
    trigger = sys.argv[1]
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        if pool.map(square, range(10)) != [x * x for x in range(10)]:
            print("FAIL before", flush=True)
            return 1
        # A lock of our own too, held across the checkpoint by nobody.
        lock = ctx.Lock()
        print("ready", flush=True)
        while not os.path.exists(trigger):
            time.sleep(0.001)
        for _ in range(3):
            got = pool.map(square, range(100), chunksize=7)
            if got != [x * x for x in range(100)]:
                print("FAIL after", got[:5], flush=True)
                return 1
        if not lock.acquire(timeout=5):
            print("FAIL lock", flush=True)
            return 1
        lock.release()
    print("OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
