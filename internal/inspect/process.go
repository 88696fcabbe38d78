package inspect

import (
	"fmt"
	"io"
	"time"

	"github.com/rtcr/rtcr/internal/image"
	"golang.org/x/sys/unix"
)

// writeTree prints where p sits in the tree, and a zombie's exit status.
func writeTree(w io.Writer, p *image.Process) {
	tw := newTable(w)
	fmt.Fprintf(tw, "  parent\t%d\n", p.Ppid)
	fmt.Fprintf(tw, "  group, session\t%d, %d\n", p.Pgid, p.Sid)
	if p.Zombie {
		fmt.Fprintf(tw, "  zombie\texited, wait status %#x, not reaped yet\n", p.ExitStatus)
	}
	if p.Stopped {
		fmt.Fprintf(tw, "  stopped\tby a signal; restored stopped\n")
	}
	if p.Tty != 0 {
		fmt.Fprintf(tw, "  terminal\tdevice %d:%d, foreground group %d\n", unix.Major(p.Tty), unix.Minor(p.Tty), p.TtyFg)
	}
	tw.Flush()
}

// writeCreds prints p's credentials, prctl state and pending signals.
func writeCreds(w io.Writer, p *image.Process) {
	tw := newTable(w)
	if c := p.Creds; c != nil {
		fmt.Fprintf(tw, "  uids\t%d %d %d %d (real, effective, saved, fs)\n", c.Uid, c.Euid, c.Suid, c.Fsuid)
		fmt.Fprintf(tw, "  gids\t%d %d %d %d, groups %v\n", c.Gid, c.Egid, c.Sgid, c.Fsgid, c.Groups)
		fmt.Fprintf(tw, "  capabilities\teff %#x prm %#x inh %#x bnd %#x amb %#x\n", c.CapEff, c.CapPrm, c.CapInh, c.CapBnd, c.CapAmb)
		fmt.Fprintf(tw, "  securebits, no_new_privs\t%#x, %v\n", c.Securebits, c.NoNewPrivs)
	}
	fmt.Fprintf(tw, "  dumpable, subreaper, pdeathsig\t%d, %v, %d\n", p.Prctl.Dumpable, p.Prctl.ChildSubreaper, p.Prctl.PdeathSig)
	var strict []int
	for _, th := range p.Threads {
		if th.SeccompStrict {
			strict = append(strict, th.Tid)
		}
	}
	switch {
	case len(p.SeccompFilters) > 0:
		insns := 0
		for _, f := range p.SeccompFilters {
			insns += len(f.Prog) / 8
		}
		fmt.Fprintf(tw, "  seccomp	%d filters (%d instructions), every thread\n", len(p.SeccompFilters), insns)
	case len(strict) > 0:
		fmt.Fprintf(tw, "  seccomp	strict mode in threads %v\n", strict)
	}
	pending := len(p.SharedPending)
	for _, th := range p.Threads {
		pending += len(th.Pending)
	}
	fmt.Fprintf(tw, "  pending signals\t%d (%d for the process)\n", pending, len(p.SharedPending))
	tw.Flush()
}

// writeTimers prints the interval and POSIX timers of p.
func writeTimers(w io.Writer, p *image.Process) {
	names := []string{"real", "virtual", "prof"}
	armed := 0
	for _, it := range p.Itimers {
		if it.ValueNs != 0 {
			armed++
		}
	}
	if !section(w, "Timers", armed+len(p.PosixTimers)) {
		return
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "    TIMER\tCLOCK\tSIGNAL\tNEXT\tINTERVAL")
	for i, it := range p.Itimers {
		if it.ValueNs != 0 && i < len(names) {
			fmt.Fprintf(tw, "    itimer %s\t-\t-\t%v\t%v\n", names[i], time.Duration(it.ValueNs), time.Duration(it.IntervalNs))
		}
	}
	for _, pt := range p.PosixTimers {
		next := "disarmed"
		if pt.ValueNs != 0 {
			next = time.Duration(pt.ValueNs).String()
		}
		fmt.Fprintf(tw, "    timer %d\t%d\t%s\t%s\t%v\n", pt.ID, pt.Clock, signalName(int(pt.Signo)), next, time.Duration(pt.IntervalNs))
	}
	tw.Flush()
}
