package rtcr

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/track"
	"github.com/rtcr/rtcr/internal/tree"
	"github.com/rtcr/rtcr/internal/wire"
)

// DefaultMigrateFreeze is the freeze budget of a pre-copy migration's
// last dump when DumpOptions.MaxFreeze is 0: pre-copy rounds run while the
// pages written since the last round would take longer to copy.
const DefaultMigrateFreeze = 10 * time.Millisecond

// PreCopyStats reports the pre-copy of a migration.
type PreCopyStats struct {
	// FullBytes is the full image sent while the tree ran (round 0);
	// FullFreeze how long its dump stopped the tree, FullSend how long
	// it took to send and have it checked.
	FullBytes  int64
	FullFreeze time.Duration
	FullSend   time.Duration
	// Rounds and RoundPages are the pre-copy rounds of the last dump and
	// the pages they copied; FrozenPages the pages copied in its freeze.
	Rounds      int
	RoundPages  int64
	FrozenPages int64
}

// migratePreCopy is Migrate with pre-copy, over one connection in
// wire.ModePreCopy:
//
//  1. round 0: a full image of the tree, dumped with TrackMem and
//     LeaveRunning (the tree is frozen for the copy only, then runs on,
//     its writes tracked), into tmp/image/base, and sent while the tree
//     runs; the server checks it and keeps it in NAME/base;
//  2. the last dump, an increment whose Parent is "base", with the freeze
//     budget opts.MaxFreeze: its pre-copy rounds copy the pages written
//     since while the tree runs; then it freezes, copies what was written
//     after the last round and hands the image over (handOver) as
//     Migrate without pre-copy does.
//
// Never both, never neither: until the destination is ready the source
// runs on; a failure after round 0 ends its tracking when that is cheap
// (an increment against round 0, without TrackMem), else leaves it on
// (asynchronous: it never stalls the tree; the next dump without
// --track-mem ends it).
func migratePreCopy(ctx context.Context, opts DumpOptions, srv PageServer) (*DumpStats, *SendStats, error) {
	start := time.Now()
	c, done, err := connect(ctx, &srv, wire.ModePreCopy, opts.Pid)
	if err != nil {
		return nil, nil, fmt.Errorf("migrate %d: %w", opts.Pid, err)
	}
	defer done()
	tmp, err := os.MkdirTemp("", "rtcr-migrate-")
	if err != nil {
		return nil, nil, fmt.Errorf("migrate %d: %w", opts.Pid, err)
	}
	defer os.RemoveAll(tmp)
	img := filepath.Join(tmp, "image")
	base := filepath.Join(img, wire.BaseDir)
	st := &SendStats{Name: srv.Name, PreCopy: &PreCopyStats{}}
	pst := st.PreCopy

	srv.progress("connected to %s; round 0: full copy of pid %d, which runs on (its writes tracked from now)", srv.Addr, opts.Pid)
	bs, err := Dump(ctx, DumpOptions{Pid: opts.Pid, Dir: base, LeaveRunning: true, TrackMem: true, Logger: opts.Logger})
	if err != nil {
		return nil, nil, fmt.Errorf("migrate %d: the source runs on: round 0: %w", opts.Pid, err)
	}
	tracked := time.Now() // about when the tracking was armed (the release)
	pst.FullFreeze = bs.Freeze
	srv.progress("round 0: %d pages (%.1f MiB) copied, the tree frozen %v; sending them while it runs",
		bs.PageBytes/image.PageSize, float64(bs.PageBytes)/(1<<20), bs.Freeze.Round(time.Millisecond))
	sendStart := time.Now()
	n, err := c.SendImage(base)
	if err == nil {
		_, err = c.Expect(wire.Stored)
	}
	if err != nil {
		endTracking(opts, base, &srv)
		return nil, nil, fmt.Errorf("migrate %d: the source runs on: sending round 0: %w", opts.Pid, err)
	}
	pst.FullBytes, pst.FullSend = n, time.Since(sendStart)
	linkRate := float64(n) / pst.FullSend.Seconds() // bytes per second, checks included
	srv.progress("round 0: %.1f MiB sent and checked by %s in %v (%.0f MiB/s)",
		float64(n)/(1<<20), srv.Addr, pst.FullSend.Round(time.Millisecond), linkRate/(1<<20))

	opts.Dir, opts.Parent = img, wire.BaseDir
	if opts.MaxFreeze <= 0 {
		opts.MaxFreeze = DefaultMigrateFreeze
	}
	prev := tracked
	opts.onRound = func(r PreCopyRound) {
		began := time.Now().Add(-r.Took)
		if r.Done {
			began = time.Now()
		}
		since := began.Sub(prev)
		prev = began
		rate := 0.0
		if since > 0 {
			rate = float64(r.Dirty*image.PageSize) / since.Seconds() / 1e6
		}
		// The freeze copies the dirty pages (the dump's estimate), then
		// sends what the rounds copied and those.
		sendBytes := (pst.RoundPages + r.Pages + r.Dirty) * image.PageSize
		down := r.Predicted + time.Duration(float64(sendBytes)/linkRate*float64(time.Second))
		if r.Done {
			why := map[string]string{stopFits: "the rest fits the budget", stopGrowing: "the dirty set stopped shrinking",
				stopRoundCap: "round cap", stopNoTracked: "nothing tracked"}[r.Stop]
			srv.progress("rounds done (%s): %d pages dirty (%.1f MB/s written); freezing, predicted downtime %v before the destination's restore",
				why, r.Dirty, rate, down.Round(time.Millisecond))
			return
		}
		pst.Rounds, pst.RoundPages = r.Round, pst.RoundPages+r.Pages
		srv.progress("round %d: %d pages (%.1f MiB) copied in %v; dirty rate %.1f MB/s; predicted downtime %v before the destination's restore",
			r.Round, r.Pages, float64(r.Pages*image.PageSize)/(1<<20), r.Took.Round(time.Millisecond), rate, down.Round(time.Millisecond))
	}
	ds, st, err := handOver(ctx, c, opts, &srv, st, start)
	if err != nil && st == nil {
		// The source runs on; the last dump ended its tracking if it
		// got that far.
		endTracking(opts, base, &srv)
	}
	if ds != nil {
		pst.FrozenPages = ds.PageBytes/image.PageSize - pst.RoundPages
		if ds.Budget != nil {
			pst.FrozenPages = ds.Budget.FrozenPages
		}
	}
	return ds, st, err
}

