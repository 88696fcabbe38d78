package task

import (
	"fmt"

	"github.com/rtcr/rtcr/internal/abi"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// threadFlags are the clone flags of a POSIX thread (as glibc's
// pthread_create and Go's newosproc use them).
const threadFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
	unix.CLONE_THREAD | unix.CLONE_SYSVSEM

// CreateThread makes the stub r create a thread with thread id tid
// (clone3 with set_tid), waits for it to stop and returns an injector for
// it. The thread is traced (clone events are followed) and starts with
// every signal blocked, like the thread that created it.
func CreateThread(r *ptrace.Remote, tid int) (*ptrace.Injector, error) {
	t := int32(tid)
	tidAddr, err := r.Put(ptrace.ArgOff+0x80, ptrace.Bytes(&t))
	if err != nil {
		return nil, err
	}
	args := abi.CloneArgs{Flags: threadFlags, SetTid: tidAddr, SetTidSize: 1}
	argsAddr, err := r.Put(ptrace.ArgOff, ptrace.Bytes(&args))
	if err != nil {
		return nil, err
	}
	got, err := r.Syscall(abi.SYS_CLONE3, argsAddr, uint64(len(ptrace.Bytes(&args))))
	if err != nil {
		return nil, fmt.Errorf("create thread %d in %d (clone3 set_tid): %w", tid, r.Pid, err)
	}
	if int(got) != tid {
		return nil, fmt.Errorf("create thread %d in %d: got tid %d", tid, r.Pid, got)
	}
	ws, err := ptrace.Wait(tid)
	if err != nil {
		return nil, fmt.Errorf("wait for new thread %d: %w", tid, err)
	}
	if !ws.Stopped() {
		return nil, fmt.Errorf("new thread %d: unexpected status %#x", tid, ws)
	}
	return ptrace.NewInjector(tid, r.SyscallAddr)
}
