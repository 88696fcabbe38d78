package rtcr

import (
	"fmt"
	"os"

	"github.com/rtcr/rtcr/internal/image"
)

// openChain opens the ancestors of the incremental image c (in
// opts.Dir), nearest first, and checks every link before any process
// exists: each parent must be the image the child names (id and manifest
// SHA-256), one image shorter, owned like the image itself, and hold
// every page run the child takes from it within its page files. The page
// files that hold runs of c are mapped and verified into pages[pid][k]
// (k: the ancestor's depth); their unmap functions join closers.
func openChain(c *image.Checkpoint, opts RestoreOptions, owner image.Owner, pages map[int][][]byte, closers *[]func() error) error {
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
func openAncestor(c *image.Checkpoint, depth int, pdir string, opts RestoreOptions, owner image.Owner, pages map[int][][]byte, closers *[]func() error, child *image.Checkpoint) (*image.Checkpoint, error) {
	d, err := image.OpenDir(pdir, uint32(os.Geteuid()), opts.TrustImageOwner)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	if d.Owner.Root != owner.Root || d.Owner.Uid != owner.Uid {
		return nil, fmt.Errorf("owned by another user than the image restored: %w", image.ErrUntrusted)
	}
	pc, err := d.ReadManifest()
	if err != nil {
		return nil, err
	}
	if err := image.CheckChainLink(child, pc, pdir); err != nil {
		return nil, err
	}
	for i := range c.Processes {
		p := &c.Processes[i]
		anc := pc.ProcessByPid(p.Pid)
		if err := image.CheckAncestorRuns(p, depth, anc, pdir); err != nil {
			return nil, err
		}
		if anc == nil || !holdsDepth(p, depth) {
			continue
		}
		if anc.PageFile != "" {
			if err := d.CheckFile(anc.PageFile); err != nil {
				return nil, fmt.Errorf("pid %d: %w", p.Pid, err)
			}
		}
		data, closePages, err := d.OpenPages(anc)
		if err != nil {
			return nil, fmt.Errorf("pid %d: %w", p.Pid, err)
		}
		*closers = append(*closers, closePages)
		pages[p.Pid][depth] = data
	}
	return pc, nil
}

// holdsDepth reports whether a page run of p is held by the image at depth.
func holdsDepth(p *image.Process, depth int) bool {
	for j := range p.VMAs {
		for _, r := range p.VMAs[j].Pages {
			if r.Depth == depth {
				return true
			}
		}
	}
	return false
}
