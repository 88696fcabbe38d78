package lazy

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/rtcr/rtcr/internal/abi"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// Features are the userfaultfd features a lazy restore needs: every
// change the program makes to its address space while pages are missing
// is reported (fork: the child's missing pages come from the image too;
// mremap: they move; MADV_DONTNEED/REMOVE and munmap: they are no longer
// wanted), and faults name their thread.
const Features = abi.UFFD_FEATURE_EVENT_FORK | abi.UFFD_FEATURE_EVENT_REMAP | abi.UFFD_FEATURE_EVENT_REMOVE |
	abi.UFFD_FEATURE_EVENT_UNMAP | abi.UFFD_FEATURE_THREAD_ID

// ErrUnsupported reports a kernel whose userfaultfd lacks what a lazy
// restore needs.
var ErrUnsupported = errors.New("userfaultfd without missing-page events (fork, remap, remove, unmap)")

// Create makes a userfaultfd in the stopped stub r (an injected
// userfaultfd(2), so that it belongs to the stub's address space), takes
// rtcr's own copy of it with pidfd_getfd and closes it in the stub again:
// the fd table the process gets is exactly its image's. The copy gets the
// API with Features; it is non-blocking.
func Create(r *ptrace.Remote) (int, error) {
	fd, err := r.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK)
	if err != nil {
		return -1, fmt.Errorf("userfaultfd in %d: %w", r.Pid, err)
	}
	own, err := ptrace.GetFD(r.Pid, int(fd))
	if cerr := r.Close(int(fd)); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		if own >= 0 {
			unix.Close(own)
		}
		return -1, err
	}
	api := abi.UffdioAPI{API: abi.UFFD_API, Features: Features}
	if err := ioctl(own, abi.UFFDIO_API, unsafe.Pointer(&api)); err != nil {
		unix.Close(own)
		return -1, fmt.Errorf("userfaultfd of %d: UFFDIO_API: %w (%w)", r.Pid, ErrUnsupported, err)
	}
	return own, nil
}

// Register registers [start, end) of the userfaultfd's address space in
// missing mode: a touch of a page not there waits for the Server.
func Register(fd int, start, end uint64) error {
	reg := abi.UffdioRegister{Range: abi.UffdioRange{Start: start, Len: end - start}, Mode: abi.UFFDIO_REGISTER_MODE_MISSING}
	if err := ioctl(fd, abi.UFFDIO_REGISTER, unsafe.Pointer(&reg)); err != nil {
		return fmt.Errorf("UFFDIO_REGISTER (missing) %#x-%#x: %w", start, end, err)
	}
	return nil
}

// ioctl runs one userfaultfd ioctl, retrying EINTR only (EAGAIN means
// something to the callers).
func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return errno
		}
		return nil
	}
}
