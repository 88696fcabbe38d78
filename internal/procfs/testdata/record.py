#!/usr/bin/env python3
"""Record /proc samples used by the procfs tests.

Run as: python3 record.py  (from this directory). It creates a process state
with a mapped file whose path contains spaces, a mapped-then-deleted file, an
anonymous mapping, comm "a b) c", a regular file, an eventfd and an epoll fd
watching the eventfd and a pipe, then copies the relevant /proc/self files here.
The tests hard-code values (pids, addresses, counts) of the committed samples:
update them after re-recording.
"""
import ctypes
import mmap
import os
import select
import shutil
import tempfile

libc = ctypes.CDLL(None, use_errno=True)
PR_SET_NAME = 15
libc.prctl(PR_SET_NAME, b"a b) c", 0, 0, 0)

tmp = tempfile.mkdtemp(prefix="rtcr ")
spaced = os.path.join(tmp, "my file.bin")
with open(spaced, "wb") as f:
    f.write(b"x" * 8192)
fs = open(spaced, "r+b")
m1 = mmap.mmap(fs.fileno(), 8192, mmap.MAP_SHARED)

deleted = os.path.join(tmp, "gone")
with open(deleted, "wb") as f:
    f.write(b"y" * 4096)
fd_ = open(deleted, "r+b")
m2 = mmap.mmap(fd_.fileno(), 4096, mmap.MAP_PRIVATE)
os.unlink(deleted)

anon = mmap.mmap(-1, 3 * 4096)
anon[0] = 1

reg = open("/etc/hostname" if os.path.exists("/etc/hostname") else "/etc/passwd", "rb")
reg.read(3)
efd = os.eventfd(5, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
ep = select.epoll()
ep.register(efd, select.EPOLLIN)
pr, pw = os.pipe()
ep.register(pr, select.EPOLLIN | select.EPOLLET)

here = os.path.dirname(os.path.abspath(__file__))


def copy(src, dst):
    with open(src, "rb") as s, open(os.path.join(here, dst), "wb") as d:
        d.write(s.read())


copy("/proc/self/maps", "maps.txt")
copy("/proc/self/smaps", "smaps.txt")
copy("/proc/self/stat", "stat.txt")
copy("/proc/self/status", "status.txt")
copy("/proc/self/auxv", "auxv.bin")
copy("/proc/self/fdinfo/%d" % reg.fileno(), "fdinfo_reg.txt")
copy("/proc/self/fdinfo/%d" % efd, "fdinfo_eventfd.txt")
copy("/proc/self/fdinfo/%d" % ep.fileno(), "fdinfo_epoll.txt")

m1.close()
m2.close()
fs.close()
fd_.close()
shutil.rmtree(tmp)
