package rtcr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/mem"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/track"
	"github.com/rtcr/rtcr/internal/tree"
	"golang.org/x/sys/unix"
)

// Pre-copy (DumpOptions.MaxFreeze): before an incremental dump freezes the
// tree, the pages each tracked process wrote since the parent image are
// copied while it runs, in rounds. A round scans the tracked mappings with
// PAGEMAP_SCAN, which reports the written pages and protects them again in
// one step, and copies those pages into the process's page file of the new
// image (process_vm_readv, then fdatasync). Rounds go on while the copy of
// the pages written since the last round would not fit the budget (their
// count, at the copy rate measured in this run, plus the part of the freeze
// that is not copying pages, as earlier checkpoints measured it; when that
// part alone nearly fills the budget, until the copy fits a quarter of
// it), the dirty set shrinks from round to round, and at most maxRounds. Then the dump freezes
// the tree as always: its scan finds the pages written since the last
// round, which are copied after the pre-copied ones in the same page file
// and override them; a pre-copied page not written since is this image's,
// the others come from the parent (mem.Incr.Pre).
//
// Before its first scan the dump marks each process's tracking state as in
// use (valid for no image, naming this dump's generation): the scans protect
// pages again, so only this image can use what they found. A dump that
// fails, or an rtcr killed during the rounds, leaves them so, and the next
// checkpoint is a full image. The tree is never stopped nor traced by a
// round, and the tracking is asynchronous: a killed rtcr leaves nothing
// that waits for it.

// maxRounds bounds the pre-copy rounds of one dump.
const maxRounds = 8

// defaultCopyRate (bytes per second) is the copy rate assumed until a
// round (or an earlier dump) has measured one.
const defaultCopyRate = 1 << 30

// Why pre-copy rounds stopped before the dirty set fitted the budget.
const (
	stopFits      = ""
	stopGrowing   = "growing"
	stopRoundCap  = "cap"
	stopNoTracked = "untracked"
)

// precopy is the pre-copy of one dump.
type precopy struct {
	log    *slog.Logger
	budget time.Duration
	rate   float64       // copy rate, bytes per second (0: none measured)
	fixed  time.Duration // the freeze's part that is not memory (a hint)
	token  string        // State.Dir of the states this dump took
	procs  map[int]*preProc
	rounds int
	pages  int64  // pages pre-copied
	stop   string // why the rounds stopped (stopFits …)
	dirty  int64  // pages dirty at the last look
	last   int64  // pages copied by the last round
	// usedBytes counts the bytes of the page files the frozen dump
	// writes on, as the rounds left them.
	usedBytes int64
	onRound   func(preRound)  // DumpOptions.onRound
	usedOut   map[string]bool // DumpOptions.preUsed
	armFreeze time.Duration   // the freeze of armFull (a full image's)
}

// preProc is the pre-copy of one process.
type preProc struct {
	state *track.State
	scan  *track.Scanner
	file  *image.StageFile // its page file, begun
	name  string           // the page file's name
	pw    *image.PageWriter
	runs  []image.PageRun // the latest copy of each pre-copied page
	lost  [][2]uint64     // ranges protected again but not copied
	used  bool            // the frozen dump writes on in file
	gone  bool            // it could not be read any more (exited)
	// ranges are its tracked mappings as the last peek read them (smaps
	// is dear): the round that follows scans those. A mapping changed
	// in between fails its scan (lost) or is left to the freeze, which
	// reads the mappings again.
	ranges [][2]uint64
}

// keep takes the result of a copy of ranges into pp's page file: once the
// file is synced, runs become the latest copy of their pages and keep
// returns how many pages they hold. When the copy or the sync failed
// (unmapped meanwhile, or exited), the ranges are lost: the freeze saves
// them as if written, if they are still there.
func (pp *preProc) keep(runs []image.PageRun, err error, ranges [][2]uint64) (int64, error) {
	if err == nil {
		err = pp.file.Sync()
	}
	if err != nil {
		pp.lost = append(pp.lost, ranges...)
		return 0, err
	}
	pp.runs = mem.Latest(pp.runs, runs)
	var n int64
	for _, r := range runs {
		n += int64(r.Count)
	}
	return n, nil
}

