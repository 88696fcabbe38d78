package mem

import (
	"fmt"
	"sort"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
)

// Forked names, for the dump of a process, its parent in the tree, already
// dumped into the same image: the pages the process still shares with it
// copy-on-write (inherited across fork and written by neither since: the
// same physical page, by the frame numbers of /proc/PID/pagemap, which
// only root reads) are not saved again but recorded as the parent's runs
// (PageRun.Pid names the process whose page file holds them). See
// "Copy-on-write sharing" in doc.go.
type Forked struct {
	// Pid is the parent's pid as rtcr sees it (its pagemap is read; it
	// is frozen like the process).
	Pid int
	// ImagePid is its pid in the image.
	ImagePid int
	// VMAs are its mappings in this image, with their runs.
	VMAs []image.VMA
}

// cowScan finds the pages of one process shared with its parent.
type cowScan struct {
	pm      *procfs.Pagemap
	runs    []image.PageRun // the parent's runs of private mappings, by address, Pid set
	entries []uint64
}

// newCowScan opens the parent's pagemap; nil when f is nil.
func newCowScan(f *Forked) (*cowScan, error) {
	if f == nil {
		return nil, nil
	}
	pm, err := procfs.OpenPagemap(f.Pid)
	if err != nil {
		return nil, fmt.Errorf("parent %d: %w", f.Pid, err)
	}
	cs := &cowScan{pm: pm}
	for _, v := range f.VMAs {
		if !privateMemory(&v) {
			continue
		}
		for _, r := range v.Pages {
			r.Pid = r.Owner(f.ImagePid)
			cs.runs = append(cs.runs, r)
		}
	}
	sort.Slice(cs.runs, func(i, j int) bool { return cs.runs[i].Addr < cs.runs[j].Addr })
	return cs, nil
}

func (cs *cowScan) close() {
	if cs != nil {
		_ = cs.pm.Close()
	}
}

// privateMemory reports whether v is private memory whose pages may be
// shared copy-on-write with a parent: anonymous memory, heap, stack, and
// the copied pages of private file mappings.
func privateMemory(v *image.VMA) bool {
	if v.Shared || v.ShareOf != nil {
		return false
	}
	switch v.Kind {
	case image.KindAnon, image.KindHeap, image.KindStack, image.KindFile, image.KindMemfd, image.KindDeleted:
		return true
	}
	return false
}

// candidate reports whether the page with pagemap entry e may be an
// anonymous page shared copy-on-write with another process: present, not
// a file or shared memory page, not mapped exclusively, with a frame
// number (0 without CAP_SYS_ADMIN).
func candidate(e uint64) bool {
	return e&procfs.PM_PRESENT != 0 && e&(procfs.PM_FILE|procfs.PM_EXCLUSIVE) == 0 && e&procfs.PM_PFN_MASK != 0
}

// parentEntries reads the parent's pagemap entries of [start, end) when
// one of the child's entries there is a candidate; nil otherwise.
func (cs *cowScan) parentEntries(start, end uint64, child []uint64) ([]uint64, error) {
	any := false
	for _, e := range child {
		if candidate(e) {
			any = true
			break
		}
	}
	if !any {
		return nil, nil
	}
	var err error
	cs.entries, err = cs.pm.Read(start, end, cs.entries)
	if err != nil {
		return nil, err
	}
	return cs.entries, nil
}

// source returns the parent's run of the page at addr (one page), when
// the child's entry e and the parent's pe show the same physical page and
// the parent's image holds that page.
func (cs *cowScan) source(addr, e, pe uint64) (image.PageRun, bool) {
	if !candidate(e) || pe&procfs.PM_PRESENT == 0 || pe&procfs.PM_PFN_MASK != e&procfs.PM_PFN_MASK {
		return image.PageRun{}, false
	}
	i := sort.Search(len(cs.runs), func(i int) bool { return cs.runs[i].Addr+cs.runs[i].Count*image.PageSize > addr })
	if i == len(cs.runs) || cs.runs[i].Addr > addr {
		return image.PageRun{}, false
	}
	r := cs.runs[i]
	return image.PageRun{Addr: addr, Count: 1, FileOff: r.FileOff + int64(addr-r.Addr), Depth: r.Depth, Pid: r.Pid}, true
}
