package rtcr

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/rtcr/rtcr/internal/clock"
	"github.com/rtcr/rtcr/internal/cred"
	"github.com/rtcr/rtcr/internal/files"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/mem"
	"github.com/rtcr/rtcr/internal/parallel"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/run"
	"github.com/rtcr/rtcr/internal/tree"
	"golang.org/x/sys/unix"
)

// dumpStageHook, when set (by tests), runs once Dump has opened and
// locked the image directory dir, before anything is written into it.
var dumpStageHook func(dir string)

// preFreezeHook, when set (by tests), runs after an increment read
// /proc/PID/smaps of the tree's root before the freeze (mem.PreRead),
// before it freezes the tree.
var preFreezeHook func(pid int)

// dumpMemoryHook, when set (by tests), runs after the memory of each
// process was copied; an error fails the dump there.
var dumpMemoryHook func(pid int) error

// Dump checkpoints process opts.Pid into opts.Dir. Whatever fails, and
// whenever ctx is cancelled, the target is released running as before;
// it is killed only when the image is complete and LeaveRunning is false.
func Dump(ctx context.Context, opts DumpOptions) (*DumpStats, error) {
	start := time.Now()
	if opts.Pid <= 0 {
		return nil, fmt.Errorf("dump: invalid pid %d", opts.Pid)
	}
	if opts.Pid == os.Getpid() {
		return nil, fmt.Errorf("dump: pid %d is rtcr itself", opts.Pid)
	}
	if _, err := procfs.ReadStat(opts.Pid); err != nil {
		return nil, fmt.Errorf("dump %d: no such process: %w", opts.Pid, err)
	}
	if err := refuseAncestor(opts.Pid); err != nil {
		return nil, err
	}
	tr, err := openParent(opts)
	if err != nil {
		return nil, err
	}
	// The image is written in place under a new generation; the previous
	// image stays until the manifest commits this one (image.Stage).
	stage, err := image.NewStage(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("dump %d: %w", opts.Pid, err)
	}
	opts.Dir = stage.Dir
	stage.NoSync = opts.temporary
	if dumpStageHook != nil {
		dumpStageHook(stage.Dir)
	}
	stats := &DumpStats{}
	log := logger(opts.Logger)
	log.Info("dump", "pid", opts.Pid, "dir", opts.Dir, "leave_running", opts.LeaveRunning)
	if tr.pre, err = startPrecopy(ctx, log, opts, stage, tr); err != nil {
		stage.Abort()
		return nil, err
	}
	var leftRunning *image.Checkpoint
	var later laterPages
	err = ptrace.Run(func() error { return dumpFrozen(ctx, opts, stage, stats, tr, &leftRunning, &later) })
	err = later.finish(log, opts.Pid, leftRunning, err)
	if err == nil && leftRunning != nil {
		recordBudget(leftRunning, opts, stats, tr, stats.Freeze)
		err = commitManifest(log, stage, leftRunning, opts.Pid, stats.Freeze)
	}
	tr.pre.close() // before the stage lets go of the directory
	stats.Total = time.Since(start)
	if err != nil {
		_ = tr.finish(false, "")
		if stage.Abort() {
			return nil, fmt.Errorf("%w (the new image in %s is complete)", err, stage.Dir)
		}
		return nil, err
	}
	if err := stage.Commit(); err != nil {
		_ = tr.finish(false, "")
		return nil, fmt.Errorf("dump %d: the image is complete in %s: %w", opts.Pid, stage.Dir, err)
	}
	if err := tr.finish(true, stage.Dir); err != nil {
		return nil, fmt.Errorf("dump %d: the image is complete in %s, but tracking cannot go on: %w", opts.Pid, stage.Dir, err)
	}
	log.Info("dump done", "pid", opts.Pid, "took", stats.Total.Round(time.Microsecond), "frozen", stats.Freeze.Round(time.Microsecond), "bytes", stats.PageBytes)
	return stats, nil
}

