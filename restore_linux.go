package rtcr

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/rtcr/rtcr/internal/attr"
	"github.com/rtcr/rtcr/internal/clock"
	"github.com/rtcr/rtcr/internal/files"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/mem"
	"github.com/rtcr/rtcr/internal/netlock"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/run"
	"github.com/rtcr/rtcr/internal/stub"
	"github.com/rtcr/rtcr/internal/tree"
	"golang.org/x/sys/unix"
)

// ErrPidTaken reports that a pid the image needs is in use.
var ErrPidTaken = stub.ErrPidTaken

// Restore recreates the processes of the image in opts.Dir and lets them
// run. The whole image (checksums, files it refers to, kernel, pids, tree
// layout) is checked before any process is created; if a later step fails
// every new process is killed and the error names the process and step.
func Restore(opts RestoreOptions) (*RestoreStats, error) {
	start := time.Now()
	if opts.Lazy {
		opts.checks = pageChecks{}
	}
	c, dir, pages, closePages, err := loadImage(opts)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	// A lazy restore reads the page files until every page is in: they
	// are closed when that ends (lazyRun), not here.
	handedOff, held := false, false
	closeImage := func() {
		closePages()
		dir.Close()
	}
	defer func() {
		switch {
		case handedOff:
		case held:
			// A migration's copy runs: unmapping the page files it was
			// restored from (a whole 1 GiB mapping read through, tens of
			// ms) is not its downtime, which ends when rtcr serve says
			// Restored.
			go closeImage()
		default:
			closeImage()
		}
	}()
	if opts.loaded != nil {
		opts.loaded(c)
	}
	root := c.Processes[0].Pid
	log := logger(opts.Logger)
	logStep(log, root, "read manifest", time.Since(start), "dir", opts.Dir, "processes", len(c.Processes), "pidns", c.PidNS, "kernel", c.Kernel)
	t := newStepTimer(log, root)
	if opts.Lazy {
		if err := opts.checks.checkEager(c); err != nil {
			return nil, err
		}
	}
	t.done("verify pages")
	if err := preflight(c, dir.Owner); err != nil {
		return nil, err
	}
	fds, err := externals(c, opts, log)
	if err != nil {
		return nil, fmt.Errorf("restore %d: %w", root, err)
	}
	t.done("preflight")
	var offsets stub.TimeOffsets
	if c.PidNS {
		if c.Clocks == nil {
			return nil, fmt.Errorf("restore %d: namespace image without clocks: %w", root, image.ErrCorrupt)
		}
		offsets = clock.Offsets(c.Clocks, !opts.NoClockJump)
	}
	stats := &RestoreStats{Pid: root}
	for _, p := range c.Processes {
		stats.PageBytes += p.PageFileSize
	}
	sysv, err := mem.PrepareSysV(c.SysVShm, c.Processes, pages, dir.Owner)
	if err != nil {
		return nil, fmt.Errorf("restore %d: %w", root, err)
	}
	var lz *LazyRestore
	if opts.Lazy {
		if lz, err = newLazy(c, opts.LazySource, pages, opts.checks, log, start); err != nil {
			sysv.Undo()
			return nil, err
		}
		lz.prep = opts.prep
	}
	if opts.AddressesLater {
		fds.AllowMissingAddresses()
	}
	if err := fds.LockRestore(c.NetLock, c.Processes); err != nil {
		sysv.Undo()
		if lz != nil {
			lz.srv.Close() // no process was added: only its own fds
		}
		return nil, fmt.Errorf("restore %d: %w", root, err)
	}
	tree := func() error {
		return restoreTree(c, dir.Owner, pages, offsets, stats, log, fds, sysv, opts.Hold, opts.running, lz)
	}
	if lz == nil {
		err = ptrace.Run(tree)
	} else {
		err = lz.run(tree, closeImage)
		handedOff = err == nil
		stats.Lazy = lz // Total: until the processes ran (restoreTree)
	}
	if lz == nil {
		stats.Total = time.Since(start)
	}
	if err != nil {
		sysv.Undo()
		if uerr := fds.UnlockRestore(); uerr != nil {
			err = fmt.Errorf("%w; and: %w", err, uerr)
		}
		log.Error("restore failed, the new processes were killed", "pid", root, "err", err)
		if c.NetLock != "" && netlock.Exists(c.NetLock) {
			err = fmt.Errorf("%w (the network lock of the image stays for another try: `nft delete table inet %s` drops it)", err, c.NetLock)
		}
		return nil, err
	}
	log.Info("restore done", "pid", root, "host_pid", stats.Pid, "took", stats.Total.Round(time.Microsecond), "bytes", stats.PageBytes)
	held = opts.Hold != nil
	return stats, nil
}