// endTracking ends the tracking round 0 of a failed pre-copy migration
// armed in the tree of opts.Pid, by a dump that leaves it running, without
// TrackMem, against the round 0 image in base (only the pages written
// since are copied, into a directory removed afterwards). When the
// tracking is no longer valid for base (the last dump took it), it is
// left on: asynchronous write-protection never stalls the tree.
func endTracking(opts DumpOptions, base string, srv *PageServer) {
	root, _, err := tree.Root(opts.Pid)
	if err != nil {
		return
	}
	st, err := track.Load(root)
	if err != nil || st == nil {
		return // ended (the last dump's injection closed it) or gone
	}
	c, err := image.ReadManifest(base)
	if err != nil || st.ImageID != c.ID {
		srv.progress("the tree's memory stays tracked (harmless: its writes never wait; the next dump without --track-mem ends it)")
		return
	}
	tmp, err := os.MkdirTemp("", "rtcr-untrack-")
	if err != nil {
		return
	}
	defer os.RemoveAll(tmp)
	_, err = Dump(context.Background(), DumpOptions{Pid: opts.Pid, Dir: filepath.Join(tmp, "image"), Parent: base, LeaveRunning: true, Logger: opts.Logger})
	if err != nil {
		srv.progress("ending the tracking of the tree failed (harmless: its writes never wait): %v", err)
		return
	}
	srv.progress("the tree's memory is no longer tracked")
}