// dumpFrozen freezes the target and its descendants, collects and writes
// the image, then releases or kills them. Each process is traced by a
// tracer thread of its own (tree.Frozen.Tracers).
// Every file is written through stage (into the directory it opened), page
// files named after its generation.
//
// With opts.LeaveRunning the manifest is not written: the checkpoint is
// returned in *out, to commit once the tree runs (commitManifest).
func dumpFrozen(ctx context.Context, opts DumpOptions, stage *image.Stage, stats *DumpStats, tr *tracking, out **image.Checkpoint, later *laterPages) (err error) {
	root, nested, err := tree.Root(opts.Pid)
	if err != nil {
		return fmt.Errorf("dump %d: %w", opts.Pid, err)
	}
	if nested {
		exe, err := procfs.ReadExe(root)
		if err != nil {
			return fmt.Errorf("dump %d: the init %d of its pid namespace is exiting or gone: %w", opts.Pid, root, err)
		}
		if !run.IsInit(exe) {
			return fmt.Errorf("dump %d: a pid namespace not made by rtcr run (its init %d is %q): %w", opts.Pid, root, exe, tree.ErrUnsupported)
		}
	}
	log := logger(opts.Logger)
	// The copy buffers, ready before the freeze (mem/buffers_linux.go).
	mem.PrepareBuffers(2)
	if tr.parent != nil {
		// The increment's page runs name every run of the chain again,
		// plus what was written since and what the pre-copy rounds
		// copied (three times: cut, cutting, merged): room for them now,
		// not in the freeze (mem/runarena_linux.go).
		n, p := tr.parent.PageRunCount(), tr.pre.runCount()
		mem.PrepareRuns(n + n/4 + 3*p + 4096)
	}
	// An increment's freeze copies little, a post-copy migration's none of
	// the private memory: smaps' page walk would be most of its memory
	// step. Read it now; the freeze checks it is still true
	// (mem/preread_linux.go).
	if tr.parent != nil || tr.pre != nil || opts.postCopy != nil {
		start := time.Now()
		pre := mem.PreReadTree(root)
		took := time.Since(start)
		defer func() {
			logStep(log, root, "smaps before the freeze", took, "processes", len(pre),
				"used", pre.Count("used"), "known", pre.Count("known"), "stale", pre.Count("stale"),
				"unavailable", pre.Count("unavailable"))
			pre.Drop()
		}()
		if preFreezeHook != nil {
			preFreezeHook(root)
		}
	}
	// The drain table goes last, once the tree is released or killed
	// (a killed tree's listeners stay behind the network lock).
	f, drain, err := freezeDrained(ctx, log, root, stage.Gen)
	defer func() {
		if derr := drain.remove(log, root); derr != nil && err == nil {
			err = fmt.Errorf("dump %d: %w", opts.Pid, derr)
		}
	}()
	if err != nil {
		return fmt.Errorf("dump %d: %w", opts.Pid, err)
	}
	frozenAt := drain.frozenAt
	logStep(log, root, "freeze", time.Since(frozenAt), "processes", len(f.Order), "threads", threadCount(f), "zombies", len(f.Zombies))
	// The checks before anything is injected, logged as one step.
	checksStart := time.Now()
	kill := false
	var fds *files.Tree
	defer func() {
		if err != nil {
			log.Error("dump failed, releasing the tree", "pid", opts.Pid, "err", err)
		}
		released := time.Now()
		// TCP connections leave repair mode and the network lock goes
		// before a tree runs on; a killed tree's connections close in
		// repair mode once the kill is done, and the lock stays.
		if !kill && fds != nil {
			if nerr := opts.postCopy.release(fds); nerr != nil && err == nil {
				err = fmt.Errorf("dump %d: %w", opts.Pid, nerr)
			}
		}
		if kill {
			// Stopped until the SIGKILLs are sent, as CRIU counts it;
			// collecting the deaths comes after. A migration's dying
			// tree gives way to its copy until that runs (idleThreads).
			if opts.killed != nil && opts.killFrozen && armExitKill(f, log, root) {
				// Stopped for good: rtcr lets go of it no more, and its
				// death (rtcr's too) kills it.
				stats.Freeze = time.Since(frozenAt)
				opts.killed()
				f.SendKill()
			} else {
				restorePrio := func() {}
				if opts.killed != nil {
					restorePrio = idleThreads(f.Tids)
				}
				f.SendKill()
				stats.Freeze = time.Since(frozenAt)
				if opts.killed != nil {
					opts.killed() // no code of the tree runs any more
					restorePrio()
				}
			}
			f.Reap()
			if nerr := fds.ReleaseNetwork(true); nerr != nil && err == nil {
				err = fmt.Errorf("dump %d: %w", opts.Pid, nerr)
			}
		} else if rerr := f.Release(); rerr != nil && err == nil {
			err = fmt.Errorf("dump %d: release: %w", opts.Pid, rerr)
		}
		logStep(log, root, "release", time.Since(released), "kill", kill)
		stats.Exited = f.Exited // killed while frozen: nothing to release
		if !kill {
			stats.Freeze = time.Since(frozenAt)
		}
	}()
	c := newCheckpoint()
	if nested {
		c.PidNS = true
		if c.Clocks, err = clock.Read(root); err != nil {
			return fmt.Errorf("dump %d: %w", opts.Pid, err)
		}
	}
	var live []int
	seccomp := map[int]*cred.Seccomp{}
	for _, pid := range f.Order {
		if !f.Zombies[pid] {
			live = append(live, pid)
		}
	}
	if fds, err = dumpChecks(f, live, nested); err != nil {
		return fmt.Errorf("dump %d: %w", opts.Pid, err)
	}
	if err := tr.load(opts.Pid, root, live, fds); err != nil {
		return err
	}
	tr.link(c, opts)
	stats.Parent = tr.parentDir
	if tr.parent != nil {
		log.Info("incremental", "pid", opts.Pid, "parent", tr.parentDir, "chain", c.ChainLen, "tracked", tr.trackSummary())
	}
	lockStart := time.Now()
	lock, err := fds.LockNetwork(live, image.NetLockName(stage.Gen))
	if err != nil {
		return fmt.Errorf("dump %d: %w", opts.Pid, err)
	}
	if lock != "" {
		logStep(log, root, "network lock", time.Since(lockStart), "table", "inet "+lock)
		if !opts.LeaveRunning {
			c.NetLock = lock
		}
	}
	// What must be read from inside, every process at once, each on its
	// own tracer thread; meanwhile, one process after the other as their
	// injections end, the fds (one index for the tree) and the memory
	// (one record of shared memory; the scratch area is gone by then).
	procs := make(map[int]*image.Process, len(live))
	injected := make(map[int]chan error, len(live))
	for _, pid := range live {
		procs[pid] = &image.Process{Pid: pid}
		injected[pid] = make(chan error, 1)
	}
	injectStart := time.Now()
	logStep(log, root, "checks", injectStart.Sub(checksStart), "processes", len(live))
	// At most injectWindow processes at once, in tree order: the reads
	// below wait for each process in that order, and tracer threads of
	// every process at once would take the CPUs from them.
	width := injectWindow()
	window := make(map[int]chan struct{}, len(live))
	next := make(map[int]int, len(live)) // whose window a process opens when done
	for i, pid := range live {
		window[pid] = make(chan struct{})
		if i < width {
			close(window[pid])
		}
		if i+width < len(live) {
			next[pid] = live[i+width]
		}
	}
	var seccompMu sync.Mutex
	injectOne := func(pid int) error {
		// Before anything is injected: under seccomp, the injected
		// calls need it suspended.
		sc, err := cred.DumpSeccomp(pid, f.Tids[pid])
		if err == nil && sc != nil {
			if err = cred.SuspendAll(f.Tids[pid], false); err != nil {
				err = fmt.Errorf("process %d is under seccomp: %w", pid, err)
			}
			seccompMu.Lock()
			seccomp[pid] = sc
			seccompMu.Unlock()
		}
		if err == nil {
			inject := func(r *ptrace.Remote) error { return tr.inject(r, pid) }
			err = collectInside(ctx, log, procs[pid], f.Tids[pid], sc != nil, inject)
		}
		if err != nil {
			err = fmt.Errorf("dump %s: %w", tree.Name(pid, nested), err)
		}
		injected[pid] <- err
		return err
	}
	all := make(chan error, 1)
	go func() {
		// The window is waited for before the tracer thread is taken,
		// not on it: a child attached when its parent forked shares its
		// parent's thread, which must not block on a later process.
		all <- parallel.Each(live, func(pid int) error {
			<-window[pid]
			if n, ok := next[pid]; ok {
				defer close(window[n])
			}
			ran := false
			err := f.On(pid, func() error { ran = true; return injectOne(pid) })
			if !ran {
				injected[pid] <- fmt.Errorf("dump %s: %w", tree.Name(pid, nested), err)
			}
			return err
		})
	}()
	// Whatever returns below, the release (deferred above, so run after
	// this) waits until every process is out of its injection.
	defer func() {
		if all != nil {
			<-all
		}
	}()
	shared := mem.NewShared()
	shared.DumpFile = fds.DumpMapped
	// The live processes dumped so far (parents come first): a child's
	// pages still shared with its parent are recorded as the parent's.
	dumped := map[int]*mem.Forked{}
	for _, pid := range f.Order {
		p := image.Process{Pid: pid}
		if ch := injected[pid]; ch != nil {
			if err := <-ch; err != nil {
				return err
			}
			p = *procs[pid]
		}
		if tr.arm {
			if err := tr.armMemory(log, pid, f.Zombies[pid]); err != nil {
				return fmt.Errorf("dump %s: %w", tree.Name(pid, nested), err)
			}
			continue
		}
		p.Stopped = f.Stopped[pid]
		if err := collectTree(&p, f.Zombies[pid]); err != nil {
			return fmt.Errorf("dump %s: %w", tree.Name(pid, nested), err)
		}
		if !p.Zombie {
			tr.skipOwn(pid, fds)
			if err := collectFiles(log, &p, fds); err != nil {
				return fmt.Errorf("dump %s: %w", tree.Name(pid, nested), err)
			}
			seccompMu.Lock()
			sc := seccomp[pid]
			seccompMu.Unlock()
			if sc != nil {
				p.SeccompFilters = sc.Filters
				for i := range p.Threads {
					p.Threads[i].SeccompStrict = sc.Strict[p.Threads[i].Tid]
				}
			}
			memStart := time.Now()
			ipid, err := imagePid(pid, nested)
			if err != nil {
				return fmt.Errorf("dump %s: %w", tree.Name(pid, nested), err)
			}
			inc, err := tr.memIncr(pid, ipid)
			if err != nil {
				return fmt.Errorf("dump %s: %w", tree.Name(pid, nested), err)
			}
			if !opts.LeaveRunning || opts.Handoff != nil {
				later = nil // the image is complete before the release
			}
			if err := writePages(ctx, stage, &p, shared, inc, dumped[p.Ppid], tr.pre, later.at(len(c.Processes)), opts.postCopy != nil); err != nil {
				return fmt.Errorf("dump %s: %w", tree.Name(pid, nested), err)
			}
			if dumpMemoryHook != nil {
				if err := dumpMemoryHook(pid); err != nil {
					return fmt.Errorf("dump %s: %w", tree.Name(pid, nested), err)
				}
			}
			if n := tr.protect(log, pid); n > 0 {
				logStep(log, pid, "tracking", 0, "untracked_mappings", n)
			}
			p.MapFiles = shared.MapFiles(pid)
			dumped[pid] = &mem.Forked{Pid: pid, ImagePid: ipid, VMAs: p.VMAs}
			stats.MemoryTime += time.Since(memStart)
			logStep(log, pid, "memory", time.Since(memStart), "bytes", p.PageFileSize, "pages", p.PageFileSize/image.PageSize, "vmas", len(p.VMAs))
			logVMAs(log, &p)
			stats.PageBytes += p.PageFileSize
			_, older := image.PageCounts(&p)
			stats.ParentPages += int64(older)
		}
		c.Processes = append(c.Processes, p)
	}
	if err := <-all; err != nil {
		return err
	}
	all = nil
	logStep(log, root, "injected state", time.Since(injectStart), "processes", len(live))
	if tr.arm {
		return nil // tracking armed: released, nothing written
	}
	if c.SysVShm, err = shared.SysV(); err != nil {
		return fmt.Errorf("dump %d: %w", opts.Pid, err)
	}
	hosts := opts.postCopy.hostPids(c)
	if nested {
		if err := toNamespaceIDs(c, f); err != nil {
			return fmt.Errorf("dump %d: %w", opts.Pid, err)
		}
	}
	opts.postCopy.record(c, hosts)
	// The layout restore will need, checked while the tree still runs.
	var nodes []tree.Node
	for _, p := range c.Processes {
		nodes = append(nodes, tree.Node{Pid: p.Pid, Ppid: p.Ppid, Pgid: p.Pgid, Sid: p.Sid})
	}
	if _, err := tree.Plan(nodes); err != nil {
		return fmt.Errorf("dump %d: %w", opts.Pid, err)
	}
	if !nested {
		if err := checkGhostsGone(nodes); err != nil {
			return fmt.Errorf("dump %d: %w", opts.Pid, err)
		}
	}
	if opts.LeaveRunning && opts.Handoff == nil {
		// Nothing of the manifest needs the tree stopped: it is
		// checked and written once the tree runs again (commitManifest),
		// with the freeze as it ended. (A handoff needs the image
		// complete while the tree is still frozen.)
		*out = c
		return nil
	}
	if !opts.LeaveRunning {
		// Before the commit: the kill must close the connections
		// without a packet (repair mode), and a failure here still
		// leaves the tree running.
		if err := fds.RepairForKill(); err != nil {
			return fmt.Errorf("dump %d: %w", opts.Pid, err)
		}
	}
	freeze := time.Since(frozenAt)
	recordBudget(c, opts, stats, tr, freeze)
	if err := commitManifest(log, stage, c, opts.Pid, freeze); err != nil {
		return err
	}
	if opts.committed != nil {
		opts.committed(c)
	}
	if opts.Handoff != nil {
		// Still frozen: the image is complete; whoever takes it over
		// decides whether the tree dies (nil) or runs on (an error).
		handoff := time.Now()
		if err := opts.Handoff(stage.Dir); err != nil {
			return fmt.Errorf("dump %d: handoff: %w", opts.Pid, err)
		}
		logStep(log, root, "handoff", time.Since(handoff))
	}
	kill = !opts.LeaveRunning
	return nil
}