// openImage opens the image directory, checks who could have written it
// (see the trust model in README): the directory, the manifest and every
// page file the manifest names, all admitted before the owner is used;
// then checks the image against this kernel's limits and its owner's
// credentials. Nothing here depends on root.
func openImage(opts RestoreOptions) (*image.Checkpoint, *image.Dir, error) {
	dir, err := image.OpenDir(opts.Dir, uint32(os.Geteuid()), opts.TrustImageOwner)
	if err != nil {
		return nil, nil, err
	}
	c, err := dir.ReadManifest()
	if err == nil && c.RemotePages && !opts.remotePages {
		err = fmt.Errorf("image %s: %w", opts.Dir, image.ErrRemotePages)
	}
	if err == nil {
		err = checkImage(c, dir)
	}
	if err != nil {
		dir.Close()
		return nil, nil, err
	}
	return c, dir, nil
}

// checkImage admits the page files of c, then checks c against the
// kernel's limits and the owner's credentials.
func checkImage(c *image.Checkpoint, dir *image.Dir) error {
	for i := range c.Processes {
		p := &c.Processes[i]
		if p.PageFile != "" {
			if err := dir.CheckFile(p.PageFile); err != nil {
				return fmt.Errorf("restore %d: %w", p.Pid, err)
			}
		}
	}
	sys, err := image.ReadSystem()
	if err != nil {
		return err
	}
	if err := c.CheckRestore(sys, dir.Owner); err != nil {
		return err
	}
	if dir.Owner.Root && os.Geteuid() != 0 {
		return checkAsRestorer(c, sys)
	}
	return nil
}

// loadImage opens the image (see openImage) and maps and verifies its page
// files. A dump that commits a new image into the directory meanwhile
// removes the page files of the old one: when a page file is missing and
// the manifest is no longer the one read, it starts over with the new
// image (at most three times).
func loadImage(opts RestoreOptions) (c *image.Checkpoint, dir *image.Dir, pages mem.PageFiles, closePages func(), err error) {
	err = image.RetryDuringCommit(opts.Dir, func() error {
		c, dir, pages, closePages, err = loadOnce(opts)
		return err
	})
	if errors.Is(err, image.ErrParentChanged) || errors.Is(err, image.ErrCorrupt) || errors.Is(err, fs.ErrNotExist) {
		// An rtcr killed in the middle of a merge of its checkpoint
		// series leaves the chain half rewritten (a link's checksum, or,
		// merging into the base, a page file with extra bytes or gone):
		// finish the merge (from its journal, as the series would) and
		// read the image again. Without a journal the error stands.
		var done []string
		real, ferr := filepath.EvalSymlinks(opts.Dir)
		if ferr == nil {
			done, ferr = image.FinishInterruptedMerges(filepath.Dir(real), uint32(os.Geteuid()))
		}
		if ferr != nil {
			return nil, nil, nil, nil, fmt.Errorf("%w (finishing an interrupted merge of its series: %v)", err, ferr)
		}
		if len(done) > 0 {
			if opts.Warnings != nil {
				fmt.Fprintf(opts.Warnings, "rtcr restore: finished %d merge(s) of the checkpoint series of %s that a killed rtcr left half done\n", len(done), opts.Dir)
			}
			c, dir, pages, closePages, err = loadOnce(opts)
		}
	}
	return c, dir, pages, closePages, err
}

