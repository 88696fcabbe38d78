package rtcr

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/rtcr/rtcr/internal/files"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/mem"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/track"
	"github.com/rtcr/rtcr/internal/tree"
	"golang.org/x/sys/unix"
)

// tracking is the dirty-tracking side of one dump (DumpOptions.TrackMem
// and Parent); see internal/track and README "Incremental checkpoints".
//
// Per process: a valid state whose image is the parent makes its private
// memory (anonymous, and the copied pages of file mappings) incremental;
// any other process of the tree is copied in full. Shared memory is
// incremental when every view of it in the tree is tracked (mem.SharedDirty). With TrackMem every process is tracked after the dump (a
// userfaultfd is created in those that have none); without it, tracking
// ends in every process of the tree (the target's copy is closed).
type tracking struct {
	on        bool              // TrackMem
	parent    *image.Checkpoint // the parent image (nil: a full dump)
	parentDir string            // where it is
	procs     map[int]*procTrack
	id        string   // the new image's id
	pre       *precopy // what pre-copy rounds copied (nil: none made)
	// arm makes the freeze only arm the tracking of a full image's
	// pre-copy (armFull): no state is read, no page copied.
	arm bool
	// shared is what the scan of every view of shared memory found, for
	// an increment (nil otherwise); logged once, by the first protect.
	shared       *mem.SharedDirty
	sharedLogged bool
}

// procTrack is the tracking of one process of the tree.
type procTrack struct {
	state     *track.State // its tracking, if any
	incr      bool         // its memory is dumped against the parent
	own       int          // rtcr's copy of its userfaultfd, -1 if none
	inherited []int        // rtcr's fds to close in it: copies of another process's userfaultfd it inherited by fork, one a killed Create left (track.LoadStray)
	inc       *mem.Incr
	scanner   *track.Scanner
}

// openParent resolves opts.Parent against the new image's directory and
// reads the parent image. It refuses the new image's own directory (its
// commit would remove the parent's page files) and a chain at its bound.
func openParent(opts DumpOptions) (*tracking, error) {
	// A dump that kills the tree has nothing to track afterwards.
	t := &tracking{on: opts.TrackMem && opts.LeaveRunning, procs: map[int]*procTrack{}}
	if opts.Parent == "" {
		return t, nil
	}
	t.parentDir = opts.Parent
	if !filepath.IsAbs(opts.Parent) {
		t.parentDir = filepath.Join(opts.Dir, opts.Parent)
	}
	if a, err := os.Stat(t.parentDir); err == nil {
		if b, err := os.Stat(opts.Dir); err == nil && os.SameFile(a, b) {
			return nil, fmt.Errorf("dump %d: --parent %s is the image directory itself: an increment needs a directory of its own", opts.Pid, opts.Parent)
		}
	}
	d, err := image.OpenDir(t.parentDir, uint32(os.Geteuid()), false)
	if err != nil {
		return nil, fmt.Errorf("dump %d: parent image %s: %w", opts.Pid, t.parentDir, err)
	}
	defer d.Close()
	if t.parent, err = d.ReadManifest(); err != nil {
		return nil, fmt.Errorf("dump %d: parent image %s: %w", opts.Pid, t.parentDir, err)
	}
	if t.parent.ID == "" {
		return nil, fmt.Errorf("dump %d: parent image %s has no id (written by an older rtcr): make a full dump with --track-mem first", opts.Pid, t.parentDir)
	}
	if t.parent.ChainLen+1 > image.MaxChain {
		return nil, fmt.Errorf("dump %d: parent image %s already has %d images behind it, the bound is %d: make a full dump with --track-mem", opts.Pid, t.parentDir, t.parent.ChainLen, image.MaxChain)
	}
	return t, nil
}

