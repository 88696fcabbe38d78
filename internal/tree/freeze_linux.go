package tree

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"

	"github.com/rtcr/rtcr/internal/parallel"
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
	// Tracers holds the tracer thread of each live process: every ptrace
	// request about its threads goes through it (see On). Release and
	// Kill end them.
	Tracers map[int]*ptrace.Tracer
	// all lists every tracer once (a child attached by the kernel when
	// its parent forked shares its parent's).
	all []*ptrace.Tracer
	// ready holds tracer threads started before the freeze (or nil).
	ready *Tracers
}

// On runs fn on the tracer thread of live process pid.
func (f *Frozen) On(pid int, fn func() error) error {
	t := f.Tracers[pid]
	if t == nil {
		return fmt.Errorf("process %d is not frozen by rtcr", pid)
	}
	return t.Do(fn)
}

// Each runs fn for every pid of pids at once, each on its process's
// tracer thread, and returns the first error in the order of pids (nil if
// none). It returns once every fn has.
func (f *Frozen) Each(pids []int, fn func(pid int) error) error {
	return parallel.Each(pids, func(pid int) error {
		return f.On(pid, func() error { return fn(pid) })
	})
}

// Freeze stops the process root and all its descendants (FreezeTree with
// the tree as it is now).
func Freeze(root int) (*Frozen, error) {
	return FreezeTree(root, nil, nil)
}

// Tracers are tracer threads started before a freeze (StartTracers), for
// FreezeTree to take instead of starting its own: a new OS thread for
// each process of a tree costs milliseconds that need not be frozen time.
type Tracers struct {
	mu    sync.Mutex
	ready []*ptrace.Tracer
}

// StartTracers starts n tracer threads at once.
func StartTracers(n int) *Tracers {
	p := &Tracers{ready: make([]*ptrace.Tracer, n)}
	var wg sync.WaitGroup
	for i := range p.ready {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.ready[i] = ptrace.NewTracer()
		}()
	}
	wg.Wait()
	return p
}

// take returns a tracer thread not used yet, or nil.
func (p *Tracers) take() *ptrace.Tracer {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.ready)
	if n == 0 {
		return nil
	}
	t := p.ready[n-1]
	p.ready = p.ready[:n-1]
	return t
}

// Close ends the tracer threads no freeze took.
func (p *Tracers) Close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.ready {
		t.Close()
	}
	p.ready = nil
}

// FreezeTree stops the process root and all its descendants. listed is
// the tree as the caller last saw it running (nil: it is read here,
// Descendants); every process of it is seized and interrupted at once,
// each by its own tracer thread, instead of one level of the tree after
// the other. The list is only a guess, so once every process of it is
// stopped the tree is read again from the stopped processes, whose sets of
// children are final (a stopped process cannot fork): a child forked
// after the list was read is frozen in one more round (and so on until a
// round finds none), and a listed process that is no longer in the tree
// (its parent exited before it was frozen: it was reparented outside, or
// its pid was reused) is let go again. Order is the tree as found, parents
// first. ready, if not nil, holds tracer threads started beforehand, taken
// before new ones are started. On error every process frozen so far is
// released.
func FreezeTree(root int, listed []int, ready *Tracers) (_ *Frozen, err error) {
	f := &Frozen{Tids: map[int][]int{}, Zombies: map[int]bool{}, Stopped: map[int]bool{}, Tracers: map[int]*ptrace.Tracer{}, ready: ready}
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
	if listed == nil {
		if listed, err = Descendants(root); err != nil {
			return nil, fmt.Errorf("freeze %d: %w", root, err)
		}
	}
	guess := map[int]bool{root: true}
	first := []int{root}
	for _, pid := range listed {
		if !guess[pid] {
			guess[pid] = true
			first = append(first, pid)
		}
	}
	if err := f.add(first, root, guess); err != nil {
		return nil, err
	}
	for {
		var live []int
		for _, pid := range f.Order {
			if _, ok := f.Tids[pid]; ok {
				live = append(live, pid)
			}
		}
		children, err := StoppedChildren(live)
		if err != nil {
			return nil, err
		}
		order, fresh := f.walk(root, children)
		if len(fresh) == 0 {
			return f, f.keep(order)
		}
		if err := f.add(fresh, root, nil); err != nil {
			return nil, err
		}
	}
}

