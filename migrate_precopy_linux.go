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
	// FullBytes is the full image sent while the tree ran; ArmFreeze
	// and FullFreeze how long its dump stopped the tree (to arm the
	// tracking, and at the end), FullSend how long it took to send and
	// have it checked.
	FullBytes  int64
	ArmFreeze  time.Duration
	FullFreeze time.Duration
	FullSend   time.Duration
	// Rounds and RoundPages are the pre-copy rounds (round 0, the copy
	// of every page, not counted) and the pages they copied; FrozenPages
	// the pages copied in the last freeze.
	Rounds      int
	RoundPages  int64
	FrozenPages int64
	// Streamed is the bytes of the last image's page files sent during
	// its rounds (SendStats.Bytes is what went in the freeze).
	Streamed int64
}

// migratePreCopy is Migrate with pre-copy, over one connection in
// wire.ModePreCopy:
//
//  1. the full image, dumped with TrackMem, LeaveRunning and FullPreCopy:
//     a short freeze arms the tracking, round 0 copies every page while
//     the tree runs, rounds of the pages written since follow, and a
//     freeze copies the last of them (the tree runs on); it is sent while
//     the tree runs, into tmp/image/base; the server checks it and keeps
//     it in NAME/base;
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
	c, tmp, closeMigration, err := openMigration(ctx, &srv, wire.ModePreCopy, opts.Pid)
	if err != nil {
		return nil, nil, err
	}
	defer closeMigration()
	img := filepath.Join(tmp, "image")
	base := filepath.Join(img, wire.BaseDir)
	st := &SendStats{Name: srv.Name, PreCopy: &PreCopyStats{}}
	pst := st.PreCopy
	if opts.MaxFreeze <= 0 {
		opts.MaxFreeze = DefaultMigrateFreeze
	}
	pp := &preProgress{srv: &srv, pst: pst, prev: time.Now()}
	srv.progress("connected to %s; arming the tracking of pid %d's memory in a short freeze, then round 0 copies it all while it runs", srv.Addr, opts.Pid)
	bs, err := Dump(ctx, DumpOptions{Pid: opts.Pid, Dir: base, LeaveRunning: true, TrackMem: true, Logger: opts.Logger,
		MaxFreeze: opts.MaxFreeze, FullPreCopy: true, onRound: pp.round, temporary: true})
	if err != nil {
		return nil, nil, fmt.Errorf("migrate %d: the source runs on: round 0: %w", opts.Pid, err)
	}
	pp.prev = time.Now() // its freeze protected what it copied
	pst.FullFreeze = bs.Freeze
	if bs.Budget != nil {
		pst.ArmFreeze = bs.Budget.ArmFreeze
	}
	srv.progress("full image complete: %.1f MiB, the tree frozen %v to arm and %v for the pages written last; sending it while the tree runs",
		float64(bs.PageBytes)/(1<<20), pst.ArmFreeze.Round(time.Millisecond), bs.Freeze.Round(time.Millisecond))
	sendStart := time.Now()
	n, err := c.SendImage(base)
	if err == nil {
		_, err = c.Expect(wire.Stored)
	}
	if err != nil {
		endTracking(opts, base, &srv)
		return nil, nil, fmt.Errorf("migrate %d: the source runs on: sending the full image: %w", opts.Pid, err)
	}
	pst.FullBytes, pst.FullSend = n, time.Since(sendStart)
	pp.linkRate = float64(n) / pst.FullSend.Seconds() // bytes per second, checks included
	srv.progress("full image: %.1f MiB sent and checked by %s in %v (%.0f MiB/s)",
		float64(n)/(1<<20), srv.Addr, pst.FullSend.Round(time.Millisecond), pp.linkRate/(1<<20))

	opts.Dir, opts.Parent, opts.FullPreCopy, opts.temporary = img, wire.BaseDir, false, true
	pp.last, pp.offset = true, pst.Rounds
	opts.onRound = pp.round
	// The pages the rounds copy go to the server at once.
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pp.conn, pp.sent, pp.cancel = c, map[string]int64{}, cancel
	ds, st, err := handOver(dctx, c, opts, &srv, st, start, pp.sent)
	if err != nil && pp.err != nil {
		err = fmt.Errorf("migrate %d: the source runs on: sending the rounds' pages: %w", opts.Pid, pp.err)
	}
	if err != nil && st == nil {
		// The source runs on; the last dump ended its tracking if it
		// got that far.
		endTracking(opts, base, &srv)
	}
	if ds != nil && ds.Budget != nil {
		pst.FrozenPages = ds.Budget.FrozenPages
	}
	pst.Streamed = pp.streamed
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

