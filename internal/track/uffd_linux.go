// Package track finds the pages a process wrote since its last
// checkpoint, on kernels without soft-dirty bits: a userfaultfd created
// inside the target in asynchronous write-protect mode
// (UFFD_FEATURE_WP_ASYNC), its mappings registered and write-protected
// (private anonymous and file mappings, every view of shared memory: async
// write-protect accepts any kind of VMA), and the PAGEMAP_SCAN ioctl, which
// reports the pages written since and protects them again in one call
// (Written), or only reports them (Peek: shared memory, whose views are
// all scanned before any page is copied).
//
// In async mode the kernel resolves a write to a protected page itself
// (it only clears the page's protection bit), so a target never waits for
// rtcr: if rtcr dies, the target runs on as before. Tracking lasts while
// any copy of the userfaultfd is open; the target keeps one at a high fd
// (at least MinFd) between dumps, recorded in a state file (state_linux.go)
// so that the next dump can trust it.
package track

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"github.com/rtcr/rtcr/internal/abi"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// MinFd is the lowest fd number the target's copy of the userfaultfd may
// take, out of the way of the program's own fds.
const MinFd = 1000

// ErrNoTracking reports a process whose memory is not tracked for the
// image asked for.
var ErrNoTracking = errors.New("no memory tracking")

// Create makes a userfaultfd inside the target through the injector r
// (close-on-exec, non-blocking, moved to the lowest free fd ≥ MinFd), sets
// it up for asynchronous write-protect tracking, and returns its fd number
// in the target and rtcr's own copy of it. before is called, before the
// userfaultfd is made, with the number it will be moved to and the number
// it is made at (the lowest free fd: the process is frozen, its fd table
// stays as read), so that a state file naming both exists before the fd
// does: an rtcr killed at any later point leaves a userfaultfd that the
// next dump knows as rtcr's (see Load), or one still at the low number,
// which the next dump closes (LoadStray); never an unknown one it would
// refuse.
func Create(r *ptrace.Remote, before func(fd, stray int) error) (targetFd, own int, err error) {
	stray, n, err := freeFds(r.Pid)
	if err != nil {
		return -1, -1, err
	}
	if err := before(n, stray); err != nil {
		return -1, -1, err
	}
	flags := uint64(unix.O_CLOEXEC | unix.O_NONBLOCK)
	fd, err := r.Syscall(unix.SYS_USERFAULTFD, flags)
	if errors.Is(err, unix.EPERM) {
		// Without privilege (vm.unprivileged_userfaultfd=0) only faults
		// from user mode may be handled; async WP works the same.
		fd, err = r.Syscall(unix.SYS_USERFAULTFD, flags|abi.UFFD_USER_MODE_ONLY)
	}
	if err != nil {
		return -1, -1, fmt.Errorf("userfaultfd in %d: %w", r.Pid, err)
	}
	if createHook != nil {
		if err := createHook(); err != nil {
			return -1, -1, err // as if rtcr were killed here: the fd stays
		}
	}
	hi, err := r.Syscall(unix.SYS_DUP3, fd, uint64(n), unix.O_CLOEXEC)
	if err != nil {
		err = fmt.Errorf("move the userfaultfd of %d to fd %d (RLIMIT_NOFILE?): %w", r.Pid, n, err)
	}
	if cerr := r.Close(int(fd)); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return -1, -1, err
	}
	targetFd = int(hi)
	own, err = ptrace.GetFD(r.Pid, targetFd)
	if err == nil {
		if err = enable(own); err != nil {
			unix.Close(own)
		}
	}
	if err != nil {
		_ = r.Close(targetFd)
		return -1, -1, fmt.Errorf("userfaultfd of %d: %w", r.Pid, err)
	}
	return targetFd, own, nil
}

// createHook, when set (by tests), runs in Create between the injected
// userfaultfd and its dup3; an error stops Create there, leaving the fd
// at its low number, as an rtcr killed there would.
var createHook func() error

// SetCreateHookForTest sets createHook (nil: none).
func SetCreateHookForTest(f func() error) { createHook = f }

// freeFds returns the lowest fd number process pid has not open (where a
// new fd is made) and the lowest ≥ MinFd other than that one.
func freeFds(pid int) (low, high int, err error) {
	used, err := openFds(pid)
	if err != nil {
		return -1, -1, err
	}
	for used[low] {
		low++
	}
	used[low] = true
	high = MinFd
	for used[high] {
		high++
	}
	return low, high, nil
}

// openFds returns the fd numbers process pid has open.
func openFds(pid int) (map[int]bool, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, fmt.Errorf("list fds of %d: %w", pid, err)
	}
	used := map[int]bool{}
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			used[n] = true
		}
	}
	return used, nil
}

// Take returns rtcr's own copy of the tracking userfaultfd fd num of pid.
// A dump killed inside Create may have left it without its API set: it
// is set now (on a userfaultfd set up already the kernel refuses it,
// which changes nothing).
func Take(pid, num int) (int, error) {
	fd, err := ptrace.GetFD(pid, num)
	if err == nil {
		_ = enable(fd)
	}
	return fd, err
}

// enable sets the API and features of the userfaultfd fd: async
// write-protect, unpopulated pages protected too, and shmem/hugetlbfs
// where the kernel has it.
func enable(fd int) error {
	base := uint64(abi.UFFD_FEATURE_WP_ASYNC | abi.UFFD_FEATURE_WP_UNPOPULATED)
	api := abi.UffdioAPI{API: abi.UFFD_API, Features: base | abi.UFFD_FEATURE_WP_HUGETLBFS_SHMEM}
	err := ioctl(fd, abi.UFFDIO_API, unsafe.Pointer(&api))
	if errors.Is(err, unix.EINVAL) {
		api = abi.UffdioAPI{API: abi.UFFD_API, Features: base}
		err = ioctl(fd, abi.UFFDIO_API, unsafe.Pointer(&api))
	}
	if err != nil {
		return fmt.Errorf("UFFDIO_API with WP_ASYNC|WP_UNPOPULATED: %w", err)
	}
	return nil
}

// Register registers [start, end) of the target for write-protect
// tracking on the userfaultfd fd (rtcr's copy) and protects it.
func Register(fd int, start, end uint64) error {
	reg := abi.UffdioRegister{Range: abi.UffdioRange{Start: start, Len: end - start}, Mode: abi.UFFDIO_REGISTER_MODE_WP}
	if err := ioctl(fd, abi.UFFDIO_REGISTER, unsafe.Pointer(&reg)); err != nil {
		return fmt.Errorf("UFFDIO_REGISTER %#x-%#x: %w", start, end, err)
	}
	return Protect(fd, start, end)
}

// Protect write-protects [start, end), so that the next scan reports only
// pages written after it.
func Protect(fd int, start, end uint64) error {
	wp := abi.UffdioWriteprotect{Range: abi.UffdioRange{Start: start, Len: end - start}, Mode: abi.UFFDIO_WRITEPROTECT_MODE_WP}
	if err := ioctl(fd, abi.UFFDIO_WRITEPROTECT, unsafe.Pointer(&wp)); err != nil {
		return fmt.Errorf("UFFDIO_WRITEPROTECT %#x-%#x: %w", start, end, err)
	}
	return nil
}

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		if errno == unix.EINTR || errno == unix.EAGAIN {
			continue
		}
		if errno != 0 {
			return errno
		}
		return nil
	}
}
