package rtcr

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/rtcr/rtcr/internal/attr"
	"github.com/rtcr/rtcr/internal/cred"
	"github.com/rtcr/rtcr/internal/files"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/mem"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/sig"
	"github.com/rtcr/rtcr/internal/stub"
	"github.com/rtcr/rtcr/internal/task"
	"github.com/rtcr/rtcr/internal/timer"
	"github.com/rtcr/rtcr/internal/tree"
	"golang.org/x/sys/unix"
)

// restoring is one process being restored: its image, its stub and the
// injectors of its threads (the stub's own thread first).
type restoring struct {
	p       *image.Process
	r       *ptrace.Remote
	threads []*ptrace.Injector
	pages   mem.PageFiles // the page files of the image chain
	open    *files.Opener // opens its files as checked (set by fillMemory)
	ttyFd   int           // the fd its controlling terminal was set from, -1 if none
	as      *image.Creds  // files are opened with these rights (fileCreds)
	log     *slog.Logger
	ns      bool // it is in a new pid namespace: p.Pid is its pid there
	lazy    bool // a lazy restore: its private anonymous pages come later
}

// step runs one named restore step, naming the process and step on error,
// and logs it with its duration.
func (pr *restoring) step(name string, f func() error) error {
	start := time.Now()
	if err := f(); err != nil {
		return fmt.Errorf("restore %s: %s: %w", pr.name(), name, err)
	}
	logStep(pr.log, pr.p.Pid, name, time.Since(start))
	return nil
}

// name names the process in messages: its pid, and in a new pid namespace
// also the pid it has outside it ("pid 2 (host 3006)").
func (pr *restoring) name() string {
	if pr.ns {
		return tree.NSName(pr.p.Pid, pr.r.Pid)
	}
	return strconv.Itoa(pr.p.Pid)
}

func (pr *restoring) kill() {
	for _, in := range pr.threads[1:] {
		ptrace.Kill(in.Tid)
	}
	ptrace.Kill(pr.r.Pid)
}

// setsid makes the process a session leader if it was one, with its
// controlling terminal (a pty pair of the image, else the restorer's;
// fds makes the pairs). A process
// created by its parent's stub is already in its parent's session; the root
// is in rtcr's unless it leads its own.
func (pr *restoring) setsid(fds *files.Restorer) error {
	if pr.p.Sid != pr.p.Pid {
		return nil
	}
	if _, err := pr.r.Syscall(unix.SYS_SETSID); err != nil {
		return fmt.Errorf("setsid: %w", err)
	}
	if pr.p.Tty == 0 {
		return nil
	}
	// A pty pair of the tree: a new pair, made now so that the children
	// created after it share the controlling terminal.
	fd, err := fds.ControllingPty(pr.r, pr.p.FDs, pr.p.Tty)
	if err == nil {
		pr.ttyFd = fd
		return nil
	}
	if !errors.Is(err, files.ErrNoPty) {
		return err
	}
	// It had a controlling terminal: it gets the restorer's, which its
	// inherited fds 0-2 are (the stub holds the restorer's fds 0-2 now).
	// Without stealing it: a terminal that already controls a session
	// (the user's shell's) is refused rather than taken away.
	for fd := 0; fd <= 2; fd++ {
		if _, err := unix.IoctlGetTermios(fd, unix.TCGETS); err != nil {
			continue
		}
		if _, err := pr.r.Syscall(unix.SYS_IOCTL, uint64(fd), unix.TIOCSCTTY, 0); err != nil {
			return fmt.Errorf("set controlling terminal from fd %d (is it another session's?): %w", fd, err)
		}
		pr.ttyFd = fd
		return nil
	}
	return fmt.Errorf("it led a session with a controlling terminal: restore from a terminal (its fds 0-2 become the process's terminal)")
}

// setForeground gives the terminal of a session leader the foreground
// process group it had, once every group exists.
func (pr *restoring) setForeground() error {
	if pr.ttyFd < 0 || pr.p.TtyFg <= 0 {
		return nil
	}
	fg := int32(pr.p.TtyFg)
	addr, err := pr.r.Put(ptrace.ArgOff, ptrace.Bytes(&fg))
	if err != nil {
		return err
	}
	if _, err := pr.r.Syscall(unix.SYS_IOCTL, uint64(pr.ttyFd), unix.TIOCSPGRP, addr); err != nil {
		return fmt.Errorf("set foreground group %d: %w", fg, err)
	}
	return nil
}

