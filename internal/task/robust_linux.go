package task

import (
	"fmt"
	"unsafe"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// DumpRobust reads the robust futex list registration of thread tid with
// get_robust_list, called by rtcr itself: the call takes a tid and works
// on any thread the caller may ptrace-read (PTRACE_MODE_READ_REALCREDS),
// so it needs neither injection nor the tracer thread.
//
// The kernel reports a length of sizeof(struct robust_list_head) even
// when no list is registered; DumpRobust returns the zero RobustList
// then (head 0), so that an image only holds a length for a real list.
func DumpRobust(tid int) (image.RobustList, error) {
	var head uintptr
	var size uintptr
	_, _, e := unix.Syscall(unix.SYS_GET_ROBUST_LIST, uintptr(tid),
		uintptr(unsafe.Pointer(&head)), uintptr(unsafe.Pointer(&size)))
	if e != 0 {
		return image.RobustList{}, fmt.Errorf("read robust futex list of %d: %w", tid, e)
	}
	if head == 0 {
		return image.RobustList{}, nil
	}
	return image.RobustList{Head: uint64(head), Len: uint64(size)}, nil
}

// RestoreRobust registers rl as the robust futex list of the thread in
// runs in (set_robust_list only acts on the calling thread). A zero head
// means no list was registered: nothing is done. The head need not be
// mapped yet: the kernel only stores the pointer and reads the list when
// the thread exits (or execs).
func RestoreRobust(in *ptrace.Injector, rl image.RobustList) error {
	if rl.Head == 0 {
		return nil
	}
	if _, err := in.Syscall(unix.SYS_SET_ROBUST_LIST, rl.Head, rl.Len); err != nil {
		return fmt.Errorf("restore thread %d: set_robust_list(%#x, %d): %w", in.Tid, rl.Head, rl.Len, err)
	}
	return nil
}