// walk returns the tree of root as children (of the frozen processes)
// shows it, parents first, as far as it is frozen, and the children in it
// that are not frozen yet.
func (f *Frozen) walk(root int, children map[int][]int) (order, fresh []int) {
	order = []int{root}
	seen := map[int]bool{root: true}
	for i := 0; i < len(order); i++ {
		for _, c := range children[order[i]] {
			if seen[c] {
				continue
			}
			seen[c] = true
			if _, frozen := f.Tids[c]; frozen || f.Zombies[c] {
				order = append(order, c)
			} else {
				fresh = append(fresh, c)
			}
		}
	}
	return order, fresh
}

// keep makes order the frozen tree: the processes frozen from the list
// that are not in it are released (and forgotten).
func (f *Frozen) keep(order []int) error {
	in := map[int]bool{}
	for _, pid := range order {
		in[pid] = true
	}
	var strays []int
	for _, pid := range f.Order {
		if in[pid] {
			continue
		}
		if _, ok := f.Tids[pid]; ok {
			strays = append(strays, pid)
		}
		delete(f.Zombies, pid)
	}
	err := f.Each(strays, func(pid int) error {
		if err := ptrace.Release(f.Tids[pid]); err != nil && !dead(pid) {
			return fmt.Errorf("release %d, no longer in the tree: %w", pid, err)
		}
		return nil
	})
	for _, pid := range strays {
		delete(f.Tids, pid)
		delete(f.Tracers, pid)
		delete(f.Stopped, pid)
	}
	f.Order = order
	return err
}

// frozenOne is the outcome of freezing one process.
type frozenOne struct {
	pid     int
	tids    []int // nil: a zombie or gone (see zombie)
	zombie  bool
	stopped bool
	tracer  *ptrace.Tracer
	err     error
}

// add freezes the processes pids at once, or records them as zombies, and
// appends them to f.Order in the order given. root must not have gone.
// guess, when not nil, is the list of the running tree pids come from:
// none of them can have been attached to rtcr by a fork (they all existed
// before anything was seized), and one whose parent is outside it is not
// in the tree any more: failing to freeze it is not an error.
func (f *Frozen) add(pids []int, root int, guess map[int]bool) error {
	outs := make([]frozenOne, len(pids))
	var wg sync.WaitGroup
	var mu sync.Mutex // f.all
	for i, pid := range pids {
		wg.Add(1)
		// Each tracer found or started (a new OS thread) beside the
		// others: one after the other, they took milliseconds each.
		go func() {
			defer wg.Done()
			o := &outs[i]
			*o = frozenOne{pid: pid, tracer: f.tracerFor(pid, guess == nil, &mu)}
			o.err = o.tracer.Do(func() error { return o.freeze(pid == root) })
			if o.err != nil && guess != nil && pid != root && !inTree(pid, guess) {
				o.err = nil // no longer in the tree: left out
			}
		}()
	}
	wg.Wait()
	var first error
	for _, o := range outs {
		switch {
		case o.tids != nil:
			f.Tids[o.pid] = o.tids
			f.Tracers[o.pid] = o.tracer
			f.Stopped[o.pid] = o.stopped
			f.Order = append(f.Order, o.pid)
		case o.zombie:
			f.Zombies[o.pid] = true
			f.Order = append(f.Order, o.pid)
		}
		if o.err != nil && first == nil {
			first = o.err
		}
	}
	return first
}

// inTree reports whether process pid still has its parent in tree.
func inTree(pid int, tree map[int]bool) bool {
	st, err := procfs.ReadStat(pid)
	return err == nil && tree[st.Ppid]
}

// tracerFor returns the tracer thread to freeze pid with: when forked
// (pid may be a child the kernel attached to rtcr as its parent, being
// frozen, forked), the one that already traces it, if any; else a new one.
// mu guards f.all.
func (f *Frozen) tracerFor(pid int, forked bool, mu *sync.Mutex) *ptrace.Tracer {
	if !forked {
		return f.newTracer(mu)
	}
	if st, err := procfs.ReadStatus(pid); err == nil && st.TracerPid != 0 {
		mu.Lock()
		for _, t := range f.all {
			if t.Tid() == st.TracerPid {
				mu.Unlock()
				return t
			}
		}
		mu.Unlock()
	}
	return f.newTracer(mu)
}