// startPrecopy runs the pre-copy rounds of the incremental dump opts (its
// parent read into tr) while the tree runs. It returns nil when the dump
// has no budget or is not incremental; an error when ctx was cancelled or
// a tracking state could not be written.
func startPrecopy(ctx context.Context, log *slog.Logger, opts DumpOptions, stage *image.Stage, tr *tracking) (*precopy, error) {
	full := opts.FullPreCopy && tr.parent == nil && tr.on
	if opts.MaxFreeze <= 0 || (tr.parent == nil && !full) {
		return nil, nil
	}
	pc := &precopy{log: log, budget: opts.MaxFreeze, rate: opts.copyRate, fixed: opts.fixed,
		token: "pre-copy " + stage.Gen, procs: map[int]*preProc{}, onRound: opts.onRound, usedOut: opts.preUsed}
	parentID := ""
	if full {
		if err := armFull(ctx, log, opts, stage, pc); err != nil {
			return nil, err
		}
	} else {
		parentID = tr.parent.ID
	}
	root, _, err := tree.Root(opts.Pid)
	if err != nil {
		return pc, nil // the frozen dump says what is wrong
	}
	pids, err := tree.Descendants(root)
	if err != nil {
		return pc, nil
	}
	for _, pid := range pids {
		if err := pc.take(ctx, pid, parentID, stage); err != nil {
			pc.close()
			return nil, fmt.Errorf("dump %d: pre-copy: %w", opts.Pid, err)
		}
	}
	if len(pc.procs) == 0 {
		pc.stop = stopNoTracked
		return pc, nil
	}
	if full {
		pc.round0(ctx)
	}
	if err := pc.run(ctx); err != nil {
		pc.close()
		return nil, fmt.Errorf("dump %d: pre-copy: %w", opts.Pid, err)
	}
	return pc, nil
}

// take starts the pre-copy of process pid when its memory is tracked
// since the parent image parentID (or, for a full image, since armFull
// armed it for this dump): it marks its state as in use by this dump,
// opens its scanner and begins its page file.
func (pc *precopy) take(ctx context.Context, pid int, parentID string, stage *image.Stage) error {
	st, err := track.Load(pid)
	if err != nil || st == nil {
		return nil // not tracked: the frozen dump copies it whole
	}
	if (parentID != "" && st.ImageID != parentID) || (parentID == "" && (st.ImageID != "" || st.Dir != pc.token)) {
		return nil // not tracked for this parent (or this dump)
	}
	scan, err := track.OpenScanner(pid)
	if err != nil {
		return nil // exited
	}
	st.ImageID, st.Dir = "", pc.token
	if err := st.Save(); err != nil {
		scan.Close()
		return err
	}
	name := image.PageFileName(stage.Gen, pid)
	f, err := stage.OpenFile(name)
	if err != nil {
		scan.Close()
		return err
	}
	pc.procs[pid] = &preProc{state: st, scan: scan, file: f, name: name, pw: image.NewPageWriter(&ctxWriter{ctx: ctx, w: f})}
	return nil
}

