// Package kcheck tests whether this machine offers what rtcr needs: the
// architecture, kernel version, capabilities and the kernel interfaces that
// checkpoint and restore use. Every probe exercises the feature for real
// (it starts a restore stub, calls the ioctls …) rather than guessing from
// version numbers or configuration files.
package kcheck

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// Result is the outcome of one probe.
type Result struct {
	Feature  string // e.g. "clone3 with set_tid"
	Required bool   // rtcr cannot work without it (false: needed only by later features)
	OK       bool
	Detail   string // what was found / why it failed, one line
}

// probe runs one test and returns one or more Results (the stub session
// returns several, all found while one stub process exists).
type probe func() []Result

// probes is every probe, in the order Run reports them.
var probes = []probe{
	single(featArch, true, checkArch),
	single(featKernel, true, checkKernel),
	single(featCaps, true, checkCaps),
	single(featSysResource, false, checkSysResource),
	single(featPtraceScope, true, checkPtraceScope),
	single(featVMReadv, true, checkVMReadv),
	stubProbes,
	single(featTimeNS, true, checkTimeNS),
	single(featUffdWP, false, checkUffdWP),
	single(featUffdMissing, false, checkUffdMissing),
	single(featPagemapScan, false, checkPagemapScan),
	single(featSoftDirty, false, checkSoftDirty),
	single(featVMAIter, false, checkVMAIter),
}

// Feature names, in report order.
const (
	featArch        = "architecture x86_64"
	featKernel      = "kernel >= 6.7"
	featCaps        = "CAP_SYS_PTRACE + CAP_CHECKPOINT_RESTORE"
	featSysResource = "CAP_SYS_RESOURCE"
	featPtraceScope = "Yama ptrace_scope"
	featVMReadv     = "process_vm_readv"
	featStub        = "restore stub: memfd exec, ptrace injection, clone3 set_tid"
	featVDSO        = "arch_prctl ARCH_MAP_VDSO_64"
	featMMMap       = "PR_SET_MM_MAP"
	featTimeNS      = "pid and time namespaces (rtcr run)"
	featUffdWP      = "userfaultfd write-protect (async)"
	featUffdMissing = "userfaultfd missing pages with events (restore --lazy)"
	featPagemapScan = "PAGEMAP_SCAN ioctl"
	featSoftDirty   = "soft-dirty bits"
	featVMAIter     = "BPF VMA iterator (smaps before an increment's freeze)"
)

// Run runs every probe and returns their results in a fixed order.
func Run() []Result {
	var rs []Result
	for _, p := range probes {
		rs = append(rs, p()...)
	}
	return rs
}

// single turns a check into a probe with one Result: OK when check returns
// a nil error, Detail being check's detail or the error's text. A panic in
// check counts as a failure.
func single(feature string, required bool, check func() (string, error)) probe {
	return func() []Result {
		r := Result{Feature: feature, Required: required}
		detail, err := runCheck(check)
		if err != nil {
			r.Detail = err.Error()
		} else {
			r.OK, r.Detail = true, detail
		}
		return []Result{r}
	}
}

// runCheck calls check, turning a panic into an error.
func runCheck(check func() (string, error)) (detail string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("probe panicked: %v", p)
		}
	}()
	return check()
}

// Write prints results as an aligned table: FEATURE, NEEDED ("required" or
// "later"), STATUS ("ok", "FAILED" for a required probe, "missing" for one
// that only later features need) and DETAIL.
func Write(w io.Writer, rs []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FEATURE\tNEEDED\tSTATUS\tDETAIL")
	for _, r := range rs {
		needed, status := "later", "ok"
		if r.Required {
			needed = "required"
		}
		switch {
		case r.OK:
		case r.Required:
			status = "FAILED"
		default:
			status = "missing"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Feature, needed, status, r.Detail)
	}
	tw.Flush()
}

// AllRequiredOK reports whether every required probe passed.
func AllRequiredOK(rs []Result) bool {
	for _, r := range rs {
		if r.Required && !r.OK {
			return false
		}
	}
	return true
}
