package rtcr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"time"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/series"
	"github.com/rtcr/rtcr/internal/track"
)

// CheckpointerOptions says where a Checkpointer writes and how.
type CheckpointerOptions struct {
	// Dir is the series directory: checkpoints go to Dir/1, Dir/2 … (on
	// from the highest already there) and Dir/latest names the newest
	// complete one (see `rtcr run --every`).
	Dir string
	// Keep is the number of checkpoints kept, the newest (0: all). An
	// older one is merged into its child before it is removed, so that
	// the increments after it stay restorable.
	Keep int
	// Full makes every checkpoint a full image and tracks nothing
	// (`rtcr run --no-incremental`).
	Full bool
	// MaxFreeze is the freeze budget of each increment (0: none): see
	// DumpOptions.MaxFreeze. The copy rate and the part of the freeze
	// that is not memory are taken from the checkpoints before. A
	// checkpoint that misses it is still taken; its DumpStats.Budget
	// says why it missed.
	MaxFreeze time.Duration
	// Logger receives the dumps' log lines (nil: none).
	Logger *slog.Logger
}

// Checkpointer checkpoints one process tree again and again into a
// series: the first checkpoint is a full image that starts tracking the
// tree's writes (DumpOptions.TrackMem), each next one an increment
// against the last good one holding only the pages written since. When
// an increment cannot be made (a checkpoint failed, which leaves the
// tracking valid for no image; the tracking was lost; the chain reached
// image.MaxChain) the checkpoint is a full tracked image instead, and its
// DumpStats.Notes say why. The tree keeps running throughout.
//
// `rtcr run --every` is a Checkpointer. One goroutine at a time.
type Checkpointer struct {
	pid     int
	opts    CheckpointerOptions
	s       *series.Series
	last    int    // number of the last good checkpoint (0: none yet)
	chain   int    // its ChainLen
	tracked bool   // a checkpoint made with TrackMem was attempted: Close ends tracking
	restart string // why the next checkpoint must be full ("": it need not)
	notes   []string
	started uint64 // start time of pid (a reused pid is never checkpointed)
	// What the checkpoints so far measured, for the budget: the copy
	// rate (bytes per second) and the freeze's part that is not memory.
	rate  float64
	fixed time.Duration
}

// NewCheckpointer prepares checkpoints of process pid (and its
// descendants; the pid of an `rtcr run` stands for its namespace) into
// the series opts.Dir, created with mode 0700 if needed. Nothing is
// dumped yet.
func NewCheckpointer(pid int, opts CheckpointerOptions) (*Checkpointer, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("checkpointer: invalid pid %d", pid)
	}
	if opts.Dir == "" {
		return nil, fmt.Errorf("checkpointer %d: no series directory", pid)
	}
	if opts.MaxFreeze < 0 || (opts.MaxFreeze > 0 && opts.Full) {
		return nil, fmt.Errorf("checkpointer %d: a freeze budget must be > 0 and needs incremental checkpoints", pid)
	}
	st, err := procfs.ReadStat(pid)
	if err != nil {
		return nil, fmt.Errorf("checkpointer %d: no such process: %w", pid, err)
	}
	s, err := series.Open(opts.Dir, opts.Keep)
	if err != nil {
		return nil, fmt.Errorf("checkpointer %d: %w", pid, err)
	}
	c := &Checkpointer{pid: pid, opts: opts, s: s, started: st.StartTime}
	s.Merge(func(line string) { c.notes = append(c.notes, line) })
	return c, nil
}

