package rtcr

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/lazy"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/stub"
	"golang.org/x/sys/unix"
)

// A child forked by a lazily restored process while pages are missing gets
// its own userfaultfd through the fork event (the server serves it), but
// neither the restored processes' parent-death signal (fork clears it) nor
// a keeper: the event names no pid. waitAllIn finds each such child among
// its parent's children once the fork is done and gives it a keeper of its
// own (stub.Keeper, as the restored processes have), which kills it if
// rtcr dies before every page is in and holds its userfaultfd until it has
// exited (README, Children forked meanwhile).

// forkState is what the tracer thread knows of the processes the server
// serves: host pids by userfaultfd id, and the forks not yet matched to a
// child.
type forkState struct {
	hosts map[int]int // userfaultfd id → host pid
	// hostFds are pidfds of the hosts (userfaultfd id → pidfd; l.pidfds'
	// and pidfds' own): a host's pid is read only while its pidfd says
	// it has not exited, else the pid may be an unrelated process's.
	hostFds map[int]int
	known   map[int]bool // host pids that are not an unmatched fork's child
	pending []lazy.Fork  // in the order the events were read
	pidfds  []int        // of the matched children, to kill them on failure
	// dropped are the parents (userfaultfd ids) of a fork dropped with
	// every page in, its child not found: that child is among their new
	// children, so the one-fork-one-kid shortcut is not for them.
	dropped map[int]bool
	scanned time.Time // the last look at every process (orphans)
	// spare is a keeper started ahead for the next child found (nil:
	// none, or it could not be started; a child then gets a new one).
	spare *stub.Spare
}

// How often the tracer thread looks for the child of a fork event while
// one is pending: every forkPollFast for forkFast after the event (the
// parent is finishing its fork: the child is there within microseconds
// unless the parent waits for a CPU), then every forkPoll.
const (
	forkPollFast = 100 * time.Microsecond
	forkFast     = 20 * time.Millisecond
	forkPoll     = 2 * time.Millisecond
)

// waitAllIn waits until every page is in (or the server failed), giving
// each child forked meanwhile a keeper (on the tracer thread: the keepers
// are its children, like the restored processes' keepers).
func (l *LazyRestore) waitAllIn(procs []*restoring) error {
	byPid := map[int]int{}
	for i, pr := range procs {
		l.forks.known[pr.r.Pid] = true
		if i < len(l.pidfds) {
			byPid[pr.r.Pid] = l.pidfds[i]
		}
	}
	for id, pid := range l.forks.hosts {
		if fd, ok := byPid[pid]; ok {
			l.forks.hostFds[id] = fd
		}
	}
	l.newSpare()
	for {
		var tick <-chan time.Time
		if p := l.forks.pending; len(p) > 0 {
			d := forkPoll
			if time.Since(p[len(p)-1].Read) < forkFast {
				d = forkPollFast
			}
			tick = time.After(d)
		}
		select {
		case <-l.srv.AllIn():
			return l.srv.Err()
		case <-l.srv.Forked():
			l.forks.pending = append(l.forks.pending, l.srv.TakeForks()...)
		case <-tick:
		}
		if err := l.matchForks(); err != nil {
			l.srv.Fail(err)
		}
		if len(l.forks.pending) == 0 && l.forks.spare == nil {
			l.newSpare()
		}
	}
}

// newSpare starts the spare keeper for the next child found (tried once
// per child: without one, the child gets a keeper started for it).
func (l *LazyRestore) newSpare() {
	sp, err := stub.NewSpare(l.scratch, l.elfBase)
	if err != nil {
		l.log.Warn("lazy restore: no spare keeper", "err", err)
		return
	}
	l.forks.spare = sp
}

// dropSpare ends the spare keeper, if any.
func (l *LazyRestore) dropSpare() {
	if l.forks.spare != nil {
		l.forks.spare.Kill()
		l.forks.spare = nil
	}
}

