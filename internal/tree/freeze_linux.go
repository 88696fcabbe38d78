package tree

import (
	"errors"
	"fmt"
	"os"

	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// Frozen is a process tree whose every process is stopped by rtcr.
type Frozen struct {
	// Order lists the pids parent-first (breadth first from the root),
	// zombies included.
	Order []int
	// Tids holds the stopped threads of each live process, leader first.
	Tids map[int][]int
	// Zombies are children that had exited but were not reaped; they
	// cannot be stopped and need not be: their parents are.
	Zombies map[int]bool
	// Stopped are the processes that were stopped (SIGSTOP, SIGTSTP …)
	// before rtcr froze them.
	Stopped map[int]bool
	// Exited are the processes Release found dead: killed (SIGKILL
	// reaches a frozen process) after they were frozen.
	Exited []int
}

// Freeze stops the process root and, top-down, all its descendants. A
// stopped process cannot fork, so once a process is frozen its set of
// children is final; the tree is re-scanned until a pass finds no new
// child. On error every process frozen so far is released.
func Freeze(root int) (_ *Frozen, err error) {
	f := &Frozen{Tids: map[int][]int{}, Zombies: map[int]bool{}, Stopped: map[int]bool{}}
	defer func() {
		if err != nil {
			_ = f.Release()
		}
	}()
	st, err := procfs.ReadStat(root)
	if err != nil {
		return nil, fmt.Errorf("freeze %d: %w", root, err)
	}
	if st.State == 'Z' {
		if err := refuseExitedLeader(root); err != nil {
			return nil, fmt.Errorf("freeze %d: %w", root, err)
		}
		return nil, fmt.Errorf("freeze %d: the process is a zombie", root)
	}
	if err := f.add(root); err != nil {
		return nil, err
	}
	for {
		children, err := ChildMap()
		if err != nil {
			return nil, err
		}
		added := false
		for i := 0; i < len(f.Order); i++ {
			for _, c := range children[f.Order[i]] {
				if _, seen := f.Tids[c]; seen || f.Zombies[c] {
					continue
				}
				if err := f.add(c); err != nil {
					return nil, err
				}
				added = true
			}
		}
		if !added {
			return f, nil
		}
	}
}

// add freezes pid, or records it as a zombie.
func (f *Frozen) add(pid int) error {
	st, err := procfs.ReadStat(pid)
	if errors.Is(err, os.ErrNotExist) && len(f.Order) > 0 {
		return nil // exited and reaped before its parent was frozen
	}
	if err == nil && st.State == 'Z' {
		if err := refuseExitedLeader(pid); err != nil {
			return err
		}
		// A zombie stays one: its parent is frozen and cannot reap it.
		f.Zombies[pid] = true
		f.Order = append(f.Order, pid)
		return nil
	}
	if err == nil && st.State == 'T' {
		f.Stopped[pid] = true
	}
	tids, err := ptrace.Freeze(pid)
	if err != nil && len(f.Order) > 0 {
		// A child may exit while rtcr freezes it: its parent is frozen,
		// so it is a zombie now (or gone, if reaped just before).
		st, serr := procfs.ReadStat(pid)
		switch {
		case errors.Is(serr, os.ErrNotExist):
			return nil
		case serr == nil && st.State == 'Z':
			f.Zombies[pid] = true
			f.Order = append(f.Order, pid)
			return nil
		}
	}
	if err != nil {
		return err
	}
	f.Tids[pid] = tids
	f.Order = append(f.Order, pid)
	return nil
}

// Release lets every frozen process run again. A process that died while
// frozen has nothing to let go: it is listed in f.Exited, not an error.
func (f *Frozen) Release() error {
	var errs []error
	for _, pid := range f.Order {
		if tids, ok := f.Tids[pid]; ok {
			err := ptrace.Release(tids)
			if errors.Is(err, unix.ESRCH) && dead(pid) {
				f.Exited = append(f.Exited, pid)
				continue
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// dead reports whether process pid is gone or a zombie.
func dead(pid int) bool {
	st, err := procfs.ReadStat(pid)
	return err != nil || st.State == 'Z' || st.State == 'X'
}

// Kill kills every frozen process and collects, as their tracer, the
// death of each thread (a leader is reported after its other threads), so
// that their parents (or init) can reap them. Children are collected
// before parents: the dying init of a pid namespace waits until every
// other process of it is gone.
func (f *Frozen) Kill() {
	for _, pid := range f.Order {
		if _, ok := f.Tids[pid]; ok {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
	for i := len(f.Order) - 1; i >= 0; i-- {
		pid := f.Order[i]
		tids := f.Tids[pid]
		for i := len(tids) - 1; i >= 0; i-- {
			_, _ = ptrace.Wait(tids[i])
		}
	}
}

// refuseExitedLeader refuses process pid, whose leader thread is a zombie,
// when other threads of it still run: the leader exited on its own
// (pthread_exit, or SYS_exit) and its threads went on. Such a process
// looks like a zombie, but it is not one, and it cannot be seized or read
// through its leader. Nothing is stopped or killed yet when it refuses.
func refuseExitedLeader(pid int) error {
	tids, err := procfs.ListTasks(pid)
	if err != nil {
		return nil // reaped meanwhile: a zombie, or gone
	}
	var live []int
	for _, tid := range tids {
		if st, err := procfs.ReadStat(tid); err == nil && st.State != 'Z' && st.State != 'X' {
			live = append(live, tid)
		}
	}
	if len(live) == 0 {
		return nil
	}
	return fmt.Errorf("process %d: its leader thread exited (pthread_exit) while threads %v run: %w", pid, live, ErrUnsupported)
}
