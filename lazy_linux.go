package rtcr

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/rtcr/rtcr/internal/cred"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/lazy"
	"github.com/rtcr/rtcr/internal/mem"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/stub"
	"golang.org/x/sys/unix"
)

// LazyRestore is a lazy restore whose processes run while their pages
// come in (RestoreOptions.Lazy).
type LazyRestore struct {
	srv     *lazy.Server
	log     *slog.Logger
	start   time.Time
	running chan struct{} // closed when the processes run
	done    chan struct{} // closed when rtcr has let go of them
	err     error
	allIn   time.Duration
	// scratch and elfBase place the keepers' stubs; keepers are their pids
	// (register, dropKeepers).
	scratch, elfBase uint64
	keepers          []int
	// pidfds name the processes from just before their release (while
	// traced, certainly alive), in the order of procs: once they ran, a
	// pid or thread id may be another process's. tailing says tail runs:
	// it kills them itself on failure.
	pidfds  []int
	tailing bool
	// forks are the children forked while pages were missing (waitAllIn).
	forks forkState
	// prep, when set, is the tracer thread to run on and the spare
	// keepers started before the image was complete (lazyPrep).
	prep *lazyPrep
}

// Progress reports how many of the pages left out are in.
func (l *LazyRestore) Progress() lazy.Progress { return l.srv.Progress() }

// Wait waits until every page is in and rtcr has let go of the
// processes, and returns how long that took from the start of the
// restore. An error means the pages could not all be brought in, or rtcr
// could not let go: the restored processes were killed.
func (l *LazyRestore) Wait() (time.Duration, error) {
	<-l.done
	return l.allIn, l.err
}

// newLazy checks that the image can be restored lazily and prepares the
// server: src, or the image's page files when nil.
func newLazy(c *image.Checkpoint, src lazy.Source, pages mem.PageFiles, checks pageChecks, log *slog.Logger, start time.Time) (*LazyRestore, error) {
	zombie := map[int]bool{}
	for i := range c.Processes {
		zombie[c.Processes[i].Pid] = c.Processes[i].Zombie
	}
	for i := range c.Processes {
		p := &c.Processes[i]
		// A live process below a zombie is reparented when the zombie is
		// made, out of the chain of parent-death signals that makes the
		// tree die with rtcr (see lazyTail); in a pid namespace its init
		// takes it, and takes it down.
		if !p.Zombie && zombie[p.Ppid] && !c.PidNS {
			return nil, fmt.Errorf("restore %d: --lazy: its parent %d is a zombie: it would outlive a killed rtcr with pages missing; restore without --lazy", p.Pid, p.Ppid)
		}
	}
	if src == nil {
		src = mem.NewPageSource(c.Processes, pages, checks.check)
	}
	srv, err := lazy.NewServer(src, log)
	if err != nil {
		return nil, err
	}
	return &LazyRestore{srv: srv, log: log, start: start, running: make(chan struct{}), done: make(chan struct{}),
		forks: forkState{hosts: map[int]int{}, hostFds: map[int]int{}, known: map[int]bool{}}}, nil
}

// register makes the userfaultfd of a restored process (in its stub,
// taken by rtcr and closed there), registers its lazy mappings and has
// the server serve them from now on. A process without lazy memory gets
// none.
func (l *LazyRestore) register(pr *restoring) error {
	tr := time.Now()
	vmas, runs := mem.LazyRanges(pr.p)
	if len(vmas) == 0 {
		return nil
	}
	t0 := time.Now()
	fd, err := lazy.Create(pr.r)
	if err != nil {
		return err
	}
	t1 := time.Now()
	for _, v := range vmas {
		if err := lazy.Register(fd, v[0], v[1]); err != nil {
			unix.Close(fd)
			return fmt.Errorf("userfaultfd of %d: %w", pr.r.Pid, err)
		}
	}
	// A keeper holds the userfaultfd until the process has exited: if
	// rtcr is killed, the kernel releases it (and unregisters the ranges,
	// so that a touch reads zeroes) only once the process is dead. Without
	// it, rtcr's exit closed its fds before its tracer thread's exit sent
	// the root its parent-death signal: a fault in between read a zero
	// page. The keeper also kills the process when rtcr dies (should it
	// have lost its parent-death signal meanwhile).
	t2 := time.Now()
	kpid, err := l.keeperOf(pr.r.Pid, fd)
	if err != nil {
		unix.Close(fd)
		return fmt.Errorf("userfaultfd of %d: %w", pr.r.Pid, err)
	}
	l.keepers = append(l.keepers, kpid)
	t3 := time.Now()
	proc := lazy.Proc{Pid: pr.p.Pid, Fd: fd}
	for _, r := range runs {
		proc.Runs = append(proc.Runs, lazy.Range{Start: r[0], End: r[1]})
	}
	l.forks.hosts[l.srv.Add(proc)] = pr.r.Pid
	if l.log != nil {
		l.log.Info("userfaultfd parts", "pid", pr.p.Pid, "lazyranges", t0.Sub(tr), "create", t1.Sub(t0), "register", t2.Sub(t1), "ranges", len(vmas),
			"keeper", t3.Sub(t2), "serve", time.Since(t3), "runs", len(runs))
	}
	return nil
}