// loadOnce is one attempt of loadImage. The page files are opened again
// and admitted on the opened file: if one was replaced since openImage
// by a file of another owner, the image's owner is no longer the one
// checked, and the restore is refused.
func loadOnce(opts RestoreOptions) (*image.Checkpoint, *image.Dir, mem.PageFiles, func(), error) {
	c, dir, err := openImage(opts)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	checked := dir.Owner
	pages := mem.PageFiles{}
	var closers []func() error
	closeAll := func() {
		for _, f := range closers {
			_ = f()
		}
	}
	for pid := range opts.checks {
		delete(opts.checks, pid) // an earlier attempt's
	}
	for i := range c.Processes {
		p := &c.Processes[i]
		data, closePages, err := opts.openPages(dir, p, 0, c.ChainLen)
		if err == nil && (dir.Owner.Root != checked.Root || dir.Owner.Uid != checked.Uid) {
			_ = closePages()
			err = fmt.Errorf("page file %s changed owner while the image was read: %w", p.PageFile, image.ErrUntrusted)
		}
		if err != nil {
			closeAll()
			dir.Close()
			return nil, nil, nil, nil, fmt.Errorf("restore %d: %w", p.Pid, err)
		}
		closers = append(closers, closePages)
		pages[p.Pid] = make([][]byte, c.ChainLen+1)
		pages[p.Pid][0] = data
	}
	if err := openChain(c, opts, dir.Owner, pages, &closers); err != nil {
		closeAll()
		dir.Close()
		return nil, nil, nil, nil, fmt.Errorf("restore %d: %w", c.Processes[0].Pid, err)
	}
	return c, dir, pages, closeAll, nil
}

// checkAsRestorer checks a root-owned image restored without root against
// the restoring user: its processes can get no more than that user has.
func checkAsRestorer(c *image.Checkpoint, sys image.System) error {
	self, err := image.RestorerBound()
	if err == nil {
		err = c.CheckRestore(sys, self)
	}
	if err != nil {
		return fmt.Errorf("image owned by root, restored by uid %d without root: %w", os.Geteuid(), err)
	}
	return nil
}

// fileCreds are the rights the files of process p are opened with: the
// image owner's. Nil (the restorer's own) when the owner is root or the
// restorer; otherwise the owner's uid and groups, without capabilities.
func fileCreds(owner image.Owner, p *image.Process) *image.Creds {
	if owner.Root || owner.Uid == uint32(os.Geteuid()) {
		return nil
	}
	return &image.Creds{Fsuid: owner.Uid, Fsgid: p.Creds.Fsgid, Groups: owner.Gids}
}

// preflight checks everything that can be checked without a process.
func preflight(c *image.Checkpoint, owner image.Owner) error {
	var nodes []tree.Node
	for i := range c.Processes {
		p := &c.Processes[i]
		nodes = append(nodes, tree.Node{Pid: p.Pid, Ppid: p.Ppid, Pgid: p.Pgid, Sid: p.Sid})
		if err := checkProcess(c, p, owner, !c.PidNS); err != nil {
			return fmt.Errorf("restore %d: %w", p.Pid, err)
		}
	}
	if _, err := tree.Plan(nodes); err != nil {
		return fmt.Errorf("restore %d: %w", c.Processes[0].Pid, err)
	}
	if !c.PidNS {
		for pgid := range tree.Ghosts(nodes) {
			if !pidFree(pgid) {
				return fmt.Errorf("restore %d: pid %d (a process group's leader, gone at the dump, which the restore recreates for a moment): %w", c.Processes[0].Pid, pgid, ErrPidTaken)
			}
		}
		for sid := range tree.GhostSessions(nodes) {
			if !pidFree(sid) {
				return fmt.Errorf("restore %d: pid %d (a session's leader, gone at the dump, which the restore recreates for a moment): %w", c.Processes[0].Pid, sid, ErrPidTaken)
			}
		}
	}
	return nil
}