// setpgid puts the process, a zombie too (it exits in its group), into
// its process group, once every process of the tree exists (group leaders
// come earlier in parent-first order, a ghost leader for a group whose
// leader was gone); root is the tree's root.
func (pr *restoring) setpgid(root *image.Process) error {
	p := pr.p
	if p.Sid == p.Pid {
		return nil // a session leader leads its group already
	}
	if p.Pgid == root.Pgid && root.Pgid != root.Pid {
		// The root's group was outside the tree (a shell job's): the
		// root and those in it with it keep the restorer's group.
		return nil
	}
	cur, err := pr.r.Syscall(unix.SYS_GETPGID, 0)
	if err != nil {
		return err
	}
	if int(cur) == p.Pgid {
		return nil
	}
	if _, err := pr.r.Syscall(unix.SYS_SETPGID, 0, uint64(p.Pgid)); err != nil {
		return fmt.Errorf("setpgid(0, %d): %w", p.Pgid, err)
	}
	return nil
}

// fillMemory gives a live process its memory: the files it maps are
// checked, the memfds and deleted files it is the first to hold made, and
// its mappings and pages restored. parent is the process whose stub forked
// it after its own fillMemory (nil for the root): see mem.Restore. A
// zombie stays empty.
func (pr *restoring) fillMemory(fds *files.Restorer, shared *mem.Shared, parent *image.Process) error {
	p, r := pr.p, pr.r
	if p.Zombie {
		return nil
	}
	logVMAs(pr.log, p)
	steps := []struct {
		name string
		f    func() error
	}{
		// Before the memory, which is charged to the cgroup it is
		// restored in.
		{"cgroups", func() error {
			var owner uint32
			if pr.as != nil {
				owner = pr.as.Fsuid
			}
			return attr.RestoreCgroups(r.Pid, p.Cgroups, owner)
		}},
		{"check mapped files", func() (err error) { pr.open, err = files.NewOpener(r, p, pr.as); return err }},
		{"memfds and deleted files", func() error { return fds.PrepareHomes(r, p, pr.as) }},
		{"memory", func() error {
			if pr.lazy {
				return mem.RestoreLazy(r, p, pr.pages, shared, pr.open.Open, parent)
			}
			return mem.Restore(r, p, pr.pages, shared, pr.open.Open, parent)
		}},
	}
	for _, s := range steps {
		if err := pr.step(s.name, s.f); err != nil {
			return err
		}
	}
	return nil
}

// fill gives a live process the rest of its state (its memory is in,
// fillMemory): mm, fds, attributes, signal actions, its other threads and
// their kernel state, pending signals. A zombie stays empty.
func (pr *restoring) fill(fds *files.Restorer) error {
	p, r := pr.p, pr.r
	if p.Zombie {
		return nil
	}
	logFDs(pr.log, p.Pid, p.FDs)
	open := pr.open
	steps := []struct {
		name string
		f    func() error
	}{
		{"mm and exe link", func() error { return mem.RestoreMM(r, p, open.Open) }},
		{"fds", func() error { return fds.Install(r, p.FDs, pr.as) }},
		{"attributes", func() error { return attr.Restore(r, p) }},
		{"removed working directory", func() error {
			if p.CwdDeleted == nil {
				return nil
			}
			return fds.ChdirDeleted(r, p.FDs, p.CwdDeleted, pr.as)
		}},
		{"signal actions", func() error { return sig.Restore(r, p.Sigactions) }},
		{"threads", func() error {
			for _, th := range p.Threads[1:] {
				in, err := task.CreateThread(r, th.Tid)
				if err != nil {
					return err
				}
				pr.threads = append(pr.threads, in)
				pr.log.Debug("thread created", "pid", p.Pid, "tid", th.Tid, "host_tid", in.Tid)
			}
			return nil
		}},
		{"thread state", func() error {
			for i, in := range pr.threads {
				th := &p.Threads[i]
				logThread(pr.log, p.Pid, th)
				if err := task.Restore(in, r, th); err != nil {
					return err
				}
				if err := task.RestoreRobust(in, th.Robust); err != nil {
					return err
				}
				if err := sig.RestorePending(in, r, in.Tid, th.Pending, false); err != nil {
					return err
				}
			}
			return sig.RestorePending(r.Injector, r, r.Pid, p.SharedPending, true)
		}},
	}
	for _, s := range steps {
		if err := pr.step(s.name, s.f); err != nil {
			return err
		}
	}
	return nil
}

