package rtcr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/mem"
)

// laterPages are the page files of a dump that leaves the tree running
// whose writes go on after the release: the freeze holds until each
// process's pages are copied out of it (process_vm_readv into rtcr's
// buffers), not until the last buffers are written, the file fsynced and
// renamed into place. finish waits for them before the manifest, which
// names their sizes and checksums, is written: a write that fails then
// fails the dump, with the tree running, as a failure after the release
// always did.
type laterPages struct {
	pages []*laterPage
}

// laterPage is the page file of the process at index idx of the image's
// list, being written.
type laterPage struct {
	list *laterPages
	idx  int
	sf   *image.StageFile
	pw   *image.PageWriter
	wait func() error
}

// at returns the entry for the process that will be at index idx of the
// image's list (nil for a nil list: written before the release).
func (l *laterPages) at(idx int) *laterPage {
	if l == nil {
		return nil
	}
	return &laterPage{list: l, idx: idx}
}

// write copies the memory of p into its page file, whose writes go on.
func (lp *laterPage) write(ctx context.Context, stage *image.Stage, p *image.Process, shared *mem.Shared, inc *mem.Incr, forked *mem.Forked) error {
	sf, err := stage.OpenFile(p.PageFile)
	if err != nil {
		return err
	}
	pw := image.NewPageWriter(&ctxWriter{ctx: ctx, w: sf})
	vmas, vdso, size, wait, err := mem.DumpLater(p.Pid, pw, shared, inc, forked)
	if err != nil {
		_ = wait()
		sf.Discard()
		return err
	}
	p.VMAs, p.VDSO, p.PageFileSize = vmas, vdso, size
	lp.sf, lp.pw, lp.wait = sf, pw, wait
	lp.list.pages = append(lp.list.pages, lp)
	return nil
}

// finish waits for the page files still being written and finishes them
// (fsync, rename), recording their checksums in c (nil when the dump
// failed: they are discarded). It returns err, or the first write error.
func (l *laterPages) finish(log *slog.Logger, pid int, c *image.Checkpoint, err error) error {
	if len(l.pages) == 0 {
		return err
	}
	start := time.Now()
	var errs []error
	for _, lp := range l.pages {
		werr := lp.wait()
		if werr == nil && err == nil && c != nil {
			p := &c.Processes[lp.idx]
			if lp.pw.Offset() != p.PageFileSize {
				werr = fmt.Errorf("page file %s: %d bytes written, %d copied", p.PageFile, lp.pw.Offset(), p.PageFileSize)
			} else {
				p.PageChecksums = lp.pw.Checksums()
				werr = lp.sf.Finish()
			}
		}
		if werr != nil || err != nil || c == nil {
			lp.sf.Discard()
		}
		if werr != nil {
			errs = append(errs, fmt.Errorf("dump %d: write pages: %w", pid, werr))
		}
	}
	if err == nil {
		err = errors.Join(errs...)
	}
	logStep(log, pid, "page files", time.Since(start), "files", len(l.pages))
	return err
}