// load reads the tracking state of every live process of the frozen tree,
// refuses an incremental dump whose target (pid, or the tree's root when
// pid stands for a namespace from outside it) is not tracked since the
// parent image, and tells fds to leave every tracking userfaultfd out.
func (t *tracking) load(pid, root int, live []int, fds *files.Tree) error {
	var states []*track.State
	for _, p := range live {
		stray := track.LoadStray(p)
		st, err := track.Load(p)
		if err != nil {
			return err
		}
		pt := &procTrack{state: st, own: -1}
		t.procs[p] = pt
		if stray >= 0 {
			fds.Skip(p, stray)
			pt.inherited = append(pt.inherited, stray)
		}
		if st != nil {
			states = append(states, st)
			fds.Skip(p, st.Fd)
			pt.incr = (t.parent != nil && st.ImageID == t.parent.ID) || t.pre.took(p, st)
		}
	}
	if t.procs[pid] == nil {
		pid = root // `rtcr run`'s pid: its namespace's init is the target
	}
	if t.parent != nil {
		if pt := t.procs[pid]; pt == nil || !pt.incr {
			why := "its memory is not tracked"
			if pt != nil && pt.state != nil && pt.state.ImageID != "" {
				why = fmt.Sprintf("its memory is tracked since another image (%s)", pt.state.Dir)
			} else if pt != nil && pt.state != nil {
				why = "the dump that last took its tracking did not complete"
			}
			return fmt.Errorf("dump %d: no increment against %s: %s (dump it with --track-mem, without --parent, to start over): %w", pid, t.parentDir, why, track.ErrNoTracking)
		}
	}
	if t.parent != nil {
		// Every view of shared memory, before any page is copied: a page
		// written through one process's view is dirty for all.
		sd, err := mem.ScanShared(live, func(p int) bool { return t.procs[p] != nil && t.procs[p].incr })
		if err != nil {
			return fmt.Errorf("dump %d: shared memory: %w", pid, err)
		}
		t.shared = sd
	}
	if len(states) == 0 {
		return nil
	}
	// A child forked after its parent was tracked holds a copy of the
	// parent's userfaultfd at the same number: rtcr's, not the program's.
	for _, p := range live {
		for _, st := range states {
			if st.Pid == p || !isUffd(p, st.Fd) {
				continue
			}
			if same, err := sameFile(p, st.Pid, st.Fd); err == nil && same {
				fds.Skip(p, st.Fd)
				t.procs[p].inherited = append(t.procs[p].inherited, st.Fd)
			}
		}
	}
	return nil
}

// isUffd reports whether fd num of pid is a userfaultfd.
func isUffd(pid, num int) bool {
	link, err := procfs.ReadFDLink(pid, num)
	return err == nil && link == "anon_inode:[userfaultfd]"
}

// sameFile reports whether fd num of pids a and b is one open file (kcmp).
func sameFile(a, b, num int) (bool, error) {
	const kcmpFile = 0
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(a), uintptr(b), kcmpFile, uintptr(num), uintptr(num), 0)
	if errno != 0 {
		return false, fmt.Errorf("kcmp fd %d of %d and %d: %w", num, a, b, errno)
	}
	return r == 0, nil
}

// inject runs inside process pid while rtcr can make calls in it (r), before
// its memory is read: it closes inherited copies, creates or takes the
// process's userfaultfd, marks its state as in use (valid for no image
// until this dump completes) or, without TrackMem, ends its tracking.
func (t *tracking) inject(r *ptrace.Remote, pid int) error {
	pt := t.procs[pid]
	if pt == nil {
		return nil
	}
	for _, fd := range pt.inherited {
		if err := r.Close(fd); err != nil {
			return err
		}
	}
	var err error
	if pt.state != nil && (t.on || pt.incr) {
		if pt.own, err = track.Take(pid, pt.state.Fd); err != nil {
			return err
		}
	}
	switch {
	case t.on && pt.state == nil:
		// The state (naming no image) is saved before the fd exists.
		_, own, err := track.Create(r, func(fd, stray int) error {
			st, err := track.NewState(pid, fd)
			if err != nil {
				return err
			}
			st.Stray = &stray
			pt.state = st
			return st.Save()
		})
		if err != nil {
			return err
		}
		pt.own = own
		pt.state.Stray = nil
		return pt.state.Save()
	case t.on:
		pt.state.ImageID, pt.state.Dir, pt.state.Stray = "", "", nil
		return pt.state.Save()
	case pt.state != nil:
		// Tracking ends: the target's copy goes now, rtcr's after the
		// scan (if any); then the kernel drops the registrations.
		if err := r.Close(pt.state.Fd); err != nil {
			return err
		}
		return track.Remove(pid)
	}
	return nil
}

// skipOwn tells fds to leave out the userfaultfd of process pid, which
// inject may have just created: the fd table is read after the injections.
// It runs on the dump's goroutine (fds is not safe for concurrent use).
func (t *tracking) skipOwn(pid int, fds *files.Tree) {
	if pt := t.procs[pid]; pt != nil && pt.state != nil {
		fds.Skip(pid, pt.state.Fd)
	}
}