// matchForks matches the pending forks with the new children of their
// parents and starts a keeper for each child with pages still missing.
func (l *LazyRestore) matchForks() error {
	f := &l.forks
	// Every event read is pending before any child is looked at.
	f.pending = append(f.pending, l.srv.TakeForks()...)
	var left []lazy.Fork
	byParent := map[int][]lazy.Fork{}
	var parents []int
	for _, fk := range f.pending {
		if missing, gone := l.srv.Missing(fk.Child); gone || !missing {
			// Its child exited, or has every page: it needs no keeper
			// (a child of its own is then looked for among every
			// process, and if the restore fails it is killed with the
			// parent's other children: killUnfound).
			if !gone {
				if f.dropped == nil {
					f.dropped = map[int]bool{}
				}
				f.dropped[fk.Parent] = true
			}
			continue
		}
		// host 0: its parent is itself a child not found yet (or gone
		// before): looked for among every process.
		host, _ := f.host(fk.Parent)
		if byParent[host] == nil {
			parents = append(parents, host)
		}
		byParent[host] = append(byParent[host], fk)
	}
	for _, host := range parents {
		forks := byParent[host]
		var kids []int
		orphaned := host == 0 || gone(host)
		if !orphaned {
			var err error
			if kids, err = newChildren(host, f.known); err != nil {
				if orphaned = gone(host); !orphaned {
					return err
				}
			}
			if _, ok := f.host(forks[0].Parent); !ok {
				// It exited while its children were read: its pid
				// may be another process's by now.
				kids, orphaned = nil, true
			}
		}
		if orphaned {
			// The parent exited (a daemon's fork and exit, say) before
			// its child was seen, and the child was reparented; or the
			// parent is not found yet. Look for the child among every
			// process started since the fork, and tell it by its memory
			// only.
			kids = l.orphans(forks[0].Read)
		}
		kids = l.mapsLike(kids, forks)
		if len(kids) == 0 {
			left = append(left, forks...)
			continue
		}
		// A child seen may be of a fork whose event was read after
		// TakeForks above (the parent goes on once it is read): then
		// the one fork pending is not the one child's for sure.
		l.srv.Applied(forks[0].Parent)
		newer := l.srv.TakeForks()
		left = append(left, newer...)
		if len(forks) == 1 && len(kids) == 1 && !orphaned && len(newer) == 0 && !f.dropped[forks[0].Parent] {
			// The one fork under way and the one new child with its
			// memory: theirs.
			if err := l.keepChild(forks[0], kids[0]); err != nil {
				return err
			}
			continue
		}
		// Several forks at once (threads of one process), or a new child
		// no event read yet speaks of: tell them apart by their memory.
		for _, fk := range forks {
			kid, err := l.probeChild(fk, kids)
			if err != nil {
				return err
			}
			if kid == 0 {
				left = append(left, fk)
				continue
			}
			if err := l.keepChild(fk, kid); err != nil {
				return err
			}
			kids = slices.DeleteFunc(kids, func(k int) bool { return k == kid })
		}
	}
	f.pending = left
	return nil
}

// probeChild tells which of kids is the child of fork fk: it has the
// server bring in one of fk's missing pages and returns the one kid in
// whose memory that page appeared (pagemap), or 0 when that cannot be
// told yet (the page was there already, or appeared in several: try
// again, with another page).
func (l *LazyRestore) probeChild(fk lazy.Fork, kids []int) (int, error) {
	before := make([]bool, len(kids))
	addr, ok, err := l.srv.Probe(fk.Child, func(addr uint64) {
		for i, k := range kids {
			before[i] = present(k, addr)
		}
	})
	if err != nil || !ok {
		return 0, err
	}
	kid := 0
	for i, k := range kids {
		if !before[i] && present(k, addr) {
			if kid != 0 {
				return 0, nil
			}
			kid = k
		}
	}
	l.log.Debug("lazy restore: a forked child told apart by its memory", "kids", kids, "addr", fmt.Sprintf("%#x", addr), "child", kid)
	return kid, nil
}

// present reports whether the page at addr of process pid is in memory
// (or swapped out), from /proc/PID/pagemap.
func present(pid int, addr uint64) bool {
	pm, err := procfs.OpenPagemap(pid)
	if err != nil {
		return false
	}
	defer pm.Close()
	page := addr &^ (image.PageSize - 1)
	e, err := pm.Read(page, page+image.PageSize, nil)
	return err == nil && e[0]&(procfs.PM_PRESENT|procfs.PM_SWAP) != 0
}