// run makes the rounds.
func (pc *precopy) run(ctx context.Context) error {
	lastStart := time.Now()
	for {
		if ctx.Err() != nil {
			return ErrInterrupted
		}
		pc.dirty = pc.peek()
		rate := pc.rate
		if rate == 0 {
			rate = defaultCopyRate
		}
		// The copy of the dirty set must fit what the rest of the
		// freeze leaves of the budget; when that rest alone (nearly)
		// fills it, the rounds still bring the copy down to a quarter of
		// the budget.
		cp := time.Duration(float64(pc.dirty*image.PageSize) / rate * float64(time.Second))
		est := pc.fixed + cp
		switch {
		case est <= pc.budget || cp <= pc.budget/4:
			pc.stop = stopFits
		case pc.rounds == maxRounds:
			pc.stop = stopRoundCap
		case pc.rounds > 0 && pc.dirty >= pc.last:
			pc.stop = stopGrowing
		default:
			start := time.Now()
			n, copyTime, err := pc.round()
			if err != nil {
				return err
			}
			if n*image.PageSize >= 1<<20 && copyTime > 0 {
				pc.rate = float64(n*image.PageSize) / copyTime.Seconds()
			}
			pc.rounds++
			pc.pages += n
			pc.last = n
			pc.log.Info("pre-copy round", "round", pc.rounds, "pages", n, "took", time.Since(start).Round(time.Microsecond), "copy", copyTime.Round(time.Microsecond), "estimate_before", est.Round(time.Microsecond))
			if pc.onRound != nil {
				pc.onRound(preRound{Round: pc.rounds, Pages: n, Took: time.Since(start), Since: start.Sub(lastStart), Dirty: pc.dirty, Predicted: est, files: pc.files()})
			}
			lastStart = start
			continue
		}
		pc.log.Info("pre-copy done", "rounds", pc.rounds, "pages", pc.pages, "dirty", pc.dirty, "estimate", est.Round(time.Microsecond), "budget", pc.budget, "stop", pc.stop)
		if pc.onRound != nil {
			pc.onRound(preRound{Round: pc.rounds, Done: true, Since: time.Since(lastStart), Dirty: pc.dirty, Predicted: est, Stop: pc.stop})
		}
		return nil
	}
}

// peek counts the pages written since the last round (or since the
// parent), leaving them as they are.
func (pc *precopy) peek() int64 {
	var n int64
	for pid, pp := range pc.procs {
		if pp.gone {
			continue
		}
		ranges, err := mem.TrackedRanges(pid)
		if err != nil {
			pp.gone = true
			continue
		}
		pp.ranges = ranges
		for _, r := range ranges {
			w, err := pp.scan.Peek(r[0], r[1])
			if err != nil {
				continue // changed meanwhile: the round sees it
			}
			for _, x := range w {
				n += int64((x[1] - x[0]) / image.PageSize)
			}
		}
	}
	return n
}

// round scans every tracked mapping of every process (as the peek before
// it read them), protecting the written pages again, and copies them; it
// returns the pages copied and the time spent copying and writing them
// back (the rate of the freeze's own copy; reading the mappings and
// scanning them is a cost the freeze has whatever is written).
func (pc *precopy) round() (int64, time.Duration, error) {
	var total int64
	var copyTime time.Duration
	for pid, pp := range pc.procs {
		if pp.gone {
			continue
		}
		var written [][2]uint64
		for _, r := range pp.ranges {
			w, err := pp.scan.Written(r[0], r[1])
			if err != nil {
				// A mapping replaced meanwhile: the scan may have
				// protected a part of the range before it failed.
				pc.log.Debug("pre-copy scan failed", "pid", pid, "range", fmt.Sprintf("%#x-%#x", r[0], r[1]), "err", err)
				pp.lost = append(pp.lost, r)
				continue
			}
			written = append(written, w...)
		}
		start := time.Now()
		runs, err := mem.CopyRanges(pid, pp.pw, written)
		n, err := pp.keep(runs, err, written)
		copyTime += time.Since(start)
		if err != nil {
			pc.log.Debug("pre-copy copy failed", "pid", pid, "err", err)
		}
		total += n
	}
	return total, copyTime, nil
}

// took reports whether the tracking state st (loaded in the freeze) is
// the one this pre-copy marked for process pid.
func (pc *precopy) took(pid int, st *track.State) bool {
	if pc == nil {
		return false
	}
	pp := pc.procs[pid]
	return pp != nil && st.ImageID == "" && st.Dir == pc.token &&
		st.StartTime == pp.state.StartTime && st.Fd == pp.state.Fd
}