// memIncr returns the Incr for the memory of process pid (imagePid: its
// pid in the image), or nil when it is not tracked.
func (t *tracking) memIncr(pid, imagePid int) (*mem.Incr, error) {
	pt := t.procs[pid]
	if pt == nil || pt.state == nil {
		return nil, nil
	}
	// Its "uw" flags are rtcr's even once its copy is closed here (a
	// child's inherited copy may still hold the registrations).
	// Without TrackMem the tracking ends with this dump: nothing need be
	// protected again.
	pt.inc = &mem.Incr{Tracked: true, Last: !t.on}
	if pt.incr && pt.own >= 0 {
		s, err := track.OpenScanner(pid)
		if err != nil {
			return nil, err
		}
		pt.scanner = s
		pt.inc.Scan = s
		if t.parent != nil { // else a full image copied while it ran
			pt.inc.Parent = t.parent.ProcessByPid(imagePid)
		}
		pt.inc.Shared = t.shared
		t.pre.use(pid, pt.inc)
	}
	return pt.inc, nil
}

// protect, after the memory of pid is copied and while it is still
// frozen, registers its untracked mappings (private anonymous and file
// mappings, views of shared memory) and protects them; it protects the
// views of shared memory again, and after a full copy every tracked one. A mapping
// the kernel will not register stays untracked: the next dump copies it in
// full. It returns how many could not be registered.
func (t *tracking) protect(log *slog.Logger, pid int) int {
	if !t.sharedLogged {
		t.sharedLogged = true
		for _, why := range t.shared.Whole() {
			log.Info("shared memory saved whole", "why", why)
		}
		for _, v := range t.shared.Views() {
			log.Debug("shared memory scanned", "view", v)
		}
	}
	pt := t.procs[pid]
	if !t.on || pt == nil || pt.own < 0 || pt.inc == nil {
		return 0
	}
	failed := 0
	for _, r := range pt.inc.Untracked {
		if err := track.Register(pt.own, r[0], r[1]); err != nil {
			log.Debug("mapping not tracked", "pid", pid, "err", err)
			failed++
		}
	}
	// Shared views were scanned without protecting them (ScanShared).
	for _, r := range pt.inc.Reprotect {
		if err := track.Protect(pt.own, r[0], r[1]); err != nil {
			log.Debug("mapping not protected", "pid", pid, "err", err)
			failed++
		}
	}
	if !pt.incr {
		for _, r := range pt.inc.TrackedRanges {
			if err := track.Protect(pt.own, r[0], r[1]); err != nil {
				log.Debug("mapping not protected", "pid", pid, "err", err)
				failed++
			}
		}
	}
	return failed
}

// link fills the chain fields of the new checkpoint c.
func (t *tracking) link(c *image.Checkpoint, opts DumpOptions) {
	t.id = c.ID
	if t.parent != nil {
		c.Parent = &image.ParentLink{Dir: opts.Parent, ID: t.parent.ID, Sum: t.parent.SumHex()}
		c.ChainLen = t.parent.ChainLen + 1
	}
}

// finish runs after the dump: committed, each tracked process's state
// names the new image (dir); in any case rtcr's copies are closed. A
// failed dump leaves the states in use (valid for no image): the next
// increment is refused, and tracking goes on harmlessly until a full dump.
func (t *tracking) finish(committed bool, dir string) error {
	t.pre.close()
	var errs []error
	for _, pt := range t.procs {
		if pt.scanner != nil {
			pt.scanner.Close()
		}
		if pt.own >= 0 {
			unix.Close(pt.own)
		}
		if committed && t.on && pt.state != nil && pt.own >= 0 {
			pt.state.ImageID, pt.state.Dir = t.id, dir
			if err := pt.state.Save(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// imagePid is the pid process pid will have in the image: its pid inside
// the tree's namespace, or pid itself.
func imagePid(pid int, nested bool) (int, error) {
	if !nested {
		return pid, nil
	}
	return tree.InnerID(pid, pid)
}

// trackSummary is a log value naming the incremental processes.
func (t *tracking) trackSummary() string {
	var b strings.Builder
	for pid, pt := range t.procs {
		if pt.incr {
			fmt.Fprintf(&b, "%d ", pid)
		}
	}
	return strings.TrimSpace(b.String())
}
