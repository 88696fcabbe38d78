package image

import (
	"errors"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Limits checked by Validate.
const (
	maxXStateSize = 1 << 20 // bytes of Thread.XState
	maxAuxvWords  = 128     // words of MM.Auxv
	maxSignal     = 64      // highest signal number (_NSIG)
	maxGroups     = 65536   // NGROUPS_MAX
	maxRlimits    = 16      // RLIM_NLIMITS
	maxItimers    = 3       // ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF
	maxTimers     = 1 << 16 // POSIX timers per process
	sigKill       = 9
	sigStop       = 19
)

// Limits no kernel exceeds; the restoring kernel's own (pid_max, nr_open)
// are checked by CheckRestore.
const (
	// MaxPid is PID_MAX_LIMIT on 64-bit kernels: pids and tids are below.
	MaxPid = 4 << 20
	// MaxFD is the largest nr_open a kernel allows (INT_MAX rounded down
	// to a multiple of 64): fd numbers are below.
	MaxFD = 2147483584
	// MaxEventfdCount is the largest eventfd counter (ULLONG_MAX - 1).
	MaxEventfdCount = 1<<64 - 2
)

// Sizes and limits of the pending signals and robust futex lists.
const (
	// SigInfoSize is the size of a SigInfo (siginfo_t).
	SigInfoSize = 128
	// MaxPending is the most signals one queue (a thread's or the
	// process's) may hold in an image.
	MaxPending = 4096
	// RobustListHeadSize is the only Len set_robust_list accepts
	// (sizeof(struct robust_list_head) on x86_64).
	RobustListHeadSize = 24
)

// maxShmSize bounds the size of a shared anonymous memory object (the
// user address space of x86_64 with 4-level page tables).
const maxShmSize = 1 << 47

// validVMAKinds are the Kind* constants.
var validVMAKinds = map[string]bool{
	KindAnon: true, KindSharedAnon: true, KindFile: true, KindHeap: true,
	KindStack: true, KindVvar: true, KindVvarClock: true, KindVDSO: true,
	KindVsyscall: true, KindMemfd: true, KindDeleted: true, KindSysV: true,
}

// validVmFlags are the Vm* constants.
var validVmFlags = map[string]bool{
	VmDontDump: true, VmDontFork: true, VmWipeOnFork: true, VmHugePage: true,
	VmNoHugePage: true, VmMergeable: true, VmSeqRead: true, VmRandRead: true,
	VmLocked: true, VmLockOnFault: true, VmNoReserve: true, VmDroppable: true,
	VmMayWriteFile: true,
}

// Validate checks the semantic consistency of c: architecture, unique pids
// and tids, sorted non-overlapping page-aligned VMAs, page runs inside their
// VMA and inside the page file without overlap, checksum count, page file
// name, fds, signal actions and size limits. Errors wrap ErrCorrupt and
// name the pid and the offending VMA, page run, fd, thread or signal.
// Pending signals must be SigInfoSize bytes each, at most MaxPending per
// queue, with a signal number in range; a robust list length is 0 or
// RobustListHeadSize.
func (c *Checkpoint) Validate() error {
	if c.Arch != "x86_64" {
		return corruptf("invalid checkpoint: arch %q, want \"x86_64\"", c.Arch)
	}
	if len(c.Processes) == 0 {
		return corruptf("invalid checkpoint: no processes")
	}
	if err := checkCounts(c); err != nil {
		return corruptf("invalid checkpoint: %w", err)
	}
	if c.Processes[0].Zombie {
		return corruptf("invalid checkpoint: pid %d: the root is a zombie", c.Processes[0].Pid)
	}
	if err := validateChain(c); err != nil {
		return corruptf("invalid checkpoint: %w", err)
	}
	if err := validateRemotePages(c); err != nil {
		return corruptf("invalid checkpoint: %w", err)
	}
	if b := c.Budget; b != nil && (b.MaxNs <= 0 || b.Rounds < 0 || b.PreCopied < 0 || b.Frozen < 0 || len(b.Over) > 4096) {
		return corruptf("invalid checkpoint: freeze budget %d ns, %d rounds, %d and %d pages, reason of %d bytes", b.MaxNs, b.Rounds, b.PreCopied, b.Frozen, len(b.Over))
	}
	if c.NetLock != "" && !ValidNetLock(c.NetLock) {
		return corruptf("invalid checkpoint: network lock table %q is not named rtcr_ and 16 hex digits", c.NetLock)
	}
	pids := make(map[int]bool, len(c.Processes))
	tids := make(map[int]int) // tid -> pid owning it
	for i := range c.Processes {
		p := &c.Processes[i]
		if p.Pid <= 0 || p.Pid >= MaxPid {
			return corruptf("invalid checkpoint: process %d: pid %d out of range 1-%d", i, p.Pid, MaxPid-1)
		}
		for _, id := range []int{p.Ppid, p.Pgid, p.Sid, p.TtyFg} {
			if id < 0 || id >= MaxPid {
				return corruptf("invalid checkpoint: pid %d: parent, group, session or foreground group %d out of range 0-%d", p.Pid, id, MaxPid-1)
			}
		}
		if pids[p.Pid] {
			return corruptf("invalid checkpoint: duplicate pid %d", p.Pid)
		}
		if i > 0 && !pids[p.Ppid] {
			return corruptf("invalid checkpoint: pid %d: parent %d is not listed before it", p.Pid, p.Ppid)
		}
		for _, v := range p.VMAs {
			ref := v.ShareOf
			if ref == nil {
				continue
			}
			earlier := pids[ref.Pid] || (ref.Pid == p.Pid && ref.Start < v.Start)
			if !earlier || v.Kind != KindSharedAnon {
				return corruptf("invalid checkpoint: pid %d: mapping %#x shares memory of pid %d at %#x, which is not listed before it, or is not shared anonymous memory", p.Pid, v.Start, ref.Pid, ref.Start)
			}
		}
		pids[p.Pid] = true
		if err := validateProcess(p, tids); err != nil {
			return corruptf("invalid checkpoint: pid %d: %w", p.Pid, err)
		}
	}
	for _, p := range c.Processes {
		for _, fd := range p.FDs {
			if fd.Kind == FDPidfd && !pids[fd.PidfdOf] {
				return corruptf("invalid checkpoint: pid %d: fd %d is a pidfd on %d, not a process of the image", p.Pid, fd.Num, fd.PidfdOf)
			}
		}
	}
	if err := validateExternals(c.Processes); err != nil {
		return corruptf("invalid checkpoint: %w", err)
	}
	if err := validateUnixPeers(c.Processes); err != nil {
		return corruptf("invalid checkpoint: %w", err)
	}
	if err := validateShared(c.Processes); err != nil {
		return corruptf("invalid checkpoint: %w", err)
	}
	if err := validateMapFiles(c.Processes); err != nil {
		return corruptf("invalid checkpoint: %w", err)
	}
	if err := validateSysV(c); err != nil {
		return corruptf("invalid checkpoint: %w", err)
	}
	if err := validateOwners(c); err != nil {
		return corruptf("invalid checkpoint: %w", err)
	}
	return nil
}

// validateOwners checks the page runs held by another process's page file
// (PageRun.Pid): the mapping is private; a run of this image (depth 0)
// lies within the page file of a live process of the image (a dump names
// an ancestor; a merge may name another process it moved the pages to);
// a run of an ancestor image names a pid (checked against that image by
// CheckAncestorRuns: the process may be gone since).
func validateOwners(c *Checkpoint) error {
	byPid := make(map[int]*Process, len(c.Processes))
	for i := range c.Processes {
		byPid[c.Processes[i].Pid] = &c.Processes[i]
	}
	for i := range c.Processes {
		p := &c.Processes[i]
		for j := range p.VMAs {
			v := &p.VMAs[j]
			for _, r := range v.Pages {
				if r.Pid == 0 {
					continue
				}
				if r.Pid < 0 || r.Pid >= MaxPid || r.Pid == p.Pid {
					return fmt.Errorf("pid %d: page run at %#x held by pid %d", p.Pid, r.Addr, r.Pid)
				}
				if v.Shared || v.ShareOf != nil || v.Kind == KindSysV {
					return fmt.Errorf("pid %d: page run at %#x of a shared %s mapping held by pid %d", p.Pid, r.Addr, v.Kind, r.Pid)
				}
				if r.Depth > 0 {
					continue
				}
				o := byPid[r.Pid]
				if o == nil || o.Zombie {
					return fmt.Errorf("pid %d: page run at %#x held by pid %d, which is not a live process of the image", p.Pid, r.Addr, r.Pid)
				}
				if r.FileOff >= o.PageFileSize || r.Count > uint64(o.PageFileSize-r.FileOff)/PageSize {
					return fmt.Errorf("pid %d: page run at %#x: %d pages at file offset %d beyond the page file of pid %d (%d bytes)",
						p.Pid, r.Addr, r.Count, r.FileOff, r.Pid, o.PageFileSize)
				}
			}
		}
	}
	return nil
}

// validateProcess checks one process; tids collects the tids seen so far in
// the checkpoint (tids are unique within a pid namespace).
func validateProcess(p *Process, tids map[int]int) error {
	if p.Zombie {
		if len(p.Threads) != 0 || len(p.VMAs) != 0 || len(p.FDs) != 0 || len(p.MapFiles) != 0 || p.PageFileSize != 0 {
			return errors.New("zombie with threads, memory or fds")
		}
		return nil
	}
	if err := validateThreads(p, tids); err != nil {
		return err
	}
	if d := p.CwdDeleted; d != nil {
		if d.Kind != FDDeleted || d.Num != -1 || d.Mode&unix.S_IFMT != unix.S_IFDIR || d.Path != p.Cwd {
			return fmt.Errorf("deleted working directory %q: want a deleted directory record of %q with fd -1", d.Path, p.Cwd)
		}
		if err := validateDeleted(d); err != nil {
			return fmt.Errorf("working directory: %w", err)
		}
	}
	if err := validateMM(&p.MM); err != nil {
		return err
	}
	if !isCleanAbs(p.Exe) {
		return fmt.Errorf("executable path %q is not absolute and clean", p.Exe)
	}
	if err := validatePageFile(p); err != nil {
		return err
	}
	if err := validateVMAs(p); err != nil {
		return err
	}
	if err := validateFDs(p.FDs); err != nil {
		return err
	}
	if err := validatePending(p.SharedPending); err != nil {
		return fmt.Errorf("shared pending signals: %w", err)
	}
	if err := validateMisc(p); err != nil {
		return err
	}
	return validateSigactions(p.Sigactions)
}

func validateThreads(p *Process, tids map[int]int) error {
	if len(p.Threads) == 0 {
		return errors.New("no threads")
	}
	if t := p.Threads[0].Tid; t != p.Pid {
		return fmt.Errorf("first thread has tid %d, want the pid", t)
	}
	for i := range p.Threads {
		t := &p.Threads[i]
		if t.Tid <= 0 || t.Tid >= MaxPid {
			return fmt.Errorf("thread %d: tid %d out of range 1-%d", i, t.Tid, MaxPid-1)
		}
		if owner, dup := tids[t.Tid]; dup {
			if owner == p.Pid {
				return fmt.Errorf("duplicate tid %d", t.Tid)
			}
			return fmt.Errorf("tid %d also belongs to pid %d", t.Tid, owner)
		}
		tids[t.Tid] = p.Pid
		if len(t.XState) > maxXStateSize {
			return fmt.Errorf("tid %d: xstate is %d bytes, limit is %d", t.Tid, len(t.XState), maxXStateSize)
		}
		if l := t.Robust.Len; l != 0 && l != RobustListHeadSize {
			return fmt.Errorf("tid %d: robust list length %d, want 0 or %d", t.Tid, l, RobustListHeadSize)
		}
		if err := validatePending(t.Pending); err != nil {
			return fmt.Errorf("tid %d: pending signals: %w", t.Tid, err)
		}
	}
	return nil
}

func validateMM(mm *MM) error {
	if n := len(mm.Auxv); n > maxAuxvWords || n%2 != 0 {
		return fmt.Errorf("auxv has %d words, want an even number up to %d", n, maxAuxvWords)
	}
	return nil
}

func validatePageFile(p *Process) error {
	if p.PageFileSize < 0 {
		return fmt.Errorf("page file size %d", p.PageFileSize)
	}
	if p.PageFile != "" || p.PageFileSize > 0 {
		if !isPlainName(p.PageFile) {
			return fmt.Errorf("page file name %q is not a plain file name", p.PageFile)
		}
	}
	want := (p.PageFileSize + PageChunkSize - 1) / PageChunkSize
	if int64(len(p.PageChecksums)) != want {
		return fmt.Errorf("page file %q: %d checksums for %d bytes, want %d",
			p.PageFile, len(p.PageChecksums), p.PageFileSize, want)
	}
	return nil
}

func validateVMAs(p *Process) error {
	for i := range p.VMAs {
		v := &p.VMAs[i]
		if v.Start >= v.End {
			return fmt.Errorf("vma %#x-%#x: start not below end", v.Start, v.End)
		}
		if v.Start%PageSize != 0 || v.End%PageSize != 0 {
			return fmt.Errorf("vma %#x-%#x: not page-aligned", v.Start, v.End)
		}
		if i > 0 {
			prev := &p.VMAs[i-1]
			if v.Start < prev.End {
				return fmt.Errorf("vma %#x-%#x: overlaps or precedes vma %#x-%#x", v.Start, v.End, prev.Start, prev.End)
			}
		}
		if !validVMAKinds[v.Kind] {
			return fmt.Errorf("vma %#x-%#x: unknown kind %q", v.Start, v.End, v.Kind)
		}
		if v.Kind == KindFile && !isCleanAbs(v.Path) {
			return fmt.Errorf("vma %#x-%#x: file mapping path %q is not absolute and clean", v.Start, v.End, v.Path)
		}
		// A shared file mapping keeps its data in the file: restore maps
		// the file and must never write saved pages into it.
		if v.FileBacked() && v.Shared && len(v.Pages) > 0 {
			return fmt.Errorf("vma %#x-%#x: shared file mapping of %s with saved pages", v.Start, v.End, v.Path)
		}
		// A path (PATH_MAX) with " (deleted)", or an anonymous memory
		// name (80 bytes; the kernel checks its characters).
		if len(v.Name) > 4096+len(" (deleted)") {
			return fmt.Errorf("vma %#x-%#x: name of %d bytes", v.Start, v.End, len(v.Name))
		}
		if v.ShmSize < 0 || v.ShmSize > maxShmSize || (v.ShmSize != 0 && v.Kind != KindSharedAnon) {
			return fmt.Errorf("vma %#x-%#x: %s memory object of %d bytes (shared anonymous memory only, at most %d)", v.Start, v.End, v.Kind, v.ShmSize, int64(maxShmSize))
		}
		if err := validateVmFlags(v); err != nil {
			return fmt.Errorf("vma %#x-%#x: %w", v.Start, v.End, err)
		}
		if err := validateRuns(p, v); err != nil {
			return fmt.Errorf("vma %#x-%#x: %w", v.Start, v.End, err)
		}
		if err := validateRemote(v); err != nil {
			return fmt.Errorf("vma %#x-%#x: %w", v.Start, v.End, err)
		}
	}
	return checkFileOverlap(p)
}

// validateVmFlags checks that v carries only VmFlags restore knows how to
// set, each once, where they make sense.
func validateVmFlags(v *VMA) error {
	seen := map[string]bool{}
	for _, f := range v.VmFlags {
		switch {
		case !validVmFlags[f]:
			return fmt.Errorf("unknown VmFlags %q", f)
		case seen[f]:
			return fmt.Errorf("VmFlags %q twice", f)
		case v.Kind == KindVDSO || v.Kind == KindVvar || v.Kind == KindVvarClock || v.Kind == KindVsyscall:
			return fmt.Errorf("VmFlags %q on a %s mapping the kernel creates", f, v.Kind)
		case f == VmMayWriteFile && !((v.FileBacked() || v.Kind == KindSysV) && v.Shared):
			return fmt.Errorf("VmFlags %q on a mapping that is not a shared file mapping", f)
		}
		seen[f] = true
	}
	if seen[VmLockOnFault] && !seen[VmLocked] {
		return fmt.Errorf("VmFlags %q without %q", VmLockOnFault, VmLocked)
	}
	return nil
}

func validateSigactions(sas []Sigaction) error {
	var seen [maxSignal + 1]bool
	for i := range sas {
		s := sas[i].Signal
		if s < 1 || s > maxSignal {
			return fmt.Errorf("sigaction %d: signal %d out of range 1-%d", i, s, maxSignal)
		}
		if seen[s] {
			return fmt.Errorf("sigaction for signal %d: duplicate", s)
		}
		// Their action cannot be changed: a dump never records one.
		if s == sigKill || s == sigStop {
			return fmt.Errorf("sigaction for signal %d (SIGKILL or SIGSTOP): their action cannot be changed", s)
		}
		seen[s] = true
	}
	return nil
}

// validatePending checks one queue of pending signals.
func validatePending(infos []SigInfo) error {
	if len(infos) > MaxPending {
		return fmt.Errorf("%d signals, limit is %d", len(infos), MaxPending)
	}
	for i, si := range infos {
		if len(si) != SigInfoSize {
			return fmt.Errorf("siginfo %d is %d bytes, want %d", i, len(si), SigInfoSize)
		}
		// si_signo, the first int of siginfo_t (little-endian).
		s := int32(uint32(si[0]) | uint32(si[1])<<8 | uint32(si[2])<<16 | uint32(si[3])<<24)
		if s < 1 || s > maxSignal {
			return fmt.Errorf("siginfo %d: signal %d out of range 1-%d", i, s, maxSignal)
		}
	}
	return nil
}

// isCleanAbs reports whether path is absolute and clean (no "." or ".."
// elements, no repeated or trailing slash): the form a dump records.
func isCleanAbs(path string) bool {
	return filepath.IsAbs(path) && filepath.Clean(path) == path
}

// checkCounts checks the totals of the model against the caps of
// manifest_limits.go (the reader checks them before decoding; a checkpoint
// built in memory is checked here).
func checkCounts(c *Checkpoint) error {
	if n := len(c.Processes); n > MaxProcesses {
		return fmt.Errorf("%d processes, limit is %d", n, MaxProcesses)
	}
	var threads, vmas, fds int
	for i := range c.Processes {
		p := &c.Processes[i]
		threads += len(p.Threads)
		vmas += len(p.VMAs)
		fds += len(p.FDs)
		switch {
		case threads > MaxThreads:
			return fmt.Errorf("pid %d: its threads bring the total to %d, limit is %d", p.Pid, threads, MaxThreads)
		case vmas > MaxVMAs:
			return fmt.Errorf("pid %d: its mappings bring the total to %d, limit is %d", p.Pid, vmas, MaxVMAs)
		case fds > MaxFDs:
			return fmt.Errorf("pid %d: its fds bring the total to %d, limit is %d", p.Pid, fds, MaxFDs)
		}
	}
	return nil
}

// validateMisc checks the small per-process tables: credentials' group
// count, rlimits, timers and the parent-death signal.
func validateMisc(p *Process) error {
	if p.Creds != nil && len(p.Creds.Groups) > maxGroups {
		return fmt.Errorf("%d supplementary groups, limit is %d", len(p.Creds.Groups), maxGroups)
	}
	if len(p.Rlimits) > maxRlimits {
		return fmt.Errorf("%d rlimits, limit is %d", len(p.Rlimits), maxRlimits)
	}
	for _, rl := range p.Rlimits {
		if rl.Resource < 0 || rl.Resource >= maxRlimits {
			return fmt.Errorf("rlimit %d out of range 0-%d", rl.Resource, maxRlimits-1)
		}
	}
	if p.OomScoreAdj != nil && (*p.OomScoreAdj < -1000 || *p.OomScoreAdj > 1000) {
		return fmt.Errorf("oom_score_adj %d out of range -1000-1000", *p.OomScoreAdj)
	}
	// GLOBAL_EXPEDITED, PRIVATE_EXPEDITED, its SYNC_CORE and RSEQ variants.
	if p.Membarrier&^(1<<2|1<<4|1<<6|1<<8) != 0 {
		return fmt.Errorf("membarrier registrations %#x unknown", p.Membarrier)
	}
	if p.THPDisable&^3 != 0 || p.THPDisable == 2 {
		return fmt.Errorf("THP disable %#x: not 0, 1 or 3", p.THPDisable)
	}
	for _, th := range p.Threads {
		if err := validateSched(th.Sched); err != nil {
			return fmt.Errorf("thread %d: %w", th.Tid, err)
		}
	}
	if len(p.Itimers) > maxItimers {
		return fmt.Errorf("%d itimers, limit is %d", len(p.Itimers), maxItimers)
	}
	if len(p.PosixTimers) > maxTimers {
		return fmt.Errorf("%d POSIX timers, limit is %d", len(p.PosixTimers), maxTimers)
	}
	for _, pt := range p.PosixTimers {
		if pt.Signo < 0 || pt.Signo > maxSignal {
			return fmt.Errorf("POSIX timer %d: signal %d out of range 0-%d", pt.ID, pt.Signo, maxSignal)
		}
		if pt.NotifyTid < 0 || pt.NotifyTid >= MaxPid {
			return fmt.Errorf("POSIX timer %d: thread %d out of range 0-%d", pt.ID, pt.NotifyTid, MaxPid-1)
		}
	}
	if s := p.Prctl.PdeathSig; s < 0 || s > maxSignal {
		return fmt.Errorf("parent-death signal %d out of range 0-%d", s, maxSignal)
	}
	return validateSeccomp(p)
}

// Seccomp limits: a filter is at most BPF_MAXINSNS instructions of 8
// bytes; a chain at most MAX_INSNS_PER_PATH (32768) instructions counting
// 4 per filter, so at most 32768/5 filters.
const (
	maxSeccompInsns   = 4096
	maxSeccompFilters = 32768 / 5
)

// validateSeccomp checks a process's seccomp state: a process has no
// thread in strict mode if it has filters, and each filter is a whole
// number of instructions within the kernel's limits, with no flag but
// SECCOMP_FILTER_FLAG_LOG.
func validateSeccomp(p *Process) error {
	if len(p.SeccompFilters) == 0 {
		return nil
	}
	for _, t := range p.Threads {
		if t.SeccompStrict {
			return fmt.Errorf("seccomp: thread %d in strict mode in a process with filters", t.Tid)
		}
	}
	if len(p.SeccompFilters) > maxSeccompFilters {
		return fmt.Errorf("%d seccomp filters, limit is %d", len(p.SeccompFilters), maxSeccompFilters)
	}
	for i, f := range p.SeccompFilters {
		if len(f.Prog) == 0 || len(f.Prog)%8 != 0 || len(f.Prog)/8 > maxSeccompInsns {
			return fmt.Errorf("seccomp filter %d: %d bytes, want 1-%d instructions of 8 bytes", i, len(f.Prog), maxSeccompInsns)
		}
		if f.Flags&^unix.SECCOMP_FILTER_FLAG_LOG != 0 {
			return fmt.Errorf("seccomp filter %d: flags %#x unknown", i, f.Flags)
		}
	}
	return nil
}

// validateSched checks a thread's scheduling state is one sched_setattr
// takes: a known policy, nice -20–19, priority 0–99, known flags.
func validateSched(s *Sched) error {
	if s == nil {
		return nil
	}
	switch s.Policy {
	case 0, 1, 2, 3, 5, 6: // OTHER, FIFO, RR, BATCH, IDLE, DEADLINE
	default:
		return fmt.Errorf("scheduling policy %d unknown", s.Policy)
	}
	if s.Nice < -20 || s.Nice > 19 {
		return fmt.Errorf("nice %d out of range -20-19", s.Nice)
	}
	if s.Priority > 99 {
		return fmt.Errorf("real-time priority %d out of range 0-99", s.Priority)
	}
	// RESET_ON_FORK, RECLAIM, DL_OVERRUN (the utilization clamps are
	// restored from UtilMin and UtilMax).
	if s.Flags&^0x7 != 0 {
		return fmt.Errorf("scheduling flags %#x unknown", s.Flags)
	}
	if s.UtilMin > 1024 || s.UtilMax > 1024 {
		return fmt.Errorf("utilization clamp %d-%d above 1024", s.UtilMin, s.UtilMax)
	}
	return nil
}
