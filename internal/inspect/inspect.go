// Package inspect prints, for people, what a checkpoint image holds: the
// header, then for every process its identity, memory map, open files,
// signal actions, threads and resource limits, as aligned text tables.
package inspect

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/rtcr/rtcr/internal/image"
)

// Write prints a readable description of checkpoint c, read from image
// directory dir, to w. It returns the first error w reported.
func Write(w io.Writer, dir string, c *image.Checkpoint) error {
	if c == nil {
		return errors.New("inspect: nil checkpoint")
	}
	ew := &errWriter{w: w}
	writeHeader(ew, dir, c)
	writeExternals(ew, c)
	for i := range c.Processes {
		p := &c.Processes[i]
		fmt.Fprintf(ew, "\nProcess %d (%s)\n", p.Pid, p.Comm)
		writeTree(ew, p)
		if p.Zombie {
			continue
		}
		writeProcess(ew, p)
		writeCreds(ew, p)
		writeMM(ew, &p.MM)
		writeVMAs(ew, p.VMAs)
		writeFDs(ew, p.FDs)
		writeMapFiles(ew, p.MapFiles)
		writeSigactions(ew, p.Sigactions)
		writeThreads(ew, p.Threads)
		writeRlimits(ew, p.Rlimits)
		writeTimers(ew, p)
	}
	writeSysV(ew, c.SysVShm)
	return ew.err
}

// errWriter remembers the first write error and drops every later write,
// so the section printers need not check each Fprintf.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

// newTable returns a tabwriter over w with two spaces between columns.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// section prints a section title; when n is zero it also prints "(none)"
// and reports false, so the caller can skip its table.
func section(w io.Writer, title string, n int) bool {
	fmt.Fprintf(w, "\n  %s (%d)\n", title, n)
	if n == 0 {
		fmt.Fprintf(w, "    (none)\n")
		return false
	}
	return true
}

// formatVersion is the manifest format version v ("": a checkpoint not
// read from a manifest).
func formatVersion(v int) string {
	if v == 0 {
		return ""
	}
	return strconv.Itoa(v)
}

// writeHeader prints the image-wide fields.
func writeHeader(w io.Writer, dir string, c *image.Checkpoint) {
	created := "-"
	if c.Created != 0 {
		created = time.Unix(0, c.Created).UTC().Format(time.RFC3339)
	}
	tw := newTable(w)
	fmt.Fprintf(tw, "image\t%s\n", dir)
	fmt.Fprintf(tw, "format\t%s\n", orDash(formatVersion(c.Version)))
	fmt.Fprintf(tw, "kernel\t%s\n", orDash(c.Kernel))
	fmt.Fprintf(tw, "arch\t%s\n", orDash(c.Arch))
	fmt.Fprintf(tw, "created\t%s\n", created)
	fmt.Fprintf(tw, "processes\t%d\n", len(c.Processes))
	if c.ID != "" {
		fmt.Fprintf(tw, "id\t%s\n", c.ID)
	}
	if c.FreezeNs != 0 {
		fmt.Fprintf(tw, "freeze\t%v (the tree was stopped this long when the image was written)\n", time.Duration(c.FreezeNs).Round(time.Microsecond))
	}
	if b := c.Budget; b != nil {
		verdict := "met"
		if b.Over != "" {
			verdict = "missed: " + b.Over
		}
		fmt.Fprintf(tw, "budget\t%v %s (%d pre-copy rounds, %d pages copied while running, %d in the freeze)\n",
			time.Duration(b.MaxNs), verdict, b.Rounds, b.PreCopied, b.Frozen)
	}
	if l := c.Parent; l != nil {
		fmt.Fprintf(tw, "parent\t%s (id %s, manifest sha256 %s; %d images behind this one)\n", l.Dir, l.ID, l.Sum, c.ChainLen)
	} else {
		fmt.Fprintf(tw, "parent\tnone (a full image)\n")
	}
	var here, parents, shared uint64
	for i := range c.Processes {
		h, p := image.PageCounts(&c.Processes[i])
		here, parents = here+h, parents+p
		shared += image.SharedPages(&c.Processes[i])
	}
	fmt.Fprintf(tw, "pages\t%d here (%s), %d from parent images (%s), %d more named as an ancestor process's (shared copy-on-write, %s)\n",
		here, humanU(here*image.PageSize), parents, humanU(parents*image.PageSize), shared, humanU(shared*image.PageSize))
	if c.PidNS {
		fmt.Fprintf(tw, "namespaces\tpid and time (started by rtcr run; pids as seen inside)\n")
	}
	if c.Clocks != nil {
		fmt.Fprintf(tw, "clocks\tmonotonic %v, boottime %v at the checkpoint\n",
			time.Duration(c.Clocks.Monotonic), time.Duration(c.Clocks.Boottime))
	}
	if c.NetLock != "" {
		fmt.Fprintf(tw, "network lock\tnftables table inet %s (restore removes it; `nft delete table inet %s` drops it)\n", c.NetLock, c.NetLock)
	}
	tw.Flush()
}

// writeProcess prints the identity and page-file fields of p.
func writeProcess(w io.Writer, p *image.Process) {
	tw := newTable(w)
	fmt.Fprintf(tw, "  pid\t%d\n", p.Pid)
	fmt.Fprintf(tw, "  comm\t%s\n", orDash(p.Comm))
	fmt.Fprintf(tw, "  exe\t%s\n", orDash(p.Exe))
	if p.CwdDeleted != nil {
		fmt.Fprintf(tw, "  cwd\t%s (deleted)\n", p.Cwd)
	} else {
		fmt.Fprintf(tw, "  cwd\t%s\n", orDash(p.Cwd))
	}
	fmt.Fprintf(tw, "  umask\t%04o\n", p.Umask)
	fmt.Fprintf(tw, "  personality\t%#x\n", p.Personality)
	fmt.Fprintf(tw, "  page file\t%s, %s (%d bytes)\n",
		orDash(p.PageFile), HumanSize(p.PageFileSize), p.PageFileSize)
	fmt.Fprintf(tw, "  checksums\t%d (CRC-32C per %s)\n",
		len(p.PageChecksums), HumanSize(image.PageChunkSize))
	fmt.Fprintf(tw, "  vdso\t%s\n", HumanSize(int64(len(p.VDSO))))
	tw.Flush()
}

// writeMM prints the mm_struct fields.
func writeMM(w io.Writer, mm *image.MM) {
	tw := newTable(w)
	fmt.Fprintf(tw, "  code\t%s\n", hexRange(mm.StartCode, mm.EndCode))
	fmt.Fprintf(tw, "  data\t%s\n", hexRange(mm.StartData, mm.EndData))
	fmt.Fprintf(tw, "  start_brk\t%#x\n", mm.StartBrk)
	fmt.Fprintf(tw, "  brk\t%#x\n", mm.Brk)
	fmt.Fprintf(tw, "  start_stack\t%#x\n", mm.StartStack)
	fmt.Fprintf(tw, "  args\t%s\n", hexRange(mm.ArgStart, mm.ArgEnd))
	fmt.Fprintf(tw, "  env\t%s\n", hexRange(mm.EnvStart, mm.EnvEnd))
	fmt.Fprintf(tw, "  auxv\t%d words\n", len(mm.Auxv))
	tw.Flush()
}

// hexRange formats an address range as "0xstart-0xend".
func hexRange(start, end uint64) string {
	return fmt.Sprintf("%#x-%#x", start, end)
}

// orDash returns s, or "-" when s is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
