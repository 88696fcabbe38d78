package mem

import (
	"errors"
	"fmt"
	"strings"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/vmaflags"
	"golang.org/x/sys/unix"
)

// A dump reads the layout of the frozen process from /proc/PID/maps and,
// at the same time on a goroutine of its own, /proc/PID/smaps, whose
// VmFlags it needs: for smaps the kernel walks every page table of the
// process to count its pages (6–36 ms for 1 GiB resident on our VMs),
// which is most of the fixed cost of an incremental freeze. The pages of
// private anonymous memory are saved meanwhile; the other mappings wait
// for smaps, and so does every decision the flags make (refusals, what is
// recorded, rtcr's tracking "uw") before the image is complete. Reading
// the flags before the freeze would not do: a flag set on a whole mapping
// (madvise, mlock, a userfaultfd registration) changes no line of maps.

// errLayoutChanged reports a process whose mappings differ between maps
// and smaps, both read while it was frozen.
var errLayoutChanged = errors.New("the layout of its memory changed while it was frozen (a process outside the tree sharing its memory?)")

// smapsRead is /proc/PID/smaps being read on a goroutine of its own, or
// read before the freeze and still true (pre: PreRead).
type smapsRead struct {
	done chan struct{}
	maps []procfs.Mapping
	err  error
	pre  bool
	// vmas and flags, instead of maps: the frozen process's mappings
	// (the VMA iterator) with the VmFlags of their words (flagWords),
	// joined with /proc/PID/maps by lines (withFlags).
	vmas  []vmaflags.VMA
	flags [][]string
}

// readSmaps starts reading /proc/PID/smaps of pid, or takes its pre-read
// (takePreRead); wait returns it.
func readSmaps(pid int) *smapsRead {
	r := &smapsRead{done: make(chan struct{})}
	if maps, vmas, flags := takePreRead(pid); maps != nil || vmas != nil {
		r.maps, r.vmas, r.flags, r.pre = maps, vmas, flags, true
		close(r.done)
		return r
	}
	return readSmapsNow(pid)
}

// readSmapsNow starts reading /proc/PID/smaps of pid on a goroutine of
// its own.
func readSmapsNow(pid int) *smapsRead {
	r := &smapsRead{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.maps, r.err = procfs.ReadSmaps(pid)
	}()
	return r
}

// wait waits for the read and returns its mappings.
func (r *smapsRead) wait() ([]procfs.Mapping, error) {
	<-r.done
	return r.maps, r.err
}

// join returns the mappings of the frozen process: smaps (read frozen or
// before), or maps' lines layout with the VmFlags of the flags words
// read frozen. A pre-read that does not fit layout's lines gives way to
// smaps read now.
func (r *smapsRead) join(pid int, layout []procfs.Mapping) ([]procfs.Mapping, error) {
	maps, err := r.wait()
	if err != nil {
		return nil, fmt.Errorf("dump memory of %d: %w", pid, err)
	}
	if r.vmas != nil {
		if m, ok := withFlags(layout, r.vmas, r.flags); ok {
			return m, nil
		}
	} else if !r.pre || joinLayout(pid, layout, maps) == nil {
		return maps, joinLayout(pid, layout, maps)
	}
	// Lines the pre-read showed differently (a name, a file): smaps
	// now.
	if maps, err = readSmapsNow(pid).wait(); err != nil {
		return nil, fmt.Errorf("dump memory of %d: %w", pid, err)
	}
	return maps, joinLayout(pid, layout, maps)
}

// early reports whether the pages of m, a line of /proc/PID/maps whose
// VmFlags are not known yet, may be saved before they are: private
// anonymous memory. No flag it may carry makes reading its pages harmful
// (device mappings, hugetlb and userfaultfd minor faults are file or
// shared memory; a page absent from pagemap, which userfaultfd's missing
// mode would catch, is never read); a flag rtcr refuses still fails the
// dump, at the join.
func early(m procfs.Mapping) bool {
	if m.Shared || m.Inode != 0 {
		return false
	}
	return m.Path == "" || m.Path == "[heap]" || m.Path == "[stack]" || strings.HasPrefix(m.Path, "[anon:")
}