// mapsLike returns the kids that have a mapping where one of forks still
// misses pages (/proc/PID/maps): a child of those forks has its parent's
// mappings; one that has exec'd since (or was spawned with vfork and
// exec'd: no fork event speaks of it) has not, and needs no keeper.
func (l *LazyRestore) mapsLike(kids []int, forks []lazy.Fork) []int {
	var ranges [][2]uint64
	for _, fk := range forks {
		if a, b, ok := l.srv.MissingRange(fk.Child); ok {
			ranges = append(ranges, [2]uint64{a, b})
		}
	}
	var out []int
	for _, k := range kids {
		if hasRange(k, ranges) {
			out = append(out, k)
		}
	}
	return out
}

// hasRange reports whether process pid has a mapping holding one of
// ranges whole.
func hasRange(pid int, ranges [][2]uint64) bool {
	maps, err := procfs.ReadMaps(pid)
	if err != nil {
		return false
	}
	for _, m := range maps {
		for _, r := range ranges {
			if m.Start <= r[0] && r[1] <= m.End {
				return true
			}
		}
	}
	return false
}

// keepChild records kid as the child of fork fk and starts its keeper.
func (l *LazyRestore) keepChild(fk lazy.Fork, kid int) error {
	f := &l.forks
	f.known[kid] = true
	// Its pidfd kills it should the restore fail (with all its pages
	// in too: the tree it belongs to is killed), and tells whether its
	// pid is still its own when its children are looked for.
	pidfd, err := unix.PidfdOpen(kid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil // exited already
		}
		return fmt.Errorf("lazy restore: child %d forked while pages were missing: pidfd_open: %w", kid, err)
	}
	f.pidfds = append(f.pidfds, pidfd)
	f.hosts[fk.Child] = kid
	f.hostFds[fk.Child] = pidfd
	if missing, _ := l.srv.Missing(fk.Child); !missing {
		return nil // every page is in: nothing to keep
	}
	found := time.Since(fk.Read)
	kpid, err := l.keeper(kid, fk.Fd)
	if err != nil {
		if gone(kid) {
			return nil
		}
		return fmt.Errorf("lazy restore: child %d forked while pages were missing: %w", kid, err)
	}
	l.keepers = append(l.keepers, kpid)
	// took: from the fork event to the keeper holding the child's
	// userfaultfd (the window of README, limits).
	logStep(l.log, kid, "keeper of a forked child", time.Since(fk.Read), "keeper", kpid, "found", found)
	return nil
}

// keeper starts the keeper of child kid, whose userfaultfd is fd: the
// spare if there is one (a few injected calls), else a new one (a stub
// exec).
func (l *LazyRestore) keeper(kid, fd int) (int, error) {
	if sp := l.forks.spare; sp != nil {
		l.forks.spare = nil
		kpid, err := sp.Keep(kid, fd)
		if err == nil {
			return kpid, nil
		}
		l.log.Warn("lazy restore: spare keeper", "pid", kid, "err", err)
	}
	return stub.Keeper(l.scratch, l.elfBase, kid, fd)
}

// killChildren kills the children forked while pages were missing that
// were found (the restore failed: they cannot go on either).
func (l *LazyRestore) killChildren() {
	for i := len(l.forks.pidfds) - 1; i >= 0; i-- {
		_ = unix.PidfdSendSignal(l.forks.pidfds[i], unix.SIGKILL, nil, 0)
	}
}

