package stub

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"github.com/rtcr/rtcr/internal/abi"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// ErrPidTaken reports that the pid a restore needs is in use.
var ErrPidTaken = errors.New("pid is in use")

// Start creates an empty, stopped, traced process whose pid is pid, with
// one anonymous RWX scratch area of ptrace.ScratchSize bytes at scratch
// (a `syscall` instruction at its start) and nothing else mapped but
// [vsyscall]. The stub's ELF is loaded at elfBase. scratch and elfBase must
// be page-aligned, not overlap each other, and lie where the restored image
// maps nothing. Start must run inside ptrace.Run. The process is a child of
// the caller (CLONE_PARENT) and dies if the tracer dies (PTRACE_O_EXITKILL,
// which processes cloned from it inherit); the first stub, before that
// option is set, dies with rtcr by itself (see code).
func Start(pid int, scratch, elfBase uint64) (*ptrace.Remote, error) {
	return start(scratch, elfBase, func(first *ptrace.Remote) (*ptrace.Remote, error) {
		return Clone(first, unix.CLONE_PARENT, pid)
	})
}

// TimeOffsets are the offsets of a new time namespace, in nanoseconds.
type TimeOffsets struct {
	Monotonic, Boottime int64
}

// StartNS is Start for a process tree that lived in its own pid and time
// namespaces: the new process is pid 1 of a new pid namespace and lives in
// a new time namespace whose clocks are offset by off. Its pid as rtcr
// sees it is arbitrary. The kernel refuses CLONE_PARENT with CLONE_NEWPID,
// so the caller is made a child subreaper while the first stub dies: the
// new process is then reparented to it, as Start's is.
func StartNS(scratch, elfBase uint64, off TimeOffsets) (*ptrace.Remote, error) {
	var was int32
	if _, _, e := unix.Syscall(unix.SYS_PRCTL, unix.PR_GET_CHILD_SUBREAPER, uintptr(unsafe.Pointer(&was)), 0); e != 0 {
		return nil, fmt.Errorf("read child subreaper: %w", e)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become child subreaper: %w", err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, uintptr(was), 0, 0, 0)
	return start(scratch, elfBase, func(first *ptrace.Remote) (*ptrace.Remote, error) {
		// The offsets of a time namespace can be set only before any
		// process is in it: unshare (the caller stays outside, its
		// children go in), set them, then clone.
		if _, err := first.Syscall(unix.SYS_UNSHARE, unix.CLONE_NEWTIME); err != nil {
			return nil, fmt.Errorf("new time namespace: %w", err)
		}
		ms, mns := splitNs(off.Monotonic)
		bs, bns := splitNs(off.Boottime)
		offsets := fmt.Sprintf("monotonic %d %d\nboottime %d %d\n", ms, mns, bs, bns)
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/timens_offsets", first.Pid), []byte(offsets), 0); err != nil {
			return nil, fmt.Errorf("set time namespace offsets: %w", err)
		}
		return Clone(first, unix.CLONE_NEWPID, 1)
	})
}

// splitNs splits a nanosecond count into seconds and a nanosecond part in
// [0, 1e9), as timens_offsets wants them (also for negative offsets).
func splitNs(v int64) (sec, nsec int64) {
	sec, nsec = v/1e9, v%1e9
	if nsec < 0 {
		sec, nsec = sec-1, nsec+1e9
	}
	return sec, nsec
}

// start runs the first stub, maps its scratch area, lets clone create the
// process that is kept, kills the first stub and empties the new process.
func start(scratch, elfBase uint64, clone func(first *ptrace.Remote) (*ptrace.Remote, error)) (*ptrace.Remote, error) {
	first, err := execStub(elfBase, []*os.File{os.Stdin, os.Stdout, os.Stderr})
	if err != nil {
		return nil, err
	}
	defer ptrace.Kill(first.Pid)
	if err := mapScratch(first, scratch); err != nil {
		return nil, err
	}
	r, err := clone(first)
	if err != nil {
		return nil, err
	}
	if err := empty(r); err != nil {
		ptrace.Kill(r.Pid)
		return nil, err
	}
	return r, nil
}

