package inspect

import (
	"fmt"
	"io"
	"strings"

	"github.com/rtcr/rtcr/internal/image"
)

// writeFDs prints the open file descriptors.
func writeFDs(w io.Writer, fds []image.FD) {
	if !section(w, "File descriptors", len(fds)) {
		return
	}
	tw := newTable(w)
	fmt.Fprintf(tw, "    FD\tKIND\tFLAGS\tOFFSET\tDESCRIPTION\n")
	for _, f := range fds {
		desc := f.Desc
		if desc == "" {
			desc = f.Path
		}
		fmt.Fprintf(tw, "    %d\t%s\t%s\t%d\t%s\n",
			f.Num, orDash(f.Kind), openFlags(f.Flags), f.Offset, orDash(desc))
	}
	tw.Flush()
}

// writeSigactions prints the saved signal dispositions.
func writeSigactions(w io.Writer, sas []image.Sigaction) {
	if !section(w, "Signal actions", len(sas)) {
		return
	}
	tw := newTable(w)
	fmt.Fprintf(tw, "    SIGNAL\tNAME\tHANDLER\tFLAGS\tMASK\n")
	for _, sa := range sas {
		fmt.Fprintf(tw, "    %d\t%s\t%s\t%#x\t%#x\n",
			sa.Signal, signalName(sa.Signal), handlerString(sa.Handler), sa.Flags, sa.Mask)
	}
	tw.Flush()
}

// handlerString names SIG_DFL and SIG_IGN, and prints other handlers as
// addresses.
func handlerString(h uint64) string {
	switch h {
	case 0:
		return "SIG_DFL"
	case 1:
		return "SIG_IGN"
	}
	return fmt.Sprintf("%#x", h)
}

// writeThreads prints the register and kernel state summary of each thread.
func writeThreads(w io.Writer, ths []image.Thread) {
	if !section(w, "Threads", len(ths)) {
		return
	}
	tw := newTable(w)
	fmt.Fprintf(tw, "    TID\tNAME\tRIP\tRSP\tFS_BASE\tSIGMASK\tXSTATE\tRSEQ\tSTATE\n")
	for i := range ths {
		t := &ths[i]
		rseq := "-"
		if t.Rseq != nil {
			rseq = fmt.Sprintf("%#x/%d", t.Rseq.Ptr, t.Rseq.Len)
		}
		state := t.Syscall
		if state == "" {
			state = "user space"
		}
		fmt.Fprintf(tw, "    %d\t%s\t%#x\t%#x\t%#x\t%#x\t%d B\t%s\t%s\n",
			t.Tid, orDash(t.Name), t.Regs.Rip, t.Regs.Rsp, t.Regs.Fs_base,
			t.SigMask, len(t.XState), rseq, state)
	}
	tw.Flush()
}

// rlimInfinity is RLIM_INFINITY.
const rlimInfinity = ^uint64(0)

// rlimitNames are the names of RLIMIT_* resources, indexed by number.
var rlimitNames = []string{
	"cpu", "fsize", "data", "stack", "core", "rss", "nproc", "nofile",
	"memlock", "as", "locks", "sigpending", "msgqueue", "nice", "rtprio", "rttime",
}

// writeRlimits prints the limits with a finite soft or hard value as a
// table, and lists the fully unlimited ones on one line.
func writeRlimits(w io.Writer, rls []image.Rlimit) {
	if !section(w, "Resource limits", len(rls)) {
		return
	}
	var unlimited []string
	tw := newTable(w)
	fmt.Fprintf(tw, "    RESOURCE\tSOFT\tHARD\n")
	for _, r := range rls {
		if r.Cur == rlimInfinity && r.Max == rlimInfinity {
			unlimited = append(unlimited, rlimitName(r.Resource))
			continue
		}
		fmt.Fprintf(tw, "    %s\t%s\t%s\n", rlimitName(r.Resource), rlimValue(r.Cur), rlimValue(r.Max))
	}
	tw.Flush()
	if len(unlimited) > 0 {
		fmt.Fprintf(w, "    unlimited: %s\n", strings.Join(unlimited, ", "))
	}
}

// rlimitName names an RLIMIT_* resource number.
func rlimitName(res int) string {
	if res >= 0 && res < len(rlimitNames) {
		return rlimitNames[res]
	}
	return fmt.Sprintf("resource %d", res)
}

// rlimValue formats one limit value, "unlimited" for RLIM_INFINITY.
func rlimValue(v uint64) string {
	if v == rlimInfinity {
		return "unlimited"
	}
	return fmt.Sprint(v)
}