func checkProcess(c *image.Checkpoint, p *image.Process, owner image.Owner, checkPids bool) error {
	ids := []int{p.Pid}
	for _, th := range p.Threads[min(1, len(p.Threads)):] {
		ids = append(ids, th.Tid)
	}
	for _, id := range ids {
		if checkPids && !pidFree(id) {
			holder := "another process"
			if st, err := procfs.ReadStat(id); err == nil {
				holder = fmt.Sprintf("%q (state %c)", st.Comm, st.State)
			}
			return fmt.Errorf("pid %d: %w by %s: kill it or wait for it to exit", id, ErrPidTaken, holder)
		}
	}
	if run.IsInit(p.Exe) {
		// rtcr's own init: write it again if it is gone (after a reboot).
		if _, err := run.InstallInit(); err != nil {
			return err
		}
	}
	if p.Zombie {
		return nil
	}
	if err := mem.CheckVDSO(p); err != nil {
		var uts unix.Utsname
		_ = unix.Uname(&uts)
		return fmt.Errorf("%w (image from %q, this is %q)", err, c.Kernel, unix.ByteSliceToString(uts.Release[:]))
	}
	if err := attr.CheckRlimits(p, owner); err != nil {
		return err
	}
	if err := attr.CheckOomScoreAdj(p, owner); err != nil {
		return err
	}
	if err := files.Check(p.FDs); err != nil {
		return err
	}
	if err := files.Check(p.MapFiles); err != nil {
		return err
	}
	if p.CwdDeleted != nil {
		if err := files.Check([]image.FD{*p.CwdDeleted}); err != nil {
			return fmt.Errorf("working directory: %w", err)
		}
	}
	// Every file it will have open or mapped and its executable, opened
	// as it would; then whether the mapped files changed (after the
	// access check: its message tells their size and times).
	if err := files.CheckProcess(p, fileCreds(owner, p)); err != nil {
		return err
	}
	return mem.CheckFiles(p)
}

