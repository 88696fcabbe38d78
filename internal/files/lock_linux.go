package files

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// ErrLockHeld reports a file lock of the image that a process outside the
// restored tree holds now (or a conflicting one).
var ErrLockHeld = errors.New("file lock held by another process")

// File locks (fdinfo "lock:" lines). The kernel lists on an fd the flock
// and OFD locks of its open file description and the POSIX locks its
// process holds through it (fs/locks.c, __show_fd_locks):
//
//	lock:	1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF
//	lock:	1: POSIX  ADVISORY  READ 1234 08:01:5678 10 19
//	lock:	1: OFDLCK ADVISORY  WRITE -1 08:01:5678 0 EOF
//	lock:	1: LEASE  ACTIVE    READ 1234 08:01:5678 0 EOF
//
// Kinds of files reopened by path save them (kind.locks); a lease being
// broken (BREAKING: a process waits in open or truncate for the holder to
// give it up, and the kernel counts down lease-break-time), a delegation,
// an ACCESS lock or a lock on another kind of fd is refused. Restore takes
// them again once every fd of the tree is in place (RestoreLocks): a
// POSIX lock in the restored process (closing any fd on the file would
// drop it, so not earlier), flock and OFD locks and leases on the restored
// open file description, shared as before. A lease is taken with
// F_SETLEASE through that open file description, which holds it again;
// it needs the file open nowhere else for writing (a write lease: open
// nowhere else at all), as it did at the dump, and it makes the process
// the file's SIGIO owner, which the fd owners restored after it put back.

// lockLine is one parsed lock line of fdinfo or /proc/locks.
type lockLine struct {
	lock     image.FileLock
	dev, ino uint64 // the locked file (dev as major:minor from the line)
	pid      int
}

