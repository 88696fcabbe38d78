package stub

import (
	"encoding/binary"
	"fmt"
	"os"

	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// keeperCode is what a keeper runs once let go: ppoll (its registers set
// by Keeper) on two pidfds, the kept process's and rtcr's; then
// pidfd_send_signal(process, SIGKILL) (nothing if it has exited: the
// keeper woke for that), ppoll on the process's pidfd alone until it has
// exited, and exit_group(0). The process's pidfd and the address of the
// pollfds are patched in (keeperPidfdAt, keeperFdsAt).
var keeperCode = []byte{
	0x0f, 0x05, // syscall (ppoll(fds, 2, NULL, NULL))
	0xbf, 0, 0, 0, 0, // mov edi, pidfd
	0xbe, 0x09, 0x00, 0x00, 0x00, // mov esi, SIGKILL
	0x31, 0xd2, // xor edx, edx
	0x45, 0x31, 0xd2, // xor r10d, r10d
	0xb8, 0xa8, 0x01, 0x00, 0x00, // mov eax, 424 (pidfd_send_signal)
	0x0f, 0x05, // syscall
	0x48, 0xbf, 0, 0, 0, 0, 0, 0, 0, 0, // mov rdi, fds
	0xbe, 0x01, 0x00, 0x00, 0x00, // mov esi, 1
	0x31, 0xd2, // xor edx, edx
	0x45, 0x31, 0xd2, // xor r10d, r10d
	0x45, 0x31, 0xc0, // xor r8d, r8d
	0xb8, 0x0f, 0x01, 0x00, 0x00, // mov eax, 271 (ppoll)
	0x0f, 0x05, // syscall
	0xb8, 0xe7, 0x00, 0x00, 0x00, // mov eax, 231 (exit_group)
	0x31, 0xff, // xor edi, edi
	0x0f, 0x05, // syscall
	0xcc, // int3 (never reached)
}

// Where keeperCode's immediates are: the kept process's pidfd (32 bits),
// the pollfds' address (64 bits).
const (
	keeperPidfdAt = 3
	keeperFdsAt   = 26
)

// keeperCodeOff is where keeperCode goes in the keeper's scratch area.
const keeperCodeOff = 0x40

// Keeper starts a process that holds a copy of rtcr's fd (a userfaultfd
// of the lazily restored process pid, its host pid, or of a child it
// forked while pages were missing) until pid has exited, and returns the
// keeper's pid. It is a child of the calling thread (run it inside
// ptrace.Run) and is not traced, and has no parent-death signal: when
// rtcr dies it lives on, so that the userfaultfd is released only after
// pid has exited (the kernel releases it with its last fd; a process
// faulting on a registered range of a released userfaultfd reads
// zeroes; rtcr's own exit closes its fds first). It waits in ppoll on
// pidfds of pid and of rtcr: when rtcr dies first it sends pid SIGKILL
// (a restored process gets its parent-death signal too, but a forked
// child has none: fork clears it; nor has a process that changed its
// credentials) and waits until it has exited; when pid exits first the
// keeper ends. While rtcr lives it kills the keeper (KillKeeper) once it
// lets the process go.
func Keeper(scratch, elfBase uint64, pid, fd int) (int, error) {
	// The fd is inherited (its fd 3), nothing else: not rtcr's stdin,
	// stdout and stderr (a pipe to rtcr's output must not stay open
	// because of it).
	// A copy: the os.File closes its fd, rtcr's stays the caller's.
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("keeper of %d: dup fd %d: %w", pid, fd, err)
	}
	f := os.NewFile(uintptr(dup), "userfaultfd")
	sp, err := startSpare(scratch, elfBase, f)
	f.Close()
	if err != nil {
		return 0, fmt.Errorf("keeper of %d: %w", pid, err)
	}
	return sp.arm(pid)
}

// Spare is a keeper started ahead, before the process it will keep is
// known (a child forked while pages are missing): a stub, traced and
// stopped, with its scratch area and a pidfd of rtcr, that dies with rtcr
// until Keep arms it. Keep then takes a few injected calls instead of a
// stub exec, which shortens the time a forked child goes without one.
type Spare struct {
	r    *ptrace.Remote
	self uint64 // its pidfd of rtcr
}

// NewSpare starts a spare keeper (a child of the calling thread, as for
// Keeper).
func NewSpare(scratch, elfBase uint64) (*Spare, error) {
	sp, err := startSpare(scratch, elfBase, nil)
	if err != nil {
		return nil, fmt.Errorf("spare keeper: %w", err)
	}
	return sp, nil
}