// use gives the frozen dump of process pid, an increment, what its
// pre-copy found; its memory is then written on in the page file begun.
func (pc *precopy) use(pid int, inc *mem.Incr) {
	if pc == nil || pc.procs[pid] == nil {
		return
	}
	pp := pc.procs[pid]
	pp.used = true
	pc.usedBytes += pp.pw.Offset()
	if pc.usedOut != nil {
		pc.usedOut[pp.name] = true
	}
	inc.Pre, inc.Lost = pp.runs, pp.lost
}

// runCount returns how many pre-copied runs the frozen dump will merge
// into its page runs (0 without pre-copy).
func (pc *precopy) runCount() int {
	if pc == nil {
		return 0
	}
	n := 0
	for _, pp := range pc.procs {
		n += len(pp.runs)
	}
	return n
}

// pageFile returns the page writer and file the frozen dump writes the
// memory of process pid on, or nil when it starts one.
func (pc *precopy) pageFile(pid int) (*image.PageWriter, *image.StageFile) {
	if pc == nil || pc.procs[pid] == nil || !pc.procs[pid].used {
		return nil, nil
	}
	pp := pc.procs[pid]
	return pp.pw, pp.file
}

// close closes the scanners and removes the page files the frozen dump
// did not finish.
func (pc *precopy) close() {
	if pc == nil {
		return
	}
	for _, pp := range pc.procs {
		pp.scan.Close()
		pp.file.Discard()
	}
}

// result returns what the dump did to meet its budget, once the manifest
// is about to be written: frozen is the freeze so far, memory its part
// spent copying memory, pageBytes the bytes of all page files; full says
// the image is not an increment.
func (pc *precopy) result(budget, frozen, memory time.Duration, pageBytes int64, full bool) *BudgetStats {
	frozenPages := pageBytes / image.PageSize
	if pc != nil {
		frozenPages = (pageBytes - pc.usedBytes) / image.PageSize
	}
	b := &BudgetStats{Max: budget, FrozenPages: frozenPages}
	if pc != nil {
		b.Rounds, b.PreCopiedPages, b.CopyRate, b.ArmFreeze = pc.rounds, pc.pages, pc.rate, pc.armFreeze
	}
	if frozen <= budget {
		return b
	}
	if full && pc == nil {
		b.Over = "a full image: pre-copy needs memory tracked since a previous checkpoint (or DumpOptions.FullPreCopy)"
		return b
	}
	var why []string
	switch {
	case pc == nil || pc.stop == stopNoTracked:
		why = append(why, "no process was tracked since the parent: nothing to pre-copy")
	case pc.stop == stopGrowing:
		why = append(why, fmt.Sprintf("the tree writes faster than rtcr copies: %d pages written during pre-copy round %d, which copied %d", pc.dirty, pc.rounds, pc.last))
	case pc.stop == stopRoundCap:
		why = append(why, fmt.Sprintf("%d pages still written after %d pre-copy rounds (the round cap)", pc.dirty, pc.rounds))
	}
	if frozen-memory > budget {
		why = append(why, fmt.Sprintf("the state other than memory alone took %v in the freeze", (frozen-memory).Round(time.Microsecond)))
	}
	if len(why) == 0 {
		why = append(why, fmt.Sprintf("the memory step of the freeze took %v for %d pages (reading and scanning the mappings costs time whatever was written)", memory.Round(time.Microsecond), frozenPages))
	}
	b.Over = strings.Join(why, "; ")
	return b
}

