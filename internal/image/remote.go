package image

import (
	"errors"
	"fmt"
)

// Post-copy images (rtcr migrate --lazy): the dump leaves the contents of
// private anonymous memory out and records, per mapping, the spans of
// pages that exist (VMA.Remote); the source stays frozen and serves them
// while the destination runs. Such an image (Checkpoint.RemotePages) is
// restored only by a lazy restore given a source of those pages; a plain
// restore refuses it (it would bring back zeros).

// PageSpan is a run of consecutive pages, by address.
type PageSpan struct {
	Addr  uint64 // address of the first page
	Count uint64 // number of pages
}

// End is the address after the span's last page.
func (s PageSpan) End() uint64 { return s.Addr + s.Count*PageSize }

// ErrRemotePages refuses an image whose private memory is not in it (a
// post-copy migration's) where no source of its pages is given.
var ErrRemotePages = errors.New("the image leaves its private memory to a migration source (post-copy): only a lazy restore fed by that source can restore it")

// RemoteKind reports whether v may have Remote spans: private anonymous
// memory (anon, heap, stack) that a lazy restore leaves to userfaultfd,
// that is not mlocked (mlock populates), wipe-on-fork or MAP_DROPPABLE
// (see mem.Lazy); other memory is saved in the image as usual.
func RemoteKind(v *VMA) bool {
	if v.Shared || v.ShareOf != nil {
		return false
	}
	switch v.Kind {
	case KindAnon, KindHeap, KindStack:
	default:
		return false
	}
	return !v.HasVmFlag(VmLocked) && !v.HasVmFlag(VmWipeOnFork) && !v.HasVmFlag(VmDroppable)
}

// RemoteSpans returns the number of pages in the Remote spans of c.
func (c *Checkpoint) RemoteSpans() (pages uint64) {
	for i := range c.Processes {
		for j := range c.Processes[i].VMAs {
			for _, s := range c.Processes[i].VMAs[j].Remote {
				pages += s.Count
			}
		}
	}
	return pages
}

// validateRemotePages checks that Remote spans appear only in a full image
// marked RemotePages.
func validateRemotePages(c *Checkpoint) error {
	if !c.RemotePages {
		for i := range c.Processes {
			for j := range c.Processes[i].VMAs {
				if v := &c.Processes[i].VMAs[j]; len(v.Remote) > 0 {
					return fmt.Errorf("pid %d: vma %#x-%#x has remote pages in an image not marked for them", c.Processes[i].Pid, v.Start, v.End)
				}
			}
		}
		return nil
	}
	if c.Parent != nil || c.ChainLen != 0 {
		return errors.New("an image with remote pages must be a full image")
	}
	return nil
}

// validateRemote checks the Remote spans of v: page-aligned, inside v, in
// address order, not overlapping, only in private anonymous memory, and
// only in a mapping without saved runs (a post-copy dump saves none there).
func validateRemote(v *VMA) error {
	if len(v.Remote) == 0 {
		return nil
	}
	if !RemoteKind(v) {
		return fmt.Errorf("remote pages in a %s mapping (private anonymous memory only)", v.Kind)
	}
	if len(v.Pages) > 0 {
		return errors.New("remote pages and saved pages in one mapping")
	}
	var prev uint64
	for j, s := range v.Remote {
		if s.Count == 0 || s.Addr%PageSize != 0 {
			return fmt.Errorf("remote span at %#x of %d pages: empty or not page-aligned", s.Addr, s.Count)
		}
		// Written so that no product or sum can overflow.
		if s.Addr < v.Start || s.Addr >= v.End || s.Count > (v.End-s.Addr)/PageSize {
			return fmt.Errorf("remote span at %#x (%d pages): outside vma", s.Addr, s.Count)
		}
		if j > 0 && s.Addr < prev {
			return fmt.Errorf("remote span at %#x: overlaps or precedes the span before", s.Addr)
		}
		prev = s.End()
	}
	return nil
}