// preProgress prints the progress lines of a pre-copy migration's rounds,
// numbered on from the full image's to the last dump's.
type preProgress struct {
	srv      *PageServer
	pst      *PreCopyStats
	prev     time.Time // when the previous round began (the dirty set grew since)
	linkRate float64   // bytes per second to the server (0: not known yet)
	last     bool      // the rounds of the last dump (the freeze is the downtime)
	offset   int       // rounds of the full image's dump
	lastRun  int64     // pages the rounds of the last dump copied so far
	// conn, with last, receives the page files the rounds write as they
	// grow (sent: how far each went); a failure is kept in err and
	// cancels the dump.
	conn     *wire.Conn
	sent     map[string]int64
	streamed int64
	err      error
	cancel   func()
}

// stream sends what the rounds added to their page files.
func (p *preProgress) stream(files []roundFile) {
	if p.conn == nil || p.err != nil {
		return
	}
	for _, f := range files {
		from := p.sent[f.name]
		if f.size <= from {
			continue
		}
		if err := p.conn.SendChunks(f.r, f.name, from, f.size); err != nil {
			p.err = err
			p.cancel()
			return
		}
		p.sent[f.name] = f.size
		p.streamed += f.size - from
	}
}

// round is a dump's DumpOptions.onRound.
func (p *preProgress) round(r preRound) {
	began := time.Now().Add(-r.Took)
	since := began.Sub(p.prev)
	p.prev = began
	rate := 0.0
	if since > 0 {
		rate = float64(r.Dirty*image.PageSize) / since.Seconds() / 1e6
	}
	if r.Round == 0 && !r.Done {
		p.srv.progress("round 0: %d pages (%.1f MiB) copied in %v while the tree runs",
			r.Pages, float64(r.Pages*image.PageSize)/(1<<20), r.Took.Round(time.Millisecond))
		p.pst.RoundPages += r.Pages
		return
	}
	// The freeze copies the dirty pages (the dump's estimate); the last
	// one also sends what its rounds copied and those.
	pred, what := r.Predicted, "predicted freeze of the full image"
	if p.last && p.linkRate > 0 {
		sendBytes := r.Dirty * image.PageSize // the rounds' pages went already
		pred += time.Duration(float64(sendBytes) / p.linkRate * float64(time.Second))
		what = "predicted downtime before the destination's restore"
	}
	if r.Done {
		why := map[string]string{stopFits: "the rest fits the budget", stopGrowing: "the dirty set stopped shrinking",
			stopRoundCap: "round cap", stopNoTracked: "nothing tracked"}[r.Stop]
		p.srv.progress("rounds stop (%s): %d pages dirty (%.1f MB/s written); freezing, %s %v",
			why, r.Dirty, rate, what, pred.Round(time.Millisecond))
		return
	}
	n := p.offset + r.Round
	p.pst.Rounds, p.pst.RoundPages = n, p.pst.RoundPages+r.Pages
	sent := ""
	if p.last {
		p.lastRun += r.Pages
		start := time.Now()
		p.stream(r.files)
		sent = fmt.Sprintf("; sent in %v (%.1f MiB so far)", time.Since(start).Round(time.Millisecond), float64(p.streamed)/(1<<20))
	}
	p.srv.progress("round %d: %d pages (%.1f MiB) copied in %v%s; dirty rate %.1f MB/s; %s %v",
		n, r.Pages, float64(r.Pages*image.PageSize)/(1<<20), r.Took.Round(time.Millisecond), sent, rate, what, pred.Round(time.Millisecond))
}
