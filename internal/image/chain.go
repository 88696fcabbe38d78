package image

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// An incremental image holds only the pages written since its parent; its
// manifest is complete (every mapping, fd, thread), and each page run says
// which image of the chain holds the pages (PageRun.Depth). Page runs are
// flattened at dump time: a run an ancestor holds names that ancestor
// directly, so a restore reads each page from exactly one page file. The
// chain is checked link by link (id and manifest checksum) before any
// process is created.

// NewID returns a fresh image id: 16 random bytes, hex.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// SumHex returns c.Sum (the SHA-256 of its manifest payload) in hex.
func (c *Checkpoint) SumHex() string { return hex.EncodeToString(c.Sum[:]) }

// validID reports whether id is 32 lower-case hex digits.
func validID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

// validateChain checks the chain fields of c: its id, the parent link and
// that every page run names an image within the chain.
func validateChain(c *Checkpoint) error {
	if c.ID != "" && !validID(c.ID) {
		return fmt.Errorf("image id %q is not 32 hex digits", c.ID)
	}
	if c.FreezeNs < 0 {
		return fmt.Errorf("freeze time %d ns", c.FreezeNs)
	}
	if c.ChainLen < 0 || c.ChainLen > MaxChain {
		return fmt.Errorf("chain of %d images behind this one, at most %d", c.ChainLen, MaxChain)
	}
	if (c.Parent == nil) != (c.ChainLen == 0) {
		return fmt.Errorf("parent link %v with a chain of %d images behind", c.Parent != nil, c.ChainLen)
	}
	if l := c.Parent; l != nil {
		if c.ID == "" {
			return fmt.Errorf("incremental image without an id")
		}
		if !validID(l.ID) || l.ID == c.ID {
			return fmt.Errorf("parent id %q is not 32 hex digits or is the image's own", l.ID)
		}
		if len(l.Sum) != 64 || !validHex(l.Sum) {
			return fmt.Errorf("parent checksum %q is not 64 hex digits", l.Sum)
		}
		if l.Dir == "" || len(l.Dir) > 4096 || strings.ContainsRune(l.Dir, 0) {
			return fmt.Errorf("parent directory %q empty, too long or with a NUL byte", l.Dir)
		}
	}
	for i := range c.Processes {
		p := &c.Processes[i]
		for j := range p.VMAs {
			v := &p.VMAs[j]
			for _, r := range v.Pages {
				if r.Depth > c.ChainLen {
					return fmt.Errorf("pid %d: page run at %#x in image %d of a chain of %d", p.Pid, r.Addr, r.Depth, c.ChainLen)
				}
				// Shared anonymous memory and SysV segments take pages from
				// a parent (dirty tracking covers every view); a shared
				// file mapping has no pages at all (Validate).
				if r.Depth > 0 && v.Shared && v.Kind != KindSharedAnon && v.Kind != KindSysV {
					return fmt.Errorf("pid %d: page run at %#x of a shared %s mapping held by a parent image", p.Pid, r.Addr, v.Kind)
				}
			}
		}
	}
	return nil
}

func validHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// ParentDir resolves the parent link of the image in dir: relative to dir
// unless absolute.
func ParentDir(dir string, l *ParentLink) string {
	if filepath.IsAbs(l.Dir) {
		return filepath.Clean(l.Dir)
	}
	return filepath.Join(dir, l.Dir)
}

// ErrParentChanged marks a chain link that no longer matches its parent
// (its checksum or chain length): a damaged chain, or a merge of a
// checkpoint series that rtcr was killed in (FinishInterruptedMerges).
var ErrParentChanged = errors.New("parent changed")

// CheckChainLink checks that parent is the image child's link names: the
// same id and manifest checksum, and a chain one image shorter. (The page
// runs child takes from it are checked by CheckAncestorRuns.) parentDir
// names the parent in errors.
func CheckChainLink(child, parent *Checkpoint, parentDir string) error {
	l := child.Parent
	if parent.ID != l.ID {
		return fmt.Errorf("parent image %s has id %q, the child names %q: %w", parentDir, parent.ID, l.ID, ErrCorrupt)
	}
	if parent.SumHex() != l.Sum {
		return fmt.Errorf("parent image %s changed since the child was written (manifest checksum %s, the child names %s): %w (%w)", parentDir, parent.SumHex(), l.Sum, ErrCorrupt, ErrParentChanged)
	}
	if parent.ChainLen != child.ChainLen-1 {
		return fmt.Errorf("parent image %s has %d images behind it, the child says %d: %w (%w)", parentDir, parent.ChainLen, child.ChainLen-1, ErrCorrupt, ErrParentChanged)
	}
	return nil
}

// CheckAncestorRuns checks that the runs of p held by ancestor depth
// (image ac) lie within the page file of the process holding them (p's
// own, or that of the process PageRun.Pid names). dir names the ancestor
// in errors.
func CheckAncestorRuns(p *Process, depth int, ac *Checkpoint, dir string) error {
	for j := range p.VMAs {
		for _, r := range p.VMAs[j].Pages {
			if r.Depth != depth {
				continue
			}
			owner := r.Owner(p.Pid)
			anc := ac.ProcessByPid(owner)
			if anc == nil || anc.Zombie {
				return fmt.Errorf("pid %d: page run at %#x is in image %s, which has no process %d: %w", p.Pid, r.Addr, dir, owner, ErrCorrupt)
			}
			if r.FileOff >= anc.PageFileSize || r.Count > uint64(anc.PageFileSize-r.FileOff)/PageSize {
				return fmt.Errorf("pid %d: page run at %#x: %d pages at offset %d beyond the page file of %s (%d bytes): %w",
					p.Pid, r.Addr, r.Count, r.FileOff, dir, anc.PageFileSize, ErrCorrupt)
			}
		}
	}
	return nil
}

// runs calls f with each page run of each process of c (pid: the
// process the run belongs to), in place: f may change the run. It stops
// at, and returns, f's first error.
func (c *Checkpoint) runs(f func(pid int, r *PageRun) error) error {
	for i := range c.Processes {
		p := &c.Processes[i]
		for j := range p.VMAs {
			v := &p.VMAs[j]
			for k := range v.Pages {
				if err := f(p.Pid, &v.Pages[k]); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// PageRunCount returns how many page runs the mappings of c's processes
// hold in all.
func (c *Checkpoint) PageRunCount() int {
	n := 0
	for i := range c.Processes {
		for j := range c.Processes[i].VMAs {
			n += len(c.Processes[i].VMAs[j].Pages)
		}
	}
	return n
}

// ProcessByPid returns the process pid of c, or nil.
func (c *Checkpoint) ProcessByPid(pid int) *Process {
	for i := range c.Processes {
		if c.Processes[i].Pid == pid {
			return &c.Processes[i]
		}
	}
	return nil
}

// PageCounts returns how many pages of p its own page file in this image
// holds and how many its page files in the ancestors hold (the pages held
// by another process's page file are counted by SharedPages).
func PageCounts(p *Process) (here, parents uint64) {
	for j := range p.VMAs {
		for _, r := range p.VMAs[j].Pages {
			if r.Pid != 0 {
				continue
			}
			if r.Depth == 0 {
				here += r.Count
			} else {
				parents += r.Count
			}
		}
	}
	return here, parents
}

// SharedPages returns how many pages of p are held by another process's
// page file (shared copy-on-write with an ancestor at the dump).
func SharedPages(p *Process) uint64 {
	var n uint64
	for j := range p.VMAs {
		for _, r := range p.VMAs[j].Pages {
			if r.Pid != 0 {
				n += r.Count
			}
		}
	}
	return n
}