// armFull starts the pre-copy of a full image (DumpOptions.FullPreCopy):
// in one freeze, as short as the dump's fixed part, every process of the
// tree gets (or keeps) its userfaultfd and its private anonymous mappings
// are registered and protected, without a page copied; its tracking state
// names no image and this dump's token, so that only this dump takes it.
// Pages written from then on are reported by the scans, so that round 0
// may copy every page while the tree runs: what is written after its copy
// is caught by the next round or the freeze. A failure (or a killed rtcr)
// leaves the tree running, its tracking asynchronous and valid for no
// image.
func armFull(ctx context.Context, log *slog.Logger, opts DumpOptions, stage *image.Stage, pc *precopy) error {
	start := time.Now()
	at := &tracking{on: true, arm: true, procs: map[int]*procTrack{}}
	aopts := opts
	aopts.Handoff = nil
	var none *image.Checkpoint
	var st DumpStats
	err := ptrace.Run(func() error { return dumpFrozen(ctx, aopts, stage, &st, at, &none, nil) })
	pc.armFreeze = st.Freeze
	token := pc.token
	var errs []error
	for _, pt := range at.procs {
		if pt.own < 0 {
			continue
		}
		if err == nil && pt.state != nil {
			pt.state.ImageID, pt.state.Dir = "", token
			errs = append(errs, pt.state.Save())
		}
		unix.Close(pt.own)
	}
	if err == nil {
		err = errors.Join(errs...)
	}
	if err != nil {
		return fmt.Errorf("dump %d: arming the tracking for pre-copy: %w", opts.Pid, err)
	}
	log.Info("pre-copy armed", "pid", opts.Pid, "took", time.Since(start).Round(time.Microsecond), "frozen", st.Freeze.Round(time.Microsecond))
	return nil
}

// armMemory registers the untracked private anonymous mappings of the
// frozen process pid on its userfaultfd and protects the tracked ones
// again (armFull). A mapping the kernel will not register stays
// untracked: the freeze copies it whole.
func (t *tracking) armMemory(log *slog.Logger, pid int, zombie bool) error {
	pt := t.procs[pid]
	if zombie || pt == nil {
		return nil
	}
	if pt.own < 0 {
		return fmt.Errorf("process %d has no userfaultfd to arm", pid)
	}
	untracked, tracked, err := mem.ArmRanges(pid)
	if err != nil {
		return err
	}
	for _, r := range untracked {
		if err := track.Register(pt.own, r[0], r[1]); err != nil {
			log.Debug("mapping not tracked", "pid", pid, "err", err)
		}
	}
	for _, r := range tracked {
		if err := track.Protect(pt.own, r[0], r[1]); err != nil {
			return err
		}
	}
	return nil
}

// round0 copies every page of the tracked mappings while the tree runs
// (a full image's pre-copy, after armFull): a page written after its copy
// is reported by the next scan. A range that fails (unmapped meanwhile) is
// lost: the freeze saves it as if written.
func (pc *precopy) round0(ctx context.Context) {
	start := time.Now()
	var total int64
	for pid, pp := range pc.procs {
		if ctx.Err() != nil {
			return
		}
		ranges, err := mem.TrackedRanges(pid)
		if err != nil {
			pp.gone = true
			continue
		}
		runs, err := mem.CopyPresent(pid, pp.pw, pp.scan.Empty, ranges)
		n, err := pp.keep(runs, err, ranges)
		if err != nil {
			pc.log.Debug("pre-copy round 0 failed", "pid", pid, "err", err)
		}
		total += n
	}
	took := time.Since(start)
	if total*image.PageSize >= 1<<20 && took > 0 {
		pc.rate = float64(total*image.PageSize) / took.Seconds()
	}
	pc.pages += total
	pc.log.Info("pre-copy round", "round", 0, "pages", total, "took", took.Round(time.Microsecond))
	if pc.onRound != nil {
		pc.onRound(preRound{Round: 0, Pages: total, Took: took})
	}
}

// files lists the page files the rounds write, as far as they are
// written and synced (after a round).
func (pc *precopy) files() []roundFile {
	var out []roundFile
	for _, pp := range pc.procs {
		// A round whose copy failed did not sync what it wrote.
		if !pp.gone && pp.file.Sync() == nil {
			out = append(out, roundFile{name: pp.name, r: pp.file, size: pp.pw.Offset()})
		}
	}
	return out
}