// keeperOf starts the keeper of restored process pid, whose userfaultfd
// is fd: a spare started ahead if there is one (lazyPrep), else a new one.
func (l *LazyRestore) keeperOf(pid, fd int) (int, error) {
	if sp := l.prep.take(); sp != nil {
		kpid, err := sp.Keep(pid, fd)
		if err == nil {
			return kpid, nil
		}
		l.log.Warn("lazy restore: spare keeper", "pid", pid, "err", err)
	}
	return stub.Keeper(l.scratch, l.elfBase, pid, fd)
}

// holdDeath makes the process die when its parent does (SIGKILL), the
// last call injected before it runs: the root's parent is rtcr's tracer
// thread, which lives until every page is in; every other process's is
// its parent in the tree. So a killed rtcr takes the whole tree down
// before any process could read a missing page as zero (the kernel
// unregisters the ranges when rtcr's userfaultfds close). lazyTail puts
// the image's value back.
func holdDeath(r *ptrace.Remote) error {
	if _, err := r.Syscall(unix.SYS_PRCTL, unix.PR_SET_PDEATHSIG, uint64(unix.SIGKILL)); err != nil {
		return fmt.Errorf("prctl(PR_SET_PDEATHSIG, SIGKILL): %w", err)
	}
	return nil
}

// tail runs on the tracer thread once the processes run: it waits until
// every page is in (giving each child forked meanwhile a keeper), gives
// each live process its own parent-death signal again (frozen for one
// injected call), and closes the userfaultfds. On failure it kills them
// all, and the children found.
func (l *LazyRestore) tail(procs []*restoring) (err error) {
	l.tailing = true
	defer l.dropKeepers()
	defer l.srv.Close()
	defer func() {
		if err != nil {
			// SIGKILL through the pidfds takes each whole thread group;
			// the root, this thread's child, is reaped here.
			l.killUnfound()
			for i := len(l.pidfds) - 1; i >= 0; i-- {
				_ = unix.PidfdSendSignal(l.pidfds[i], unix.SIGKILL, nil, 0)
			}
			l.killChildren()
			ptrace.Kill(procs[0].r.Pid)
		}
		l.closePidfds()
		l.closeChildPidfds()
	}()
	if err := l.waitAllIn(procs); err != nil {
		return fmt.Errorf("lazy restore %d: %w (the restored processes were killed)", procs[0].p.Pid, err)
	}
	l.allIn = time.Since(l.start)
	for _, pr := range procs {
		if pr.p.Zombie {
			continue
		}
		t := time.Now()
		if err := letGo(pr); err != nil {
			return fmt.Errorf("lazy restore %s: every page is in, but its parent-death signal cannot be put back (it would die with rtcr): %w", pr.name(), err)
		}
		logStep(l.log, pr.p.Pid, "parent-death signal back", time.Since(t), "signal", pr.p.Prctl.PdeathSig)
	}
	return nil
}

// openPidfds takes a pidfd of each process of procs, still traced,
// before their release.
func (l *LazyRestore) openPidfds(procs []*restoring) error {
	for _, pr := range procs {
		fd, err := unix.PidfdOpen(pr.r.Pid, 0)
		if err != nil {
			return fmt.Errorf("lazy restore %s: pidfd_open: %w", pr.name(), err)
		}
		l.pidfds = append(l.pidfds, fd)
	}
	return nil
}

// closePidfds closes what openPidfds took.
func (l *LazyRestore) closePidfds() {
	for _, fd := range l.pidfds {
		unix.Close(fd)
	}
	l.pidfds = nil
}

// dropKeepers ends the keepers of the userfaultfds: every page is in and
// the processes were let go, or they were killed.
func (l *LazyRestore) dropKeepers() {
	l.dropSpare()
	for _, k := range l.keepers {
		if err := stub.KillKeeper(k); err != nil && l.log != nil {
			l.log.Warn("lazy restore: drop keeper", "err", err)
		}
	}
	l.keepers = nil
}

// letGo stops the leader of the running process pr and sets its
// parent-death signal to the image's value (one injected prctl; the other
// threads run on). A process that exits meanwhile is left alone, its exit
// status not taken: the root is a child of this thread, and its status
// belongs to whoever waits for it (stopLeader).
func letGo(pr *restoring) error {
	pid := pr.r.Pid
	ok, err := stopLeader(pid)
	if err != nil || !ok {
		return err
	}
	defer ptrace.Detach(pid)
	if hasSeccomp(pr.p) {
		if err := cred.SuspendAll([]int{pid}, false); err != nil {
			return err
		}
	}
	r, err := mem.OpenLive(pid)
	if err != nil {
		return err
	}
	_, err = r.Syscall(unix.SYS_PRCTL, unix.PR_SET_PDEATHSIG, uint64(pr.p.Prctl.PdeathSig))
	if cerr := r.CloseRemote(); err == nil {
		err = cerr
	}
	return err
}