// injectWindow is how many processes of a tree are injected into at once:
// one per CPU (at least 2).
func injectWindow() int { return max(2, runtime.NumCPU()) }

// writePages copies the memory of p into its page file of the stage's
// generation, on from where its pre-copy rounds left it (if any); forked
// is its parent's record of pages it may share copy-on-write.
// With later (a dump that leaves the tree running), the writes may go on
// after the release (laterPages). With remote (post-copy), private
// anonymous memory is recorded, not copied.
func writePages(ctx context.Context, stage *image.Stage, p *image.Process, shared *mem.Shared, inc *mem.Incr, forked *mem.Forked, pre *precopy, later *laterPage, remote bool) error {
	p.PageFile = image.PageFileName(stage.Gen, p.Pid)
	if remote {
		return stage.WriteFile(p.PageFile, func(w io.Writer) error {
			pw := image.NewPageWriter(&ctxWriter{ctx: ctx, w: w})
			vmas, vdso, err := mem.DumpRemote(p.Pid, pw, shared)
			if err != nil {
				return err
			}
			p.VMAs, p.VDSO = vmas, vdso
			p.PageFileSize, p.PageChecksums = pw.Offset(), pw.Checksums()
			return nil
		})
	}
	if pw, f := pre.pageFile(p.Pid); pw != nil {
		vmas, vdso, err := mem.Dump(p.Pid, pw, shared, inc, forked)
		if err != nil {
			return err
		}
		p.VMAs, p.VDSO = vmas, vdso
		p.PageFileSize, p.PageChecksums = pw.Offset(), pw.Checksums()
		return f.Finish()
	}
	if later != nil {
		return later.write(ctx, stage, p, shared, inc, forked)
	}
	return stage.WriteFile(p.PageFile, func(w io.Writer) error {
		pw := image.NewPageWriter(&ctxWriter{ctx: ctx, w: w})
		vmas, vdso, err := mem.Dump(p.Pid, pw, shared, inc, forked)
		if err != nil {
			return err
		}
		p.VMAs, p.VDSO = vmas, vdso
		p.PageFileSize, p.PageChecksums = pw.Offset(), pw.Checksums()
		return nil
	})
}