// finish ends the injected part: a zombie exits with its status; a live
// process loses its scratch area (unmapped through the restored vdso) and
// gets its threads' registers.
func (pr *restoring) finish() error {
	p, r := pr.p, pr.r
	if p.Zombie {
		return pr.step("exit as a zombie", func() error { return stub.Exit(r, p.ExitStatus) })
	}
	// Every fd of the tree is in place: a lock is not dropped by a close.
	if err := pr.step("file locks", func() error { return files.RestoreLocks(r, p.FDs) }); err != nil {
		return err
	}
	// Every process and thread of the tree exists now: any can own an fd.
	if err := pr.step("fd owners", func() error { return files.RestoreOwners(r, p.FDs) }); err != nil {
		return err
	}
	// Timers start counting down here, as late as possible.
	if err := pr.step("timers", func() error { return timer.Restore(r, p.Itimers, p.PosixTimers) }); err != nil {
		return err
	}
	// Each thread's CPU affinity, scheduling state and I/O priority, set
	// from outside, then its timer slack and memory policy.
	if err := pr.step("scheduling", func() error {
		slack, err := attr.StubTimerSlack(r)
		if err != nil {
			return err
		}
		for i, in := range pr.threads {
			if err := attr.RestoreThread(in, r, &p.Threads[i], slack); err != nil {
				return err
			}
		}
		return attr.RestoreMDWE(r, p)
	}); err != nil {
		return err
	}
	// Seccomp while the stub is still root (installing a filter needs
	// CAP_SYS_ADMIN or no_new_privs, which the image may lack), with
	// seccomp suspended first in every thread, so that no filter or strict
	// mode applies to the calls injected after it: it takes effect at the
	// detach, which ends the suspension.
	if hasSeccomp(p) {
		if err := pr.step("seccomp", func() error {
			tids := make([]int, len(pr.threads))
			for i, in := range pr.threads {
				tids[i] = in.Tid
			}
			if err := cred.SuspendAll(tids, true); err != nil {
				return err
			}
			return cred.RestoreSeccomp(r, pr.threads, p)
		}); err != nil {
			return err
		}
	}
	// Credentials last: afterwards a thread may lack the privileges for
	// anything else. prctl state after them: changing ids resets it.
	if p.Creds != nil {
		if err := pr.step("credentials", func() error {
			for i, in := range pr.threads {
				c := p.Creds
				if p.Threads[i].Creds != nil {
					c = p.Threads[i].Creds // a thread with ids of its own
				}
				if err := cred.Restore(in, r, c); err != nil {
					return err
				}
			}
			return cred.RestorePrctl(r, p.Prctl)
		}); err != nil {
			return err
		}
	}
	if pr.lazy {
		if err := pr.step("parent-death signal held", func() error { return holdDeath(r) }); err != nil {
			return err
		}
	}
	if err := pr.step("remove scratch area", func() error { return dropScratch(r, p) }); err != nil {
		return err
	}
	return pr.step("registers", func() error {
		for i, in := range pr.threads {
			if err := task.SetCPU(in.Tid, &p.Threads[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

// hasSeccomp reports whether any thread of p is under seccomp.
func hasSeccomp(p *image.Process) bool {
	if len(p.SeccompFilters) > 0 {
		return true
	}
	for _, th := range p.Threads {
		if th.SeccompStrict {
			return true
		}
	}
	return false
}

// release detaches every thread; the process runs from here on.
func (pr *restoring) release() error {
	if pr.p.Zombie {
		return nil
	}
	return pr.step("detach", func() error {
		if pr.p.Stopped {
			// Stopped when checkpointed: it stops again as it runs.
			if err := unix.Kill(pr.r.Pid, unix.SIGSTOP); err != nil {
				return fmt.Errorf("stop again: %w", err)
			}
		}
		for _, in := range pr.threads {
			if err := ptrace.Detach(in.Tid); err != nil {
				return err
			}
		}
		return nil
	})
}

// dropScratch unmaps the stub's scratch area, injecting the munmap through
// the restored vdso's syscall instruction, or, for a process that had
// unmapped its vdso, one in its restored executable memory.
func dropScratch(r *ptrace.Remote, p *image.Process) error {
	if mem.VDSOStart(p) == 0 {
		addr, err := mem.FindSyscall(r.Pid, r.Scratch, r.Scratch+uint64(r.ScratchSize))
		if err != nil {
			return err
		}
		r.SyscallAddr = addr
	} else {
		off, err := mem.SyscallOffset(p.VDSO)
		if err != nil {
			return err
		}
		r.SyscallAddr = mem.VDSOStart(p) + uint64(off)
	}
	if _, err := r.Syscall(unix.SYS_MUNMAP, r.Scratch, uint64(r.ScratchSize)); err != nil {
		return fmt.Errorf("munmap %#x: %w", r.Scratch, err)
	}
	return nil
}