// execStub runs the stub ELF traced, with files as its fds 0, 1, 2 … (a
// nil one closed); it stops before its first instruction.
func execStub(elfBase uint64, files []*os.File) (*ptrace.Remote, error) {
	img, sysAddr := ELF(elfBase, os.Getpid())
	fd, err := unix.MemfdCreate("rtcr-stub", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create stub memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "rtcr-stub")
	defer f.Close()
	if _, err := f.Write(img); err != nil {
		return nil, fmt.Errorf("write stub: %w", err)
	}
	proc, err := os.StartProcess(fmt.Sprintf("/proc/self/fd/%d", fd), []string{"rtcr-stub"}, &os.ProcAttr{
		Env:   []string{},
		Files: files,
		// Pdeathsig: the forked child sets it (and checks its parent is
		// still rtcr) before PTRACE_TRACEME. Without it, an rtcr killed
		// between fork and TRACEME left the child to attach to its new
		// parent (init, a subreaper) and stop at exec for ever, before
		// the stub's own first instruction. It lasts across the exec.
		Sys: &syscall.SysProcAttr{Ptrace: true, Pdeathsig: syscall.SIGKILL},
	})
	if err != nil {
		return nil, fmt.Errorf("start stub: %w", err)
	}
	spid := proc.Pid
	_ = proc.Release()
	ws, err := ptrace.Wait(spid)
	if err != nil {
		return nil, fmt.Errorf("start stub: %w", err)
	}
	if !ws.Stopped() || ws.StopSignal() != syscall.SIGTRAP {
		ptrace.Kill(spid)
		return nil, fmt.Errorf("start stub %d: unexpected status %#x", spid, ws)
	}
	if err := ptrace.SetOptions(spid, true); err != nil {
		ptrace.Kill(spid)
		return nil, err
	}
	in, err := ptrace.NewInjector(spid, sysAddr)
	if err != nil {
		ptrace.Kill(spid)
		return nil, err
	}
	return &ptrace.Remote{Injector: in, Pid: spid}, nil
}

// mapScratch maps the RWX scratch area at scratch in the first stub and
// puts the syscall instruction the restore injects through at its start.
func mapScratch(first *ptrace.Remote, scratch uint64) error {
	addr, err := first.Syscall(unix.SYS_MMAP, scratch, ptrace.ScratchSize,
		unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED_NOREPLACE, ^uint64(0), 0)
	if err != nil {
		return fmt.Errorf("map stub scratch area at %#x: %w", scratch, err)
	}
	first.Scratch, first.ScratchSize = addr, ptrace.ScratchSize
	if _, err := first.Put(0, []byte{0x0f, 0x05, 0xcc, 0xcc}); err != nil {
		return err
	}
	first.SyscallAddr = addr
	return nil
}

// Clone makes the stopped process parent create a process (flags without
// CLONE_THREAD) whose pid in its own pid namespace is nsPid, with clone3
// and set_tid, and returns it stopped and traced. The child's exit signal
// is SIGCHLD (its parent's own with CLONE_PARENT); it shares nothing with its parent but a copy of the address
// space (with the scratch area) and of the fd table.
func Clone(parent *ptrace.Remote, flags uint64, nsPid int) (*ptrace.Remote, error) {
	// With CLONE_PARENT the exit signal is the caller's own (and clone3
	// wants 0 here).
	exitSignal := uint64(unix.SIGCHLD)
	if flags&unix.CLONE_PARENT != 0 {
		exitSignal = 0
	}
	outer, err := cloneRaw(parent.Injector, parent, flags, exitSignal, nsPid)
	if err != nil {
		return nil, err
	}
	r, err := adopt(outer, parent.SyscallAddr, parent.Scratch)
	if err != nil {
		return nil, err
	}
	r.NsPid = nsPid
	return r, nil
}

// cloneRaw injects clone3 with set_tid = nsPid into the thread in of r and
// returns the new task's id as rtcr sees it (the ptrace event message; the
// syscall returns the id in the caller's namespace).
func cloneRaw(in *ptrace.Injector, r *ptrace.Remote, flags, exitSignal uint64, nsPid int) (int, error) {
	tid := int32(nsPid)
	tidAddr, err := r.Put(ptrace.DataOff, ptrace.Bytes(&tid))
	if err != nil {
		return 0, err
	}
	args := abi.CloneArgs{Flags: flags, ExitSignal: exitSignal, SetTid: tidAddr, SetTidSize: 1}
	argsAddr, err := r.Put(ptrace.ArgOff, ptrace.Bytes(&args))
	if err != nil {
		return 0, err
	}
	in.EventMsg = 0
	got, err := in.Syscall(abi.SYS_CLONE3, argsAddr, uint64(len(ptrace.Bytes(&args))))
	if errors.Is(err, unix.EEXIST) {
		return 0, fmt.Errorf("create %d in %d: %w", nsPid, r.Pid, ErrPidTaken)
	}
	if err != nil {
		return 0, fmt.Errorf("create %d in %d (clone3 set_tid, flags %#x): %w", nsPid, r.Pid, flags, err)
	}
	outer := int(in.EventMsg)
	if outer == 0 {
		return 0, fmt.Errorf("create %d in %d: no clone event", nsPid, r.Pid)
	}
	// The syscall returns the id in the caller's namespace: equal to the
	// wanted one unless the child is the init of a new pid namespace.
	if flags&unix.CLONE_NEWPID == 0 && int(got) != nsPid {
		ptrace.Kill(outer)
		return 0, fmt.Errorf("create %d in %d: got %d", nsPid, r.Pid, got)
	}
	return outer, nil
}