// newTracer takes a tracer thread started beforehand, or starts one, and
// records it in f.all (guarded by mu).
func (f *Frozen) newTracer(mu *sync.Mutex) *ptrace.Tracer {
	t := f.ready.take()
	if t == nil {
		t = ptrace.NewTracer()
	}
	mu.Lock()
	f.all = append(f.all, t)
	mu.Unlock()
	return t
}

// freeze freezes o.pid on its tracer thread, or records it as a zombie.
// first says o.pid is the root, which must not have gone.
func (o *frozenOne) freeze(first bool) error {
	pid := o.pid
	st, err := procfs.ReadStat(pid)
	if errors.Is(err, os.ErrNotExist) && !first {
		return nil // exited and reaped before its parent was frozen
	}
	if err == nil && st.State == 'Z' {
		if err := refuseExitedLeader(pid); err != nil {
			return err
		}
		// A zombie stays one: its parent is frozen and cannot reap it.
		o.zombie = true
		return nil
	}
	o.stopped = err == nil && st.State == 'T'
	tids, err := ptrace.Freeze(pid)
	if err != nil && !first {
		// A child may exit while rtcr freezes it: its parent is frozen,
		// so it is a zombie now (or gone, if reaped just before).
		st, serr := procfs.ReadStat(pid)
		switch {
		case errors.Is(serr, os.ErrNotExist):
			return nil
		case serr == nil && st.State == 'Z':
			o.zombie = true
			return nil
		}
	}
	if err != nil {
		return err
	}
	o.tids = tids
	return nil
}

// Release lets every frozen process run again, and ends the tracer
// threads. A process that died while frozen has nothing to let go: it is
// listed in f.Exited, not an error.
func (f *Frozen) Release() error {
	var live []int
	for _, pid := range f.Order {
		if _, ok := f.Tids[pid]; ok {
			live = append(live, pid)
		}
	}
	errs := make([]error, len(live))
	var mu sync.Mutex
	_ = f.Each(live, func(pid int) error {
		err := ptrace.Release(f.Tids[pid])
		if errors.Is(err, unix.ESRCH) && dead(pid) {
			mu.Lock()
			f.Exited = append(f.Exited, pid)
			mu.Unlock()
			return nil
		}
		for i := range live {
			if live[i] == pid {
				errs[i] = err
			}
		}
		return nil
	})
	slices.SortFunc(f.Exited, func(a, b int) int { return slices.Index(f.Order, a) - slices.Index(f.Order, b) })
	f.closeTracers()
	return errors.Join(errs...)
}

// closeTracers ends every tracer thread.
func (f *Frozen) closeTracers() {
	for _, t := range f.all {
		t.Close()
	}
	f.all, f.Tracers = nil, map[int]*ptrace.Tracer{}
}

// dead reports whether process pid is gone or a zombie.
func dead(pid int) bool {
	st, err := procfs.ReadStat(pid)
	return err != nil || st.State == 'Z' || st.State == 'X'
}

// Kill kills every frozen process (SendKill) and collects their deaths
// (Reap).
func (f *Frozen) Kill() {
	f.SendKill()
	f.Reap()
}

// SendKill sends SIGKILL to every frozen process.
func (f *Frozen) SendKill() {
	for _, pid := range f.Order {
		if _, ok := f.Tids[pid]; ok {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// Reap collects, as their tracer, the death of each thread of the killed
// processes (a leader is reported after its other threads), so that their
// parents (or init) can reap them. Children are collected before parents:
// the dying init of a pid namespace waits until every other process of it
// is gone. Then it ends the tracer threads.
func (f *Frozen) Reap() {
	// Any thread of rtcr may wait for a tracee of another (no
	// __WNOTHREAD), so this needs no tracer thread.
	for i := len(f.Order) - 1; i >= 0; i-- {
		pid := f.Order[i]
		tids := f.Tids[pid]
		for i := len(tids) - 1; i >= 0; i-- {
			_, _ = ptrace.Wait(tids[i])
		}
	}
	f.closeTracers()
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
