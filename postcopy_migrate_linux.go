package rtcr

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/wire"
)

// PostCopyStats reports a post-copy migration (MigrateLazy).
type PostCopyStats struct {
	// Downtime is the time the tree ran nowhere: from its freeze on the
	// source until the destination said its copy runs (the freeze as
	// the image recorded it, plus the time from the image's commit until
	// Restored arrived).
	Downtime time.Duration
	// AllIn is the time from the freeze until the destination said
	// every page is in (the source stayed frozen that long).
	AllIn time.Duration
	// Pages is the number of pages the image left with the source;
	// SentPages those sent (a page asked twice counts twice).
	Pages, SentPages int64
}

// MigrateLazy moves the tree of opts.Pid to the `rtcr serve` at srv by
// post-copy: it freezes the tree and dumps everything but the contents of
// its private anonymous memory (recording which pages exist), sends that
// image, and lets the destination run its copy at once; the source stays
// frozen and serves each page the copy touches, and every other page as
// the destination's prefetch asks, until the destination says every page
// is in. Only then is the source killed (and the destination told so).
//
// If the link drops, or either side fails, before every page is in: the
// copy on the destination cannot go on (its missing pages are here) and
// is killed there; the source, which still holds everything, is released
// and runs on. The error says which happened. opts.Dir and opts.Handoff
// are MigrateLazy's own; incremental options are refused.
func MigrateLazy(ctx context.Context, opts DumpOptions, srv PageServer) (*DumpStats, *SendStats, *PostCopyStats, error) {
	if opts.Parent != "" || opts.TrackMem || opts.MaxFreeze != 0 || opts.LeaveRunning {
		return nil, nil, nil, fmt.Errorf("migrate %d: post-copy takes no parent, tracking, freeze budget or leave-running", opts.Pid)
	}
	if err := srv.checkAction(); err != nil {
		return nil, nil, nil, fmt.Errorf("migrate %d: %w", opts.Pid, err)
	}
	c, tmp, closeMigration, err := openMigration(ctx, &srv, wire.ModePostCopy, opts.Pid)
	if err != nil {
		return nil, nil, nil, err
	}
	defer closeMigration()
	opts.Dir, opts.temporary = filepath.Join(tmp, "image"), true
	pc := &postCopyDump{}
	opts.postCopy = pc
	st := &SendStats{Name: srv.Name}
	ps := &PostCopyStats{}
	running, allIn := false, false
	var ss *sourceSide // set once source-frozen ran (netmove_linux.go)
	var ck *image.Checkpoint
	opts.committed = func(c *image.Checkpoint) { ck = c }
	opts.Handoff = func(dir string) (err error) {
		committed := time.Now()
		frozen := time.Duration(ck.FreezeNs)
		// The address leaves this host before the copy can run there;
		// whatever fails from here brings it back before the tree runs
		// on.
		ss, err = srv.sourceFrozen(opts.Pid, dir, ck)
		defer func() {
			if err != nil {
				err = srv.sourceResumed(opts.Pid, dir, ss, err)
				// The copy ran: its connections went on without this
				// tree's; they end here rather than hang.
				pc.Abort = running
			}
		}()
		if err != nil {
			return err
		}
		set := wire.NewPageSet(ck)
		ps.Pages = int64(set.Pages())
		if err = sendImage(c, dir, ck, st, &srv); err != nil {
			return err
		}
		srv.progress("%s restores it lazily; its %d private pages (%.1f MiB) stay here until asked for", srv.Addr, ps.Pages, float64(ps.Pages*image.PageSize)/(1<<20))
		// The page phase starts at once: the restore may touch missing
		// pages. The destination may ask nothing for as long as a
		// restore takes.
		c.SetIdle(restoreWait)
		server := &pageServer{c: c, set: set, hosts: pc.Hosts, restored: func(p []byte) error {
			if len(p) != 8 || running {
				return fmt.Errorf("restored frame of %d bytes: %w", len(p), wire.ErrProtocol)
			}
			st.Pid, st.Program = int(binary.BigEndian.Uint32(p)), int(binary.BigEndian.Uint32(p[4:]))
			ps.Downtime = frozen + time.Since(committed)
			st.Downtime = ps.Downtime
			running = true
			srv.progress("runs on %s as pid %d after %v of downtime; serving its pages", srv.Addr, st.Pid, ps.Downtime.Round(100*time.Microsecond))
			return nil
		}}
		err = server.serve()
		ps.SentPages = server.Sent
		if err != nil {
			return fmt.Errorf("page phase (%d of %d pages sent): %w", server.Sent, ps.Pages, err)
		}
		if !running {
			return fmt.Errorf("every page in before the copy ran: %w", wire.ErrProtocol)
		}
		ps.AllIn = frozen + time.Since(committed)
		allIn = true
		return nil
	}
	srv.progress("connected to %s; freezing pid %d and dumping all but its private memory", srv.Addr, opts.Pid)
	ds, err := Dump(ctx, opts)
	if !allIn {
		if err == nil {
			err = errors.New("the destination never had every page")
		}
		if running {
			return nil, nil, nil, fmt.Errorf("migrate %d: the copy on %s cannot go on without the pages held here and is killed there; the source runs on: %w", opts.Pid, srv.Addr, err)
		}
		return nil, nil, nil, fmt.Errorf("migrate %d: the source runs on: %w", opts.Pid, err)
	}
	// The handoff returned nil: Dump killed the tree. The destination
	// keeps its copy only when told so.
	if gerr := c.SendNow(wire.Go, nil); gerr != nil {
		return ds, st, ps, fmt.Errorf("migrate %d: every page moved and the source is dead, but telling %s failed (%v): its copy is killed when it hears nothing: %w", opts.Pid, srv.Addr, gerr, ErrUnconfirmed)
	}
	srv.progress("every page moved in %v (%d pages sent); the source is dead", ps.AllIn.Round(time.Millisecond), ps.SentPages)
	// The source's lock goes: its sockets are gone, and the address
	// left in source-frozen.
	err = ss.finish(err)
	if err != nil {
		return ds, st, ps, fmt.Errorf("migrate %d: moved (pid %d on %s), but: %w", opts.Pid, st.Pid, srv.Addr, err)
	}
	return ds, st, ps, nil
}