// stopLeader seizes thread pid and waits for the stop PTRACE_INTERRUPT
// asks for (signals that come first are passed on, as ptrace.Freeze
// does); false when it exited first. Its exit is looked at with WNOWAIT,
// never reaped.
func stopLeader(pid int) (bool, error) {
	if gone(pid) {
		return false, nil
	}
	if err := ptrace.Seize(pid); err != nil {
		if gone(pid) || errors.Is(err, unix.ESRCH) {
			return false, nil
		}
		return false, err
	}
	for {
		if err := ptrace.Interrupt(pid); err != nil && !errors.Is(err, unix.ESRCH) {
			return false, err
		}
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WSTOPPED|unix.WALL|unix.WNOWAIT, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("wait for %d: %w", pid, err)
		}
		if code := info.Code; code != cldTrapped && code != cldStopped {
			return false, nil // exited: its status stays for its parent
		}
		// A stop: take it (a stopped tracee cannot exit but by SIGKILL).
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, unix.WALL|unix.WNOHANG, nil); err != nil {
			return false, fmt.Errorf("wait for %d: %w", pid, err)
		}
		if !ws.Stopped() {
			return false, nil
		}
		if ws>>16 == unix.PTRACE_EVENT_STOP {
			return true, nil
		}
		sig := int(ws.StopSignal())
		if ws>>16 != 0 {
			sig = 0 // a ptrace event, not a signal
		}
		if err := unix.PtraceCont(pid, sig); err != nil {
			return false, fmt.Errorf("resume %d: %w", pid, err)
		}
	}
}

// The si_code values of waitid for a stopped child (CLD_TRAPPED: a
// ptrace stop, CLD_STOPPED: a group stop).
const (
	cldTrapped = 4
	cldStopped = 5
)

// gone reports whether process pid has exited (or is a zombie).
func gone(pid int) bool {
	st, err := procfs.ReadStat(pid)
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) || err == nil && (st.State == 'Z' || st.State == 'X')
}

// run runs the restore tree (on a tracer thread, which goes on serving
// after the release) and returns once the processes run, or with the
// restore's error. closeImage is called once every page is in (or the
// serving failed); when the restore fails before the processes run, the
// image stays the caller's to close.
func (l *LazyRestore) run(tree func() error, closeImage func()) error {
	early := make(chan error, 1)
	runTree := ptrace.Run
	if l.prep != nil {
		runTree = l.prep.run
	}
	go func() {
		err := runTree(tree)
		select {
		case <-l.running:
			closeImage()
			l.err = err
			close(l.done)
		default:
			early <- err
		}
	}()
	select {
	case <-l.running:
		return nil
	case err := <-early:
		l.srv.Close()
		return err
	}
}

// pageChecks are the chunk verifiers of a lazy restore's page files, by
// pid and depth in the chain like mem.PageFiles (nil: verified already).
type pageChecks map[int][]*image.PageCheck

// openPages opens the page file of p, the image at depth of a chain of
// chainLen: for a lazy restore (opts.checks set) mapped without reading
// it, its verifier kept in opts.checks; otherwise read and verified.
func (opts RestoreOptions) openPages(d *image.Dir, p *image.Process, depth, chainLen int) ([]byte, func() error, error) {
	if opts.checks == nil {
		return d.OpenPages(p)
	}
	data, check, closePages, err := d.OpenPagesLazy(p)
	if err != nil {
		return nil, nil, err
	}
	if opts.checks[p.Pid] == nil {
		opts.checks[p.Pid] = make([]*image.PageCheck, chainLen+1)
	}
	opts.checks[p.Pid][depth] = check
	return data, closePages, nil
}

// check verifies the bytes [off, off+n) of the page file of pid at depth.
func (pc pageChecks) check(pid, depth int, off, n int64) error {
	if depth >= len(pc[pid]) {
		return nil
	}
	return pc[pid][depth].Check(off, n)
}

// checkEager verifies, before anything is restored, every page a lazy
// restore writes at once: the runs of the mappings that are not lazy.
func (pc pageChecks) checkEager(c *image.Checkpoint) error {
	for i := range c.Processes {
		p := &c.Processes[i]
		for j := range p.VMAs {
			v := &p.VMAs[j]
			runs := v.Pages
			if mem.Lazy(v) {
				runs = mem.LazyEagerRuns(p, v)
			}
			for _, r := range runs {
				if err := pc.check(r.Owner(p.Pid), r.Depth, r.FileOff, int64(r.Count*image.PageSize)); err != nil {
					return fmt.Errorf("restore %d: %w", p.Pid, err)
				}
			}
		}
	}
	return nil
}
