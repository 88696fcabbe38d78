package rtcr

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/mem"
)

// openChain opens the ancestors of the incremental image c (in
// opts.Dir), nearest first, and checks every link before any process
// exists: each parent must be the image the child names (id and manifest
// SHA-256), one image shorter, owned like the image itself, and hold
// every page run the child takes from it within its page files. The page
// files that hold runs of c are mapped and verified into pages[pid][k]
// (k: the ancestor's depth); their unmap functions join closers.
func openChain(c *image.Checkpoint, opts RestoreOptions, owner image.Owner, pages mem.PageFiles, closers *[]func() error) error {
	cur, curDir := c, opts.Dir
	for depth := 1; depth <= c.ChainLen; depth++ {
		pdir := image.ParentDir(curDir, cur.Parent)
		pc, err := openAncestor(c, depth, pdir, opts, owner, pages, closers, cur)
		if err != nil {
			return fmt.Errorf("image chain, parent %d (%s): %w", depth, pdir, err)
		}
		cur, curDir = pc, pdir
	}
	return nil
}

// openAncestor opens the image in pdir, the ancestor at depth of c and
// the parent of child, checks the link and loads the page files c needs.
func openAncestor(c *image.Checkpoint, depth int, pdir string, opts RestoreOptions, owner image.Owner, pages mem.PageFiles, closers *[]func() error, child *image.Checkpoint) (*image.Checkpoint, error) {
	d, err := image.OpenDir(pdir, uint32(os.Geteuid()), opts.TrustImageOwner)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	d.Verified = opts.verifiedParents
	if d.Owner.Root != owner.Root || d.Owner.Uid != owner.Uid {
		return nil, fmt.Errorf("owned by another user than the image restored: %w", image.ErrUntrusted)
	}
	pc := opts.parent.at(depth, pdir)
	if pc == nil {
		if pc, err = d.ReadManifest(); err != nil {
			return nil, err
		}
	}
	if err := image.CheckChainLink(child, pc, pdir); err != nil {
		return nil, err
	}
	for i := range c.Processes {
		if err := image.CheckAncestorRuns(&c.Processes[i], depth, pc, pdir); err != nil {
			return nil, err
		}
	}
	for _, pid := range ownersAt(c, depth) {
		anc := pc.ProcessByPid(pid)
		if anc.PageFile != "" {
			if err := d.CheckFile(anc.PageFile); err != nil {
				return nil, fmt.Errorf("pid %d: %w", pid, err)
			}
		}
		data, closePages, err := opts.openPages(d, anc, depth, c.ChainLen)
		if err != nil {
			return nil, fmt.Errorf("pid %d: %w", pid, err)
		}
		*closers = append(*closers, closePages)
		if pages[pid] == nil {
			pages[pid] = make([][]byte, c.ChainLen+1) // a process gone since
		}
		pages[pid][depth] = data
	}
	return pc, nil
}

// ownersAt returns the pids whose page files in the image at depth hold
// runs of c (a process's own, or one whose pages it shares; that process
// may be gone since), sorted.
func ownersAt(c *image.Checkpoint, depth int) []int {
	need := map[int]bool{}
	for i := range c.Processes {
		p := &c.Processes[i]
		for j := range p.VMAs {
			for _, r := range p.VMAs[j].Pages {
				if r.Depth == depth {
					need[r.Owner(p.Pid)] = true
				}
			}
		}
	}
	out := make([]int, 0, len(need))
	for pid := range need {
		out = append(out, pid)
	}
	sort.Ints(out)
	return out
}

// readManifest is the manifest of an image already read and checked, and
// the directory it was read from (RestoreOptions.parent).
type readManifest struct {
	dir string
	c   *image.Checkpoint
}

// at returns the manifest when the ancestor at depth, in pdir, is the
// parent it was read from; nil otherwise (read it).
func (m *readManifest) at(depth int, pdir string) *image.Checkpoint {
	if m == nil || depth != 1 || filepath.Clean(pdir) != filepath.Clean(m.dir) {
		return nil
	}
	return m.c
}
