package inspect

import (
	"fmt"
	"io"

	"github.com/rtcr/rtcr/internal/image"
	"golang.org/x/sys/unix"
)

// writeVMAs prints the memory map of a process and a totals line.
func writeVMAs(w io.Writer, vmas []image.VMA) {
	if !section(w, "VMAs", len(vmas)) {
		return
	}
	var mapped, saved, inParents, shared uint64
	tw := newTable(w)
	fmt.Fprintf(tw, "    RANGE\tSIZE\tPROT\tKIND\tBACKING\tSAVED\tIN PARENTS\tSHARED\n")
	for i := range vmas {
		v := &vmas[i]
		size := v.End - v.Start
		pages, older, cow := savedPages(v)
		mapped += size
		saved += pages * image.PageSize
		inParents += older * image.PageSize
		shared += cow * image.PageSize
		fmt.Fprintf(tw, "    %016x-%016x\t%s\t%s\t%s\t%s\t%d (%s)\t%d\t%d\n",
			v.Start, v.End, humanU(size), protString(v), orDash(v.Kind),
			backing(v), pages, humanU(pages*image.PageSize), older, cow)
	}
	tw.Flush()
	fmt.Fprintf(w, "    total: %d VMAs, %s mapped, %s saved here, %s in parent images, %s shared copy-on-write with an ancestor process (in its page file)\n",
		len(vmas), humanU(mapped), humanU(saved), humanU(inParents), humanU(shared))
}

// savedPages counts the pages of v stored in this image's page file of
// the process, those held by parent images, and those held by another
// process's page file (shared copy-on-write, PageRun.Pid).
func savedPages(v *image.VMA) (here, parents, shared uint64) {
	for _, r := range v.Pages {
		switch {
		case r.Pid != 0:
			shared += r.Count
		case r.Depth == 0:
			here += r.Count
		default:
			parents += r.Count
		}
	}
	return here, parents, shared
}

// protString formats the protection of v like the perms column of
// /proc/PID/maps: "r-xp", "rw-s".
func protString(v *image.VMA) string {
	b := []byte("---p")
	if v.Prot&unix.PROT_READ != 0 {
		b[0] = 'r'
	}
	if v.Prot&unix.PROT_WRITE != 0 {
		b[1] = 'w'
	}
	if v.Prot&unix.PROT_EXEC != 0 {
		b[2] = 'x'
	}
	if v.Shared {
		b[3] = 's'
	}
	return string(b)
}

// backing names what a VMA maps: its file, its /proc/PID/maps name, or "-".
func backing(v *image.VMA) string {
	if v.Path != "" {
		return v.Path
	}
	return orDash(v.Name)
}

// units are the binary size suffixes after bytes.
var units = []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}

// HumanSize formats a byte count for people: "512 B", "1.5 KiB",
// "5.0 GiB" (binary units, one decimal).
func HumanSize(n int64) string {
	if n < 0 {
		return "-" + humanU(uint64(-n))
	}
	return humanU(uint64(n))
}

// humanU is HumanSize for unsigned counts.
func humanU(n uint64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n) / 1024
	i := 0
	// Move up a unit when the value would round to 1024.0.
	for v >= 1023.95 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

// writeMapFiles prints the memfds and deleted files a process maps that
// the image records on no earlier fd or process.
func writeMapFiles(w io.Writer, fds []image.FD) {
	if !section(w, "Mapped memfds and deleted files", len(fds)) {
		return
	}
	tw := newTable(w)
	fmt.Fprintf(tw, "    KIND\tSIZE\tDATA\tDESCRIPTION\n")
	for _, f := range fds {
		var data int
		for _, r := range f.MemfdData {
			data += len(r.Data)
		}
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\n", orDash(f.Kind), HumanSize(f.Size), HumanSize(int64(data)), orDash(f.Desc))
	}
	tw.Flush()
}

// writeSysV prints the SysV shared memory segments of the image.
func writeSysV(w io.Writer, segs []image.SysVShm) {
	if len(segs) == 0 {
		return
	}
	fmt.Fprintf(w, "\nSysV shared memory (%d)\n", len(segs))
	tw := newTable(w)
	fmt.Fprintf(tw, "    ID\tKEY\tSIZE\tMODE\tOWNER\tCREATOR\tSTATE\tCONTENTS\n")
	for _, s := range segs {
		state := "-"
		switch {
		case s.Removed && s.Locked:
			state = "removed, locked"
		case s.Removed:
			state = "removed"
		case s.Locked:
			state = "locked"
		}
		fmt.Fprintf(tw, "    %d\t%#x\t%s\t%04o\t%d:%d\t%d:%d\t%s\tpid %d at %#x\n",
			s.ID, uint32(s.Key), humanU(s.Size), s.Mode, s.UID, s.GID, s.CUID, s.CGID, state, s.Pid, s.Start)
	}
	tw.Flush()
}