// Checkpoint takes the next checkpoint of the series (see Checkpointer)
// and returns its stats: Dir names the image, Parent its parent ("": a
// full image), Notes what else happened. A failed checkpoint leaves the
// series as it was (Dir/latest unchanged) and the tree running; the next
// one is then a full image.
func (c *Checkpointer) Checkpoint(ctx context.Context) (*DumpStats, error) {
	if !c.same() {
		return nil, fmt.Errorf("checkpointer %d: the process has exited", c.pid)
	}
	n, dir := c.s.Next()
	opts := DumpOptions{Pid: c.pid, Dir: dir, LeaveRunning: true, TrackMem: !c.opts.Full, Logger: c.opts.Logger,
		MaxFreeze: c.opts.MaxFreeze, copyRate: c.rate, fixed: c.fixed}
	c.notes = nil
	incr := !c.opts.Full && c.last > 0
	c.tracked = c.tracked || !c.opts.Full // from now on Close has tracking to end
	switch {
	case !incr:
	case c.restart != "":
		c.notes = append(c.notes, "full image: "+c.restart)
		incr = false
	case c.chain+1 >= image.MaxChain:
		c.notes = append(c.notes, fmt.Sprintf("full image: the chain reached %d images", c.chain+1))
		incr = false
	default:
		opts.Parent = filepath.Join("..", strconv.Itoa(c.last))
	}
	st, err := Dump(ctx, opts)
	if err != nil && incr && errors.Is(err, track.ErrNoTracking) && ctx.Err() == nil {
		c.notes = append(c.notes, fmt.Sprintf("full image: %v", err))
		opts.Parent = ""
		st, err = Dump(ctx, opts)
	}
	if err != nil {
		c.s.Skip(n)
		if !c.opts.Full {
			c.restart = fmt.Sprintf("checkpoint %d failed (its tracking is valid for no image)", n)
		}
		return nil, err
	}
	c.last, c.restart = n, ""
	c.learn(st)
	c.chain = 0
	if opts.Parent != "" {
		c.chain++
		if pc, err := image.ReadManifest(dir); err == nil {
			c.chain = pc.ChainLen
		}
	}
	st.Dir = dir
	if err := c.s.Done(n); err != nil {
		c.notes = append(c.notes, err.Error())
	}
	st.Notes = c.notes
	c.notes = nil
	return st, nil
}

// Close ends the tracking of the tree's writes, if a checkpoint started
// it and the tree still runs. A process's tracking ends only through a
// dump (which closes the target's userfaultfd from inside it): Close takes
// one last checkpoint of the series, an increment made without
// DumpOptions.TrackMem (a full image after a failed one). A tree that has
// exited needs nothing.
func (c *Checkpointer) Close() error {
	if c.opts.Full || !c.tracked {
		return nil
	}
	c.tracked = false
	if !c.same() {
		return nil
	}
	n, dir := c.s.Next()
	opts := DumpOptions{Pid: c.pid, Dir: dir, LeaveRunning: true, Logger: c.opts.Logger}
	if c.last > 0 && c.restart == "" && c.chain+1 < image.MaxChain {
		opts.Parent = filepath.Join("..", strconv.Itoa(c.last))
	}
	if _, err := Dump(context.Background(), opts); err != nil {
		c.s.Skip(n)
		return fmt.Errorf("checkpointer %d: ending tracking: %w", c.pid, err)
	}
	c.last = n
	if err := c.s.Done(n); err != nil {
		return fmt.Errorf("checkpointer %d: %w", c.pid, err)
	}
	return nil
}

// same reports whether the checkpointer's pid is still the process it was
// made for (alive, with the same start time).
func (c *Checkpointer) same() bool {
	st, err := procfs.ReadStat(c.pid)
	return err == nil && st.StartTime == c.started
}

// learn keeps what checkpoint st measured for the next one's budget: the
// copy rate, and the part of the freeze not spent copying pages.
func (c *Checkpointer) learn(st *DumpStats) {
	switch {
	case st.Budget != nil && st.Budget.CopyRate > 0:
		c.rate = st.Budget.CopyRate
	case c.rate == 0 && st.MemoryTime > 0 && st.PageBytes >= 1<<20:
		c.rate = float64(st.PageBytes) / st.MemoryTime.Seconds() // a lower bound
	}
	frozen := st.PageBytes
	if st.Budget != nil {
		frozen = st.Budget.FrozenPages * image.PageSize
	}
	c.fixed = st.Freeze
	if c.rate > 0 {
		c.fixed -= time.Duration(float64(frozen) / c.rate * float64(time.Second))
	}
	c.fixed = max(c.fixed, 0)
}
