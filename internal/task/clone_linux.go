package task

import (
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/stub"
	"golang.org/x/sys/unix"
)

// threadFlags are the clone flags of a POSIX thread (as glibc's
// pthread_create and Go's newosproc use them).
const threadFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
	unix.CLONE_THREAD | unix.CLONE_SYSVSEM

// CreateThread makes the stub r create a thread whose id in the process's
// pid namespace is nsTid (clone3 with set_tid), waits for it to stop and
// returns an injector for it. The thread is traced (clone events are
// followed) and starts with every signal blocked, like the thread that
// created it.
func CreateThread(r *ptrace.Remote, nsTid int) (*ptrace.Injector, error) {
	return stub.CloneThread(r.Injector, r, threadFlags, nsTid)
}