// CloneThread makes thread in of process r create a thread whose id in
// the process's pid namespace is nsTid, and returns an injector for it.
func CloneThread(in *ptrace.Injector, r *ptrace.Remote, flags uint64, nsTid int) (*ptrace.Injector, error) {
	outer, err := cloneRaw(in, r, flags, 0, nsTid)
	if err != nil {
		return nil, err
	}
	if err := waitStop(outer); err != nil {
		return nil, err
	}
	t, err := ptrace.NewInjector(outer, r.SyscallAddr)
	if err != nil {
		// Reap the thread: its process cannot be reaped before it is.
		_ = unix.Tgkill(r.Pid, outer, unix.SIGKILL)
		_, _ = ptrace.Wait(outer)
		return nil, err
	}
	t.NsTid = nsTid
	return t, nil
}

// empty unmaps everything in the stub except the scratch area and
// [vsyscall] (which cannot be unmapped).
func empty(r *ptrace.Remote) error {
	maps, err := procfs.ReadMaps(r.Pid)
	if err != nil {
		return err
	}
	for _, m := range maps {
		if m.Start == r.Scratch || m.Path == "[vsyscall]" {
			continue
		}
		if _, err := r.Syscall(unix.SYS_MUNMAP, m.Start, m.Size()); err != nil {
			return fmt.Errorf("empty stub %d: unmap %#x-%#x %s: %w", r.Pid, m.Start, m.End, m.Path, err)
		}
	}
	return nil
}

// Fork makes the stopped stub parent create a child whose pid (in the
// parent's pid namespace) is nsPid, traced like its parent. The child's
// scratch area is at the parent's address.
func Fork(parent *ptrace.Remote, nsPid int) (*ptrace.Remote, error) {
	return Clone(parent, 0, nsPid)
}

// ForkQuiet is Fork with no exit signal: the child's exit sends its
// parent nothing (no SIGCHLD queued in a process being restored), and
// only a wait with __WALL (or __WCLONE) in the parent reaps it.
func ForkQuiet(parent *ptrace.Remote, nsPid int) (*ptrace.Remote, error) {
	outer, err := cloneRaw(parent.Injector, parent, 0, 0, nsPid)
	if err != nil {
		return nil, err
	}
	r, err := adopt(outer, parent.SyscallAddr, parent.Scratch)
	if err != nil {
		return nil, err
	}
	r.NsPid = nsPid
	return r, nil
}

// waitStop waits for a new traced task's first stop.
func waitStop(tid int) error {
	ws, err := ptrace.Wait(tid)
	if err != nil {
		return fmt.Errorf("wait for new task %d: %w", tid, err)
	}
	if !ws.Stopped() {
		ptrace.Kill(tid)
		return fmt.Errorf("new task %d: unexpected status %#x", tid, ws)
	}
	return nil
}

// adopt waits for a new traced process to stop and prepares it.
func adopt(pid int, syscallAddr, scratch uint64) (*ptrace.Remote, error) {
	if err := waitStop(pid); err != nil {
		return nil, err
	}
	if err := ptrace.SetOptions(pid, true); err != nil {
		ptrace.Kill(pid)
		return nil, err
	}
	in, err := ptrace.NewInjector(pid, syscallAddr)
	if err != nil {
		ptrace.Kill(pid)
		return nil, err
	}
	return &ptrace.Remote{Injector: in, Pid: pid, NsPid: pid, Scratch: scratch, ScratchSize: ptrace.ScratchSize}, nil
}

// Exit turns the stub r into a zombie with wait status status: it exits
// with the status's code, or dies of its signal (without a core dump).
func Exit(r *ptrace.Remote, status int) error {
	ws := unix.WaitStatus(status)
	if !ws.Signaled() {
		_, err := r.Syscall(unix.SYS_EXIT_GROUP, uint64(ws.ExitStatus()))
		if errors.Is(err, ptrace.ErrExited) {
			return nil
		}
		return fmt.Errorf("make %d a zombie (exit %d): %w", r.Pid, ws.ExitStatus(), err)
	}
	sig := ws.Signal()
	if err := unix.Prlimit(r.Pid, unix.RLIMIT_CORE, &unix.Rlimit{}, nil); err != nil {
		return fmt.Errorf("make %d a zombie: no core limit: %w", r.Pid, err)
	}
	if err := ptrace.SetSigMask(r.Pid, 0); err != nil {
		return err
	}
	regs := r.Saved()
	regs.Rip, regs.Rax, regs.Orig_rax = r.SyscallAddr, unix.SYS_KILL, ^uint64(0)
	regs.Rdi, regs.Rsi = uint64(r.NsPid), uint64(sig)
	if err := ptrace.SetRegs(r.Pid, &regs); err != nil {
		return err
	}
	deliver := 0
	for {
		if err := unix.PtraceCont(r.Pid, deliver); err != nil {
			return fmt.Errorf("make %d a zombie (%v): %w", r.Pid, sig, err)
		}
		ws, err := ptrace.Wait(r.Pid)
		if errors.Is(err, ptrace.ErrExited) {
			return nil
		}
		if err != nil {
			return err
		}
		deliver = 0
		if ws.Stopped() && ws.StopSignal() == sig {
			deliver = int(sig)
		}
	}
}