// restoreTree runs on the tracer thread. It creates every process as an
// empty stub, parent before child, so that parent links, sessions and
// process groups come out right; then fills in each process; then releases
// them all at once. Any failure kills every process created.
//
// With lz (a lazy restore), the lazy memory of each process is registered
// on its userfaultfd once every process exists, and after the release
// restoreTree goes on until every page is in (LazyRestore.tail): its
// thread is the root's parent, whose death kills the tree (holdDeath).
func restoreTree(c *image.Checkpoint, owner image.Owner, pages mem.PageFiles, offsets stub.TimeOffsets, stats *RestoreStats, log *slog.Logger, fds *files.Restorer, sysv *mem.SysVRestore, hold func() error, running func(pid, program int), lz *LazyRestore) (err error) {
	scratch, elfBase, err := stubPlace(c)
	if err != nil {
		return fmt.Errorf("restore %d: %w", c.Processes[0].Pid, err)
	}
	var procs []*restoring
	var ghosts []*ghostLeader
	defer func() {
		if err != nil && (lz == nil || !lz.tailing) {
			for _, g := range ghosts {
				g.kill()
			}
			for i := len(procs) - 1; i >= 0; i-- {
				procs[i].kill()
			}
			if lz != nil {
				lz.dropKeepers()
				lz.closePidfds()
			}
		}
	}()
	if lz != nil {
		lz.scratch, lz.elfBase = scratch, elfBase
	}
	byPid := map[int]*restoring{}
	shared := mem.NewShared()
	shared.OpenFile = fds.OpenMapped
	defer fds.DropNetwork()
	// A pty pair of the image may be a session's controlling terminal:
	// it is made when its session leader is created, before its children.
	fds.PreparePtys(c.Processes)
	ghostBefore := ghostGroups(c)
	// A process left in the session its parent had before its setsid is
	// created before that setsid, which waits until then.
	beforeSetsid := tree.BeforeSetsid(treeNodes(c))
	laterSetsid := map[int]bool{}
	for pid := range beforeSetsid {
		laterSetsid[c.ProcessByPid(pid).Ppid] = true
	}
	pendingSetsid := map[int]bool{}
	ghostSessions := tree.GhostSessions(treeNodes(c))
	sessionGhosts := map[int]*ghostLeader{}
	for _, i := range creationOrder(c, beforeSetsid) {
		p := &c.Processes[i]
		if i > 0 && !beforeSetsid[p.Pid] && pendingSetsid[p.Ppid] {
			pp := byPid[p.Ppid]
			if err := pp.step("session", func() error { return pp.setsid(fds) }); err != nil {
				return err
			}
			delete(pendingSetsid, p.Ppid)
		}
		// A process of a session whose leader is gone, whose parent is
		// not in it: created by the session's ghost leader, with
		// CLONE_PARENT.
		var sessionGhost *ghostLeader
		if sp, ok := ghostSessions[p.Sid]; ok && i > 0 && p.Sid != p.Pid && sp == p.Ppid {
			if sessionGhost = sessionGhosts[p.Sid]; sessionGhost == nil {
				g, err := newGhostSessionLeader(byPid[p.Ppid].r, p.Sid)
				if err != nil {
					return fmt.Errorf("restore %d: %w", p.Pid, err)
				}
				ghosts = append(ghosts, g)
				sessionGhosts[p.Sid], sessionGhost = g, g
				logStep(log, p.Pid, "ghost session leader", 0, "sid", p.Sid)
			}
			if p.FDTableOf != 0 {
				return fmt.Errorf("restore %d: it shares its parent's fd table and is in session %d, whose leader is gone: not supported yet", p.Pid, p.Sid)
			}
		}
		if pgid, ok := ghostBefore[p.Pid]; ok && i > 0 {
			// Its group's leader was gone: a ghost leads it until every
			// process of it has joined (after the terminal's foreground
			// group is set, which may be it).
			g, err := newGhostLeader(byPid[p.Ppid].r, pgid)
			if err != nil {
				return fmt.Errorf("restore %d: %w", p.Pid, err)
			}
			ghosts = append(ghosts, g)
			logStep(log, p.Pid, "ghost group leader", 0, "pgid", pgid)
		}
		created := time.Now()
		var r *ptrace.Remote
		switch {
		case i == 0 && c.PidNS:
			r, err = stub.StartNS(scratch, elfBase, offsets)
		case i == 0:
			r, err = stub.Start(p.Pid, scratch, elfBase)
		case sessionGhost != nil:
			r, err = stub.Clone(sessionGhost.r, unix.CLONE_PARENT, p.Pid)
		case p.FDTableOf != 0:
			// It shares its parent's fd table (CLONE_FILES), whose
			// fds the table's first process gets.
			r, err = stub.Clone(byPid[p.Ppid].r, unix.CLONE_FILES, p.Pid)
		default:
			r, err = stub.Fork(byPid[p.Ppid].r, p.Pid)
		}
		if err != nil {
			return fmt.Errorf("restore %d: create process: %w", p.Pid, err)
		}
		logStep(log, p.Pid, "create process", time.Since(created), "host_pid", r.Pid, "ppid", p.Ppid, "zombie", p.Zombie)
		pr := &restoring{p: p, r: r, threads: []*ptrace.Injector{r.Injector}, pages: pages, ttyFd: -1, log: log, ns: c.PidNS, lazy: lz != nil}
		if !p.Zombie {
			pr.as = fileCreds(owner, p)
		}
		procs = append(procs, pr)
		byPid[p.Pid] = pr
		if laterSetsid[p.Pid] {
			pendingSetsid[p.Pid] = true
		} else if err := pr.step("session", func() error { return pr.setsid(fds) }); err != nil {
			return err
		}
		// Its memory now, before its children are forked from it: they
		// inherit the pages they shared with it copy-on-write, and
		// nothing of it has run or been written since.
		var parent *image.Process
		if i > 0 {
			parent = byPid[p.Ppid].p
		}
		memStart := time.Now()
		if err := pr.fillMemory(fds, shared, parent); err != nil {
			return err
		}
		stats.MemoryTime += time.Since(memStart)
	}
	for _, pr := range procs {
		if pendingSetsid[pr.p.Pid] {
			if err := pr.step("session", func() error { return pr.setsid(fds) }); err != nil {
				return err
			}
		}
	}
	if lz != nil {
		// Before anything else touches the memory left out: from here on a
		// touch waits for the page.
		for _, pr := range procs {
			if pr.p.Zombie {
				continue
			}
			if err := pr.step("userfaultfd", func() error { return lz.register(pr) }); err != nil {
				return err
			}
		}
	}
	for _, pr := range procs {
		if err := pr.step("process group", func() error { return pr.setpgid(procs[0].p) }); err != nil {
			return err
		}
	}
	for _, pr := range procs {
		if err := pr.step("terminal foreground group", pr.setForeground); err != nil {
			return err
		}
	}
	for _, g := range ghosts {
		if err := g.end(); err != nil {
			return fmt.Errorf("restore %d: %w", c.Processes[0].Pid, err)
		}
	}
	for _, pr := range procs {
		if err := pr.fill(fds); err != nil {
			return err
		}
	}
	if err := fds.ConnectPending(); err != nil {
		return fmt.Errorf("restore %d: %w", c.Processes[0].Pid, err)
	}
	if err := fds.ShutdownSockets(); err != nil {
		return fmt.Errorf("restore %d: %w", c.Processes[0].Pid, err)
	}
	if err := fds.AddHeldWatches(); err != nil {
		return fmt.Errorf("restore %d: %w", c.Processes[0].Pid, err)
	}
	// Helper fds stay open until every process has its pipes.
	for _, pr := range procs {
		if pr.p.FDTableOf != 0 {
			continue // its table is another's, swept there
		}
		if err := pr.step("close other fds", func() error { return files.Sweep(pr.r, pr.p.FDs) }); err != nil {
			return err
		}
	}
	// Every process has attached its SysV segments: those removed at the
	// checkpoint are marked so again.
	if err := sysv.Finish(); err != nil {
		return fmt.Errorf("restore %d: %w", c.Processes[0].Pid, err)
	}
	for _, pr := range procs {
		if err := pr.finish(); err != nil {
			return err
		}
	}
	if hold != nil {
		if err := procs[0].step("hold", hold); err != nil {
			return err
		}
	}
	// The TCP connections leave repair mode and the network lock of the
	// dump goes: packets flow again, to the restored sockets.
	if err := procs[0].step("network unlock", func() error { return fds.FinishNetwork(c.NetLock) }); err != nil {
		return err
	}
	if lz != nil {
		// The first detach lets a process run: its faults from here on
		// are its own, not the restore's (which were all served, so read,
		// before: an injected call or write waits for its page).
		lz.srv.Releasing()
		if err := lz.openPidfds(procs); err != nil {
			return err
		}
	}
	// Children first, the root last: if rtcr dies in between, the root
	// dies with it (PTRACE_O_EXITKILL), and with the init of a new pid
	// namespace the kernel kills every process in it: nothing is left.
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].release(); err != nil {
			return err
		}
	}
	stats.Pid = procs[0].r.Pid
	if pr := byPid[2]; c.PidNS && pr != nil {
		stats.Program = pr.r.Pid
	}
	if running != nil {
		running(stats.Pid, stats.Program)
	}
	if lz != nil {
		stats.Total = time.Since(lz.start)
		lz.srv.Prefetch()
		close(lz.running)
		return lz.tail(procs)
	}
	return nil
}