// refuseAncestor refuses to dump a process rtcr itself descends from: its
// tree would include rtcr (pid 1's would be the whole machine), which
// cannot freeze itself.
func refuseAncestor(pid int) error {
	for p := os.Getppid(); p > 0; {
		if p == pid {
			return fmt.Errorf("dump %d: rtcr (pid %d) runs inside the tree of %d, which cannot freeze itself: %w", pid, os.Getpid(), pid, tree.ErrUnsupported)
		}
		st, err := procfs.ReadStat(p)
		if err != nil {
			return nil // an ancestor that is gone is not the target
		}
		p = st.Ppid
	}
	return nil
}

// newCheckpoint returns an empty checkpoint of this machine.
func newCheckpoint() *image.Checkpoint {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	return &image.Checkpoint{
		Kernel:  unix.ByteSliceToString(uts.Release[:]) + " " + unix.ByteSliceToString(uts.Version[:]),
		Arch:    "x86_64",
		Created: time.Now().UnixNano(),
		ID:      image.NewID(),
	}
}

// ctxWriter fails writes once ctx is cancelled, which stops a dump.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *ctxWriter) Write(b []byte) (int, error) {
	if c.ctx.Err() != nil {
		return 0, ErrInterrupted
	}
	return c.w.Write(b)
}