// earlyVMA is a mapping saved before its VmFlags were known.
type earlyVMA struct {
	v image.VMA
	// incr: saved incrementally (its pages were registered for
	// rtcr's write-protect tracking); else in full.
	incr bool
	// unregistered is the scan's error that made an increment save it
	// in full (not registered for async write-protect tracking).
	unregistered error
}

// saveEarly saves the pages of the private anonymous mapping m before its
// VmFlags are known. In an increment it is taken to be tracked, and saved
// in full if the scan of its written pages says it is not registered (a
// mapping made since the parent image): the scan's check (PAGEMAP_SCAN
// with PM_SCAN_CHECK_WPASYNC) fails before it protects anything, and
// join checks the guess against the flags.
func (c *collector) saveEarly(m procfs.Mapping) (*earlyVMA, error) {
	v, _, err := classify(c.pid, m) // no VmFlags: none recorded, none refused yet
	if err != nil {
		return nil, err
	}
	e := &earlyVMA{v: v}
	guess := c.inc != nil && c.inc.Scan != nil
	err = c.savePages(&e.v, guess)
	if guess && errors.Is(err, unix.EPERM) {
		e.v.Pages, e.unregistered = nil, err
		err = c.savePages(&e.v, false)
	}
	e.incr = guess && e.unregistered == nil
	return e, err
}

// join completes v, the mapping classified with its VmFlags (tracked: its
// "uw" was rtcr's), with the pages e saved before they were known. It
// fails where the dump would have failed had the flags come first: a
// mapping registered for write-protect tracking but not rtcr's way.
func (e *earlyVMA) join(pid int, v *image.VMA, tracked bool, inc *Incr) error {
	if inc != nil && inc.Scan != nil {
		switch {
		case tracked && !e.incr:
			return e.unregistered
		case !tracked && e.incr:
			return fmt.Errorf("mapping %#x-%#x of %d: scanned as tracked, but smaps shows no %q: %w", v.Start, v.End, pid, uffdWP, errLayoutChanged)
		}
	}
	// What the flags decide (classify, checkFlags), on what was saved.
	w := e.v
	w.GrowsDown, w.VmFlags = v.GrowsDown, v.VmFlags
	*v = w
	return nil
}

// joinLayout checks that smaps shows the mappings maps showed, both read
// while pid was frozen: the pages saved from maps' lines are those of the
// mappings smaps names.
func joinLayout(pid int, maps, smaps []procfs.Mapping) error {
	for i := 0; i < max(len(maps), len(smaps)); i++ {
		var a, b procfs.Mapping
		if i < len(maps) {
			a = maps[i]
		}
		if i < len(smaps) {
			b = smaps[i]
		}
		b.VmFlags = nil
		if i >= len(maps) || i >= len(smaps) || !sameMapping(a, b) {
			return fmt.Errorf("dump memory of %d: mapping %d is %s in /proc/%d/maps but %s in smaps: %w", pid, i, describe(a, i < len(maps)), pid, describe(b, i < len(smaps)), errLayoutChanged)
		}
	}
	return nil
}

// sameMapping reports whether a and b are the same line of maps.
func sameMapping(a, b procfs.Mapping) bool {
	return a.Start == b.Start && a.End == b.End && a.Read == b.Read && a.Write == b.Write && a.Exec == b.Exec &&
		a.Shared == b.Shared && a.Offset == b.Offset && a.DevMajor == b.DevMajor && a.DevMinor == b.DevMinor &&
		a.Inode == b.Inode && a.Path == b.Path
}

// describe names m for an error (none: there is no such line).
func describe(m procfs.Mapping, there bool) string {
	if !there {
		return "absent"
	}
	return fmt.Sprintf("%#x-%#x %q", m.Start, m.End, m.Path)
}