// stubPlace picks where the stub's scratch area and ELF go: a range no
// process of the image maps, so neither is in the way of any mapping.
func stubPlace(c *image.Checkpoint) (scratch, elfBase uint64, err error) {
	const need = ptrace.ScratchSize + 2*image.PageSize
	for base := uint64(1) << 32; base < 1<<46; base += 1 << 32 {
		free := true
		for _, p := range c.Processes {
			for _, v := range p.VMAs {
				if v.Start < base+need && base < v.End {
					free = false
				}
			}
		}
		if free {
			return base, base + ptrace.ScratchSize + image.PageSize, nil
		}
	}
	return 0, 0, errors.New("no free address range for the restore stub")
}

// zombieGrace is how long restore waits for a pid held by a zombie: the
// descendants of a tree killed by a dump are reaped by init shortly after.
const zombieGrace = 3 * time.Second

// pidFree reports whether no process or thread has id, waiting a little
// while the holder is a zombie or dead task on its way out.
func pidFree(id int) bool {
	deadline := time.Now().Add(zombieGrace)
	for {
		st, err := procfs.ReadStat(id) // thread ids have /proc/ID too
		if errors.Is(err, os.ErrNotExist) {
			return true
		}
		// ESRCH: the task exited between the open and the read of its
		// stat file; it is on its way out, like a zombie.
		dying := errors.Is(err, unix.ESRCH) || st != nil && (st.State == 'Z' || st.State == 'X')
		if !dying || time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}
