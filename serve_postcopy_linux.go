package rtcr

import (
	"fmt"
	"time"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/tree"
	"github.com/rtcr/rtcr/internal/wire"
	"golang.org/x/sys/unix"
)

// postCopy restores the post-copy image at path lazily: its processes run
// as soon as they are restored while their missing pages come from the
// frozen source (remoteSource) on first touch and in the background. If the link drops before every page is in, the copy cannot
// go on: the lazy restore kills it (and the source, which still holds
// everything, resumes). Once every page is in, the server says PagesIn and
// the source kills its tree. The image, useless without its source,
// stays in its staging directory path (never DIR/NAME) and is removed
// either way.
//
// The image is not checked before Stored: the lazy restore checks it
// (the page CRCs of what it writes at once, the rest as it comes) before
// any process exists, and the source stays frozen until every page is
// in, so a refused image fails the page phase and the source resumes.
// Checking it first (CheckImage) and committing it to DIR/NAME were
// each a step in the downtime.
func (s *server) postCopy(c *wire.Conn, name, path string) {
	peer := c.Peer()
	defer func() { _ = s.inbox.Remove(path) }()
	ck, err := image.ReadManifest(path)
	if err == nil && !ck.RemotePages {
		err = fmt.Errorf("image %s is not a post-copy image", name)
	}
	if err == nil {
		err = c.SendNow(wire.Stored, nil)
	}
	if err != nil {
		c.SendError(err.Error())
		s.event("%s: post-copy image %s: %v", peer, name, err)
		return
	}
	// The page phase starts now: the restore itself may touch memory
	// that is not here yet. The only hold is pre-resume's: the source
	// stays frozen until every page is in, and its address left it
	// (source-frozen) before the image came, so the copy may run as
	// soon as the address is here (netmove_linux.go).
	src := newRemoteSource(c, wire.NewPageSet(ck))
	// The source may have nothing to say for long: no idle limit (a dead
	// link fails the sends, or TCP keepalive), and no deadline left from
	// the frames before.
	c.SetIdle(0)
	_ = c.SetDeadline(time.Time{})
	go src.run()
	opts := RestoreOptions{Dir: path, Logger: s.opts.Logger, NoClockJump: s.opts.NoClockJump,
		Lazy: true, LazySource: src, remotePages: true, AddressesLater: true,
		Hold: func() error { s.preResume(peer, name, path, ck); return nil }}
	// Restored goes as soon as the copy runs (from the restore's tracer
	// thread, before the background fetches start), the same frame as
	// after.
	confirmed := false
	opts.running = func(pid, program int) {
		confirmed = true
		if err := src.send(wire.Restored, restoredFrame(pid, program)); err != nil {
			src.fail(err) // the lazy restore's next fetch fails: it kills the copy
		}
	}
	s.restoreMu.Lock()
	st, err := Restore(opts)
	s.restoreMu.Unlock()
	if err != nil {
		// The source learns why (its page phase ends on this frame).
		msg := fmt.Sprintf("restore %s: %v", name, err)
		_ = src.send(wire.Error, []byte(msg[:min(len(msg), 4096)]))
		src.fail(err)
		s.event("%s: post-copy restore of %s failed, nothing runs here, the source resumes: %v", peer, name, err)
		return
	}
	s.event("%s: image %s restored lazily: pid %d%s runs; %d pages to come from the source", peer, name, st.Pid, programNote(st), ck.RemoteSpans())
	if !confirmed {
		if err := src.send(wire.Restored, restoredFrame(st.Pid, st.Program)); err != nil {
			src.fail(err) // the lazy restore's next fetch fails: it kills the copy
		}
	}
	allIn, err := st.Lazy.Wait()
	// The restored root is our child: collect it when it exits. Not
	// before the lazy restore let go (a wait from any thread of rtcr
	// would take the ptrace stops it waits for), nor before killTree
	// is ruled out (until reaped, its pid is its own).
	reap := func(pid int) {
		go func() {
			var ws unix.WaitStatus
			_, _ = unix.Wait4(pid, &ws, 0, nil)
		}()
	}
	if err != nil {
		reap(st.Pid)
		src.fail(err)
		s.event("%s: post-copy of %s: the copy (pid %d) could not go on and was killed; the source keeps everything and resumes: %v", peer, name, st.Pid, err)
		return
	}
	// Every page is in. The source kills its tree once it reads PagesIn
	// and then says Go; if that never comes, the source may have
	// resumed (its rtcr migrate killed, the link dropped before it read
	// PagesIn): the copy is killed, never both.
	src.phaseOver()
	if err = src.send(wire.PagesIn, nil); err == nil {
		_ = c.SetDeadline(time.Now().Add(goWait))
		<-src.ran // at most goWait
		if !src.gone {
			err = src.err
		}
	}
	if err != nil {
		killTree(st.Pid)
		reap(st.Pid)
		s.event("%s: post-copy of %s: every page was in (%v), but the source did not confirm it is dead (%v): the copy (pid %d) was killed, the source may run on", peer, name, allIn.Round(time.Millisecond), err, st.Pid)
		return
	}
	reap(st.Pid)
	s.event("%s: post-copy of %s: every page is in after %v, the source is dead; pid %d runs on alone", peer, name, allIn.Round(time.Millisecond), st.Pid)
}

// killTree kills pid, a child of rtcr not reaped yet (so the pid is
// its own), and its descendants (a copy whose source may run on): they
// are stopped until no new one appears, then killed, the root last, so
// that none is reparented away before it is found. A pid namespace's init
// takes its namespace with it.
func killTree(pid int) {
	stopped := map[int]bool{}
	for range 8 {
		pids, err := tree.Descendants(pid)
		if err != nil {
			break
		}
		added := false
		for _, p := range pids[1:] { // parents first; pids[0] is pid
			if !stopped[p] {
				_ = unix.Kill(p, unix.SIGSTOP)
				stopped[p], added = true, true
			}
		}
		if !added {
			break
		}
	}
	for p := range stopped {
		_ = unix.Kill(p, unix.SIGKILL)
	}
	_ = unix.Kill(pid, unix.SIGKILL)
}
