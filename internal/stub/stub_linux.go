package stub

import (
	"errors"
	"fmt"
	"os"
	"syscall"

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
// the caller (CLONE_PARENT) and dies if the tracer dies (PTRACE_O_EXITKILL).
func Start(pid int, scratch, elfBase uint64) (*ptrace.Remote, error) {
	first, err := execStub(elfBase)
	if err != nil {
		return nil, err
	}
	r, err := cloneWithPid(first, pid, scratch)
	ptrace.Kill(first.Pid)
	if err != nil {
		return nil, err
	}
	if err := empty(r); err != nil {
		ptrace.Kill(r.Pid)
		return nil, err
	}
	return r, nil
}

// execStub runs the stub ELF traced; it stops before its first instruction.
func execStub(elfBase uint64) (*ptrace.Remote, error) {
	img, sysAddr := ELF(elfBase)
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
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		Sys:   &syscall.SysProcAttr{Ptrace: true},
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

// cloneWithPid maps the scratch area in the first stub, then has it clone3
// a child with set_tid = pid and CLONE_PARENT. The child is traced (clone
// events are followed) and shares nothing with the first stub.
func cloneWithPid(first *ptrace.Remote, pid int, scratch uint64) (*ptrace.Remote, error) {
	addr, err := first.Syscall(unix.SYS_MMAP, scratch, ptrace.ScratchSize,
		unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED_NOREPLACE, ^uint64(0), 0)
	if err != nil {
		return nil, fmt.Errorf("map stub scratch area at %#x: %w", scratch, err)
	}
	first.Scratch, first.ScratchSize = addr, ptrace.ScratchSize
	// The syscall instruction the restore injects through, then int3s.
	if _, err := first.Put(0, []byte{0x0f, 0x05, 0xcc, 0xcc}); err != nil {
		return nil, err
	}
	tid := int32(pid)
	tidAddr, err := first.Put(ptrace.DataOff, ptrace.Bytes(&tid))
	if err != nil {
		return nil, err
	}
	args := abi.CloneArgs{Flags: unix.CLONE_PARENT, SetTid: tidAddr, SetTidSize: 1}
	argsAddr, err := first.Put(ptrace.ArgOff, ptrace.Bytes(&args))
	if err != nil {
		return nil, err
	}
	child, err := first.Syscall(abi.SYS_CLONE3, argsAddr, uint64(len(ptrace.Bytes(&args))))
	if errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("create process with pid %d: %w", pid, ErrPidTaken)
	}
	if err != nil {
		return nil, fmt.Errorf("create process with pid %d (clone3 set_tid): %w", pid, err)
	}
	if int(child) != pid {
		ptrace.Kill(int(child))
		return nil, fmt.Errorf("create process with pid %d: got pid %d", pid, child)
	}
	return adopt(pid, addr, addr)
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

// Fork makes the stopped stub parent create a child with pid pid (clone3
// with set_tid, SIGCHLD as exit signal), traced like its parent, sharing
// nothing with it but a copy of its (empty) address space and its fds.
// The child's scratch area is at the parent's address.
func Fork(parent *ptrace.Remote, pid int) (*ptrace.Remote, error) {
	tid := int32(pid)
	tidAddr, err := parent.Put(ptrace.DataOff, ptrace.Bytes(&tid))
	if err != nil {
		return nil, err
	}
	args := abi.CloneArgs{ExitSignal: uint64(unix.SIGCHLD), SetTid: tidAddr, SetTidSize: 1}
	argsAddr, err := parent.Put(ptrace.ArgOff, ptrace.Bytes(&args))
	if err != nil {
		return nil, err
	}
	child, err := parent.Syscall(abi.SYS_CLONE3, argsAddr, uint64(len(ptrace.Bytes(&args))))
	if errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("create process %d as a child of %d: %w", pid, parent.Pid, ErrPidTaken)
	}
	if err != nil {
		return nil, fmt.Errorf("create process %d as a child of %d (clone3 set_tid): %w", pid, parent.Pid, err)
	}
	if int(child) != pid {
		ptrace.Kill(int(child))
		return nil, fmt.Errorf("create process %d: got pid %d", pid, child)
	}
	return adopt(pid, parent.SyscallAddr, parent.Scratch)
}

// adopt waits for a new traced process to stop and prepares it.
func adopt(pid int, syscallAddr, scratch uint64) (*ptrace.Remote, error) {
	ws, err := ptrace.Wait(pid)
	if err != nil {
		return nil, fmt.Errorf("wait for new process %d: %w", pid, err)
	}
	if !ws.Stopped() {
		ptrace.Kill(pid)
		return nil, fmt.Errorf("new process %d: unexpected status %#x", pid, ws)
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
	return &ptrace.Remote{Injector: in, Pid: pid, Scratch: scratch, ScratchSize: ptrace.ScratchSize}, nil
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
	regs.Rdi, regs.Rsi = uint64(r.Pid), uint64(sig)
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