// toNamespaceIDs rewrites every pid and tid of c from rtcr's view to the
// view inside the tree's pid namespace, the one its programs know and a
// restore recreates. Ids outside the namespace (the session and group of
// the init, inherited from `rtcr run`) become 0.
func toNamespaceIDs(c *image.Checkpoint, f *tree.Frozen) error {
	inner := map[int]int{}
	for _, pid := range f.Order {
		tids := f.Tids[pid]
		if len(tids) == 0 {
			tids = []int{pid} // a zombie
		}
		for _, tid := range tids {
			id, err := tree.InnerID(pid, tid)
			if err != nil {
				return err
			}
			inner[tid] = id
		}
	}
	for i := range c.Processes {
		p := &c.Processes[i]
		p.Pid, p.Ppid, p.Pgid, p.Sid = inner[p.Pid], inner[p.Ppid], inner[p.Pgid], inner[p.Sid]
		if p.FDTableOf != 0 {
			p.FDTableOf = inner[p.FDTableOf]
		}
		p.TtyFg = inner[p.TtyFg]
		for j := range p.Threads {
			p.Threads[j].Tid = inner[p.Threads[j].Tid]
		}
		for j := range p.PosixTimers {
			p.PosixTimers[j].NotifyTid = inner[p.PosixTimers[j].NotifyTid]
		}
		for j := range p.FDs {
			if o := p.FDs[j].Owner; o != nil {
				o.Pid = inner[o.Pid]
			}
			if p.FDs[j].Kind == image.FDPidfd {
				p.FDs[j].PidfdOf = inner[p.FDs[j].PidfdOf]
			}
		}
		for j := range p.VMAs {
			if ref := p.VMAs[j].ShareOf; ref != nil {
				ref.Pid = inner[ref.Pid]
			}
		}
	}
	for i := range c.SysVShm {
		c.SysVShm[i].Pid = inner[c.SysVShm[i].Pid]
	}
	return nil
}