// parseLockLine parses one lock line (without "lock:"). ok is false for
// a lock rtcr does not restore (lease, delegation, ACCESS); err reports a
// line it cannot read.
func parseLockLine(v string) (l lockLine, ok bool, err error) {
	f := strings.Fields(v)
	bad := fmt.Errorf("lock line %q: %w", v, errBadFdinfo)
	if len(f) < 2 {
		return l, false, bad
	}
	switch f[1] {
	case "FLOCK":
		l.lock.Kind = image.LockFlock
	case "POSIX":
		l.lock.Kind = image.LockPosix
	case "OFDLCK":
		l.lock.Kind = image.LockOFD
	case "LEASE":
		l.lock.Kind = image.LockLease
	default:
		return l, false, nil
	}
	if len(f) != 8 {
		return l, false, bad
	}
	if l.lock.Kind == image.LockLease {
		if f[2] != "ACTIVE" {
			return l, false, nil // BREAKING, BREAKER
		}
	} else if f[2] != "ADVISORY" {
		return l, false, bad
	}
	switch f[3] {
	case "WRITE":
		l.lock.Write = true
	case "READ":
	default:
		return l, false, bad
	}
	if l.pid, err = strconv.Atoi(f[4]); err != nil {
		return l, false, bad
	}
	devS, inoS, found := strings.Cut(f[5], ":")
	minS, inoS2, found2 := strings.Cut(inoS, ":")
	if !found || !found2 {
		return l, false, bad
	}
	maj, err1 := strconv.ParseUint(devS, 16, 32)
	mnr, err2 := strconv.ParseUint(minS, 16, 32)
	ino, err3 := strconv.ParseUint(inoS2, 10, 64)
	start, err4 := strconv.ParseInt(f[6], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || start < 0 {
		return l, false, bad
	}
	l.dev, l.ino = unix.Mkdev(uint32(maj), uint32(mnr)), ino
	if l.lock.Kind != image.LockFlock && l.lock.Kind != image.LockLease {
		l.lock.Start = start
		if f[7] != "EOF" {
			end, err := strconv.ParseInt(f[7], 10, 64)
			if err != nil || end < start || end == math.MaxInt64 {
				return l, false, bad
			}
			l.lock.Len = end - start + 1
		}
	}
	return l, true, nil
}

// dumpLocks returns the file locks held through fd s (its fdinfo "lock:"
// lines), refusing those rtcr cannot take again.
func dumpLocks(s *fdState) ([]image.FileLock, error) {
	var out []image.FileLock
	for _, v := range s.info.Values("lock") {
		l, ok, err := parseLockLine(v)
		if err != nil {
			return nil, err
		}
		if !ok && l.lock.Kind == image.LockLease {
			return nil, fmt.Errorf("lease being broken (fdinfo lock: %s): a process waits for it, and a restored lease would not be: %w", v, ErrUnsupported)
		}
		if !ok {
			return nil, fmt.Errorf("file lock (fdinfo lock: %s): only flock, POSIX and OFD locks and leases are saved: %w", v, ErrUnsupported)
		}
		// The kernel lists only locks on this fd's file; their device is
		// the superblock's, which stat need not report (btrfs
		// subvolumes, overlayfs), so it is not compared.
		out = append(out, l.lock)
	}
	return out, nil
}

// lockEnd is the last byte a lock covers.
func lockEnd(l image.FileLock) int64 {
	if l.Len == 0 {
		return math.MaxInt64
	}
	return l.Start + l.Len - 1
}

// conflicts reports whether two locks on one file exclude each other:
// flock locks only conflict with flock locks, leases with leases, POSIX
// and OFD locks with each other over overlapping ranges; a read lock or
// lease does not exclude a read lock or lease. (A lease also conflicts
// with opens of the file, which only F_SETLEASE itself finds.)
func conflicts(a, b image.FileLock) bool {
	if !a.Write && !b.Write {
		return false
	}
	if (a.Kind == image.LockLease) != (b.Kind == image.LockLease) {
		return false
	}
	if a.Kind == image.LockLease {
		return true
	}
	if (a.Kind == image.LockFlock) != (b.Kind == image.LockFlock) {
		return false
	}
	if a.Kind == image.LockFlock {
		return true
	}
	return a.Start <= lockEnd(b) && b.Start <= lockEnd(a)
}

// checkLocks refuses, before any process is created, an fd whose locks
// a lock in /proc/locks would exclude: a process outside the tree holds
// the file locked now (the tree's own processes are not running). Where
// stat reports another device than the superblock's (btrfs subvolumes,
// overlayfs) the file is not found there, and the restore fails when it
// takes the lock instead (RestoreLocks), naming the file.
func checkLocks(fd *image.FD) error {
	if len(fd.Locks) == 0 {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Stat(fd.Path, &st); err != nil {
		return fmt.Errorf("stat %s: %w", fd.Path, err)
	}
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		held, ok, err := parseLockLine(line)
		if err != nil || !ok || held.dev != st.Dev || held.ino != st.Ino {
			continue // a waiter ("->"), a lease, another file
		}
		for _, l := range fd.Locks {
			if conflicts(l, held.lock) {
				return fmt.Errorf("%s lock on %s: process %d holds a %s lock on it now (/proc/locks: %s): %w",
					describeLock(l), fd.Path, held.pid, describeLock(held.lock), line, ErrLockHeld)
			}
		}
	}
	return nil
}

// describeLock names a lock in messages: "flock write", "POSIX read
// bytes 10-19".
func describeLock(l image.FileLock) string {
	mode := "read"
	if l.Write {
		mode = "write"
	}
	switch l.Kind {
	case image.LockFlock:
		return "flock " + mode
	case image.LockLease:
		return mode + " lease"
	case image.LockPosix:
		mode = "POSIX " + mode
	default:
		mode = "OFD " + mode
	}
	if l.Len == 0 {
		return fmt.Sprintf("%s from byte %d", mode, l.Start)
	}
	return fmt.Sprintf("%s bytes %d-%d", mode, l.Start, lockEnd(l))
}

// RestoreLocks takes again, in the stub r, the file locks its fds held.
// It runs once every fd of the tree is in place and every helper fd is
// closed: closing any fd on a file drops the POSIX locks the process
// holds on it. A lock another process holds now fails, naming the file.
func RestoreLocks(r *ptrace.Remote, fds []image.FD) error {
	for i := range fds {
		fd := &fds[i]
		for _, l := range fd.Locks {
			if err := takeLock(r, fd.Num, l); err != nil {
				if l.Kind == image.LockLease && errors.Is(err, unix.EAGAIN) {
					err = fmt.Errorf("the file is open elsewhere for writing (for a write lease: open elsewhere at all), or leased: %w (%w)", ErrLockHeld, err)
				} else if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EWOULDBLOCK) {
					err = fmt.Errorf("%w (%w)", ErrLockHeld, err)
				}
				return fmt.Errorf("restore %s lock of fd %d on %s: %w", describeLock(l), fd.Num, fd.Path, err)
			}
		}
	}
	return nil
}

// takeLock takes lock l on fd num of the stub r, without waiting.
func takeLock(r *ptrace.Remote, num int, l image.FileLock) error {
	if l.Kind == image.LockLease {
		arg := uint64(unix.F_RDLCK)
		if l.Write {
			arg = unix.F_WRLCK
		}
		if _, err := r.Syscall(unix.SYS_FCNTL, uint64(num), unix.F_SETLEASE, arg); err != nil {
			return fmt.Errorf("fcntl F_SETLEASE: %w", err)
		}
		return nil
	}
	if l.Kind == image.LockFlock {
		op := uint64(unix.LOCK_SH | unix.LOCK_NB)
		if l.Write {
			op = unix.LOCK_EX | unix.LOCK_NB
		}
		if _, err := r.Syscall(unix.SYS_FLOCK, uint64(num), op); err != nil {
			return fmt.Errorf("flock: %w", err)
		}
		return nil
	}
	fl := unix.Flock_t{Type: unix.F_RDLCK, Whence: unix.SEEK_SET, Start: l.Start, Len: l.Len}
	if l.Write {
		fl.Type = unix.F_WRLCK
	}
	cmd, name := uint64(unix.F_SETLK), "F_SETLK"
	if l.Kind == image.LockOFD {
		cmd, name = unix.F_OFD_SETLK, "F_OFD_SETLK"
	}
	addr, err := r.Put(ptrace.ArgOff, ptrace.Bytes(&fl))
	if err != nil {
		return err
	}
	if _, err := r.Syscall(unix.SYS_FCNTL, uint64(num), cmd, addr); err != nil {
		return fmt.Errorf("fcntl %s: %w", name, err)
	}
	return nil
}
