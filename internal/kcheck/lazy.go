package kcheck

import (
	"fmt"
	"unsafe"

	"github.com/rtcr/rtcr/internal/abi"
	"github.com/rtcr/rtcr/internal/lazy"
	"golang.org/x/sys/unix"
)

// checkUffdMissing makes a userfaultfd as rtcr restore --lazy does (kernel
// faults included, so not user-mode only), sets its API with the fork,
// remap, remove, unmap and thread-id events, registers a page of our own
// in missing mode and copies a page into it.
func checkUffdMissing() (string, error) {
	fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK, 0, 0)
	if errno != 0 {
		return "", fmt.Errorf("userfaultfd (with kernel faults; vm.unprivileged_userfaultfd or CAP_SYS_PTRACE): %w", errno)
	}
	api := abi.UffdioAPI{API: abi.UFFD_API, Features: lazy.Features}
	if err := ioctlPtr(int(fd), abi.UFFDIO_API, unsafe.Pointer(&api)); err != nil {
		unix.Close(int(fd))
		return "", fmt.Errorf("UFFDIO_API with the fork, remap, remove, unmap and thread-id events: %w", err)
	}
	// Page 0 is registered and filled; page 1 is the source.
	mem, err := unix.Mmap(-1, 0, 2*pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		unix.Close(int(fd))
		return "", fmt.Errorf("mmap: %w", err)
	}
	// The userfaultfd goes first: with the unmap event, a munmap of a
	// registered range waits until the event is read.
	defer unix.Munmap(mem)
	defer unix.Close(int(fd))
	mem[pageSize] = 42
	dst := uint64(uintptr(unsafe.Pointer(&mem[0])))
	reg := abi.UffdioRegister{Range: abi.UffdioRange{Start: dst, Len: pageSize}, Mode: abi.UFFDIO_REGISTER_MODE_MISSING}
	if err := ioctlPtr(int(fd), abi.UFFDIO_REGISTER, unsafe.Pointer(&reg)); err != nil {
		return "", fmt.Errorf("UFFDIO_REGISTER (missing): %w", err)
	}
	cp := abi.UffdioCopy{Dst: dst, Src: dst + pageSize, Len: pageSize}
	if err := ioctlPtr(int(fd), abi.UFFDIO_COPY, unsafe.Pointer(&cp)); err != nil {
		return "", fmt.Errorf("UFFDIO_COPY: %w", err)
	}
	if mem[0] != 42 {
		return "", fmt.Errorf("UFFDIO_COPY: the page reads %d, want 42", mem[0])
	}
	return fmt.Sprintf("missing mode with events (features %#x), UFFDIO_COPY", api.Features), nil
}

func ioctlPtr(fd int, req uintptr, arg unsafe.Pointer) error {
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg)); errno != 0 {
		return errno
	}
	return nil
}