// killUnfound kills every child of the served processes that was
// neither restored nor found with a fork event, and theirs: those of a
// fork not matched yet, those dropped with every page in, those that
// exec'd (the restore failed: none can go on). It runs before their
// parents are killed: a child whose parent has died is reparented out of
// reach. Only hosts whose pidfd says they are still alive are looked at,
// and a child only while its pidfd and parent say it is that child: a
// reused pid is never taken for one of them.
func (l *LazyRestore) killUnfound() {
	f := &l.forks
	type proc struct{ pid, fd int }
	var queue []proc
	for id, pid := range f.hosts {
		if _, ok := f.host(id); ok {
			queue = append(queue, proc{pid, f.hostFds[id]})
		}
	}
	var found []int
	defer func() {
		for _, fd := range found {
			unix.Close(fd)
		}
	}()
	for len(queue) > 0 {
		h := queue[0]
		queue = queue[1:]
		kids, _ := newChildren(h.pid, f.known)
		for _, k := range kids {
			fd, err := unix.PidfdOpen(k, 0)
			if err != nil {
				continue
			}
			st, err := procfs.ReadStat(k)
			if err != nil || st.Ppid != h.pid || !alive(fd) || !alive(h.fd) {
				unix.Close(fd)
				continue
			}
			f.known[k] = true
			found = append(found, fd)
			queue = append(queue, proc{k, fd})
		}
	}
	for _, fd := range found {
		_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
	}
}

// host returns the pid of the process of userfaultfd id if it is still
// alive (its pidfd, a zombie too), and drops it when it is not: its pid
// may be another process's by now.
func (f *forkState) host(id int) (int, bool) {
	pid, ok := f.hosts[id]
	if !ok {
		return 0, false
	}
	if fd, ok := f.hostFds[id]; ok && alive(fd) {
		return pid, true
	}
	delete(f.hosts, id)
	delete(f.hostFds, id)
	return 0, false
}

// alive reports whether the process of pidfd fd has not been reaped
// (pidfd_send_signal with signal 0).
func alive(fd int) bool {
	return unix.PidfdSendSignal(fd, 0, nil, 0) == nil
}

// closeChildPidfds closes the children's pidfds.
func (l *LazyRestore) closeChildPidfds() {
	for _, fd := range l.forks.pidfds {
		unix.Close(fd)
	}
	l.forks.pidfds = nil
}

// newChildren returns the children of process host (of any of its
// threads) not in known, oldest first, but those that share its address
// space (vfork: no userfaultfd of their own).
func newChildren(host int, known map[int]bool) ([]int, error) {
	pids, err := procfs.ReadChildren(host)
	if err != nil {
		return nil, fmt.Errorf("children of %d: %w", host, err)
	}
	type kid struct {
		pid   int
		start uint64
	}
	var kids []kid
	for _, pid := range pids {
		if known[pid] {
			continue
		}
		st, err := procfs.ReadStat(pid)
		if err != nil {
			continue // gone already
		}
		if sameVM(host, pid) {
			continue // vfork: its parent's memory, until it execs
		}
		kids = append(kids, kid{pid, st.StartTime})
	}
	sort.Slice(kids, func(i, j int) bool {
		if kids[i].start != kids[j].start {
			return kids[i].start < kids[j].start
		}
		return kids[i].pid < kids[j].pid
	})
	out := make([]int, len(kids))
	for i, k := range kids {
		out[i] = k.pid
	}
	return out, nil
}

// orphans returns the processes not known, started since (or up to two
// clock ticks before) since: the candidates for the child of a fork whose
// parent has exited since, or is not found yet.
func (l *LazyRestore) orphans(since time.Time) []int {
	known := l.forks.known
	// At most one look every forkPoll: it reads every process's stat.
	if time.Since(l.forks.scanned) < forkPoll {
		return nil
	}
	l.forks.scanned = time.Now()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return nil
	}
	// /proc/PID/stat's start time: clock ticks (USER_HZ, 100) since boot.
	boot := time.Duration(ts.Nano()) - time.Since(since)
	from := uint64(max(boot/(10*time.Millisecond)-2, 0))
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || known[pid] {
			continue
		}
		st, err := procfs.ReadStat(pid)
		if err != nil || st.StartTime < from {
			continue
		}
		out = append(out, pid)
	}
	return out
}

// kcmpVM is KCMP_VM of kcmp(2): whether two processes share an address
// space.
const kcmpVM = 1

// sameVM reports whether processes a and b share their address space.
func sameVM(a, b int) bool {
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(a), uintptr(b), kcmpVM, 0, 0, 0)
	return errno == 0 && r == 0
}