// Pid is the spare's pid.
func (sp *Spare) Pid() int { return sp.r.Pid }

// Keep arms the spare as the keeper of pid (as Keeper does) holding a copy
// of rtcr's fd, which it takes itself (pidfd_getfd), and returns its pid.
// On error the spare is killed and reaped.
func (sp *Spare) Keep(pid, fd int) (int, error) {
	if _, err := sp.r.Syscall(unix.SYS_PIDFD_GETFD, sp.self, uint64(fd), 0); err != nil {
		ptrace.Kill(sp.r.Pid)
		return 0, fmt.Errorf("keeper of %d: pidfd_getfd of rtcr's fd %d: %w", pid, fd, err)
	}
	return sp.arm(pid)
}

// Kill ends an unused spare and reaps it.
func (sp *Spare) Kill() { ptrace.Kill(sp.r.Pid) }

// startSpare starts the stub of a keeper with fd (if not nil) as its fd 3:
// no parent-death signal taken away yet, traced with exit-kill, its
// scratch area mapped and a pidfd of rtcr open.
func startSpare(scratch, elfBase uint64, fd *os.File) (*Spare, error) {
	files := []*os.File{nil, nil, nil}
	if fd != nil {
		files = append(files, fd)
	}
	r, err := execStub(elfBase, files)
	if err != nil {
		return nil, err
	}
	if err := mapScratch(r, scratch); err != nil {
		ptrace.Kill(r.Pid)
		return nil, err
	}
	// rtcr's pidfd: readable once rtcr (every thread) has exited.
	self, err := r.Syscall(unix.SYS_PIDFD_OPEN, uint64(os.Getpid()), 0)
	if err != nil {
		ptrace.Kill(r.Pid)
		return nil, fmt.Errorf("pidfd_open of rtcr %d: %w", os.Getpid(), err)
	}
	return &Spare{r: r, self: self}, nil
}

// arm makes the spare the keeper of pid and lets it go; on error it is
// killed and reaped.
func (sp *Spare) arm(pid int) (int, error) {
	r := sp.r
	ok := false
	defer func() {
		if !ok {
			ptrace.Kill(r.Pid)
		}
	}()
	pidfd, err := r.Syscall(unix.SYS_PIDFD_OPEN, uint64(pid), 0)
	if err != nil {
		return 0, fmt.Errorf("keeper of %d: pidfd_open: %w", pid, err)
	}
	// It must outlive its tracer and parent (this thread): neither dies
	// with it.
	if err := ptrace.SetOptions(r.Pid, false); err != nil {
		return 0, err
	}
	if _, err := r.Syscall(unix.SYS_PRCTL, unix.PR_SET_PDEATHSIG, 0); err != nil {
		return 0, fmt.Errorf("keeper of %d: no parent-death signal: %w", pid, err)
	}
	fds := [2]unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}, {Fd: int32(sp.self), Events: unix.POLLIN}}
	fdsAddr, err := r.Put(ptrace.ArgOff, ptrace.Bytes(&fds))
	if err != nil {
		return 0, err
	}
	text := append([]byte(nil), keeperCode...)
	binary.LittleEndian.PutUint32(text[keeperPidfdAt:], uint32(pidfd))
	binary.LittleEndian.PutUint64(text[keeperFdsAt:], fdsAddr)
	code, err := r.Put(keeperCodeOff, text)
	if err != nil {
		return 0, err
	}
	// No core file should it ever die by a signal.
	if err := unix.Prlimit(r.Pid, unix.RLIMIT_CORE, &unix.Rlimit{}, nil); err != nil {
		return 0, fmt.Errorf("keeper of %d: no core limit: %w", pid, err)
	}
	regs := r.Saved()
	regs.Rip, regs.Rax, regs.Orig_rax = code, unix.SYS_PPOLL, ^uint64(0)
	regs.Rdi, regs.Rsi, regs.Rdx, regs.R10, regs.R8 = fdsAddr, uint64(len(fds)), 0, 0, 0
	if err := ptrace.SetRegs(r.Pid, &regs); err != nil {
		return 0, err
	}
	if err := ptrace.Detach(r.Pid); err != nil {
		return 0, err
	}
	ok = true
	return r.Pid, nil
}

// KillKeeper ends the keeper kpid and reaps it (the calling thread must be
// the one that started it).
func KillKeeper(kpid int) error {
	if err := unix.Kill(kpid, unix.SIGKILL); err != nil {
		return fmt.Errorf("kill keeper %d: %w", kpid, err)
	}
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(kpid, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("reap keeper %d: %w", kpid, err)
		}
		return nil
	}
}
