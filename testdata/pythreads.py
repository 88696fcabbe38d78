# pythreads: a Python program with threads, checkpointed while they work.
#
# Protocol: python3 pythreads.py TRIGGER
# Eight threads add to shared counters under a lock and compute SHA-256
# chains they compare with values computed at start; a queue passes items
# from a producer thread to a consumer thread. Prints "ready" once every
# thread ran, waits (time.sleep) for the trigger file, lets every thread do
# 50 more rounds, then checks every total and prints "OK" (exit 0) or
# "FAIL ..." (exit 1).
import hashlib
import os
import queue
import sys
import threading
import time

N = 8
lock = threading.Lock()
rounds = [0] * N
total = 0
bad = []
stop = threading.Event()


def chain(seed):
    h = hashlib.sha256(b"seed%d" % seed).digest()
    for _ in range(200):
        h = hashlib.sha256(h).digest()
    return h


want = [chain(i) for i in range(N)]


def worker(i):
    global total
    while not stop.is_set():
        if chain(i) != want[i]:
            bad.append(i)
        with lock:
            rounds[i] += 1
            total += 1
        time.sleep(0.001)


q = queue.Queue(maxsize=16)
consumed = []


def producer():
    n = 0
    while not stop.is_set():
        try:
            q.put(n, timeout=0.01)
            n += 1
        except queue.Full:
            pass


def consumer():
    while not stop.is_set() or not q.empty():
        try:
            consumed.append(q.get(timeout=0.01))
        except queue.Empty:
            pass


threads = [threading.Thread(target=worker, args=(i,)) for i in range(N)]
threads += [threading.Thread(target=producer), threading.Thread(target=consumer)]
for t in threads:
    t.start()
while min(rounds) == 0:
    time.sleep(0.001)
print("ready", flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.001)
target = [r + 50 for r in rounds]
while any(r < g for r, g in zip(rounds, target)):
    time.sleep(0.001)
stop.set()
for t in threads:
    t.join()
if bad or total != sum(rounds) or consumed != list(range(len(consumed))):
    print("FAIL bad=%s total=%d sum=%d" % (bad[:5], total, sum(rounds)), flush=True)
    sys.exit(1)
print("OK", flush=True)
