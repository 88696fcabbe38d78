package mem

import (
	"fmt"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// constructedFlags are the VmFlags that follow from how restore maps a VMA
// (protection, MAP_SHARED, MAP_GROWSDOWN, the file and its open mode) or
// that are no user state (see the table in doc.go).
var constructedFlags = map[string]bool{
	"rd": true, "wr": true, "ex": true, "sh": true, "mr": true, "me": true,
	"ms": true, "gd": true, "ac": true, "sd": true, "dw": true,
}

// madvices are the VmFlags restored with madvise, by their advice.
var madvices = map[string]int{
	image.VmDontDump:   unix.MADV_DONTDUMP,
	image.VmDontFork:   unix.MADV_DONTFORK,
	image.VmWipeOnFork: unix.MADV_WIPEONFORK,
	image.VmHugePage:   unix.MADV_HUGEPAGE,
	image.VmNoHugePage: unix.MADV_NOHUGEPAGE,
	image.VmMergeable:  unix.MADV_MERGEABLE,
	image.VmSeqRead:    unix.MADV_SEQUENTIAL,
	image.VmRandRead:   unix.MADV_RANDOM,
}

// refusedFlags name the VmFlags a dump refuses, for the message.
var refusedFlags = map[string]string{
	"pf": "pure PFN range (VM_PFNMAP, a device mapping)",
	"io": "memory-mapped I/O (VM_IO, a device mapping)",
	"de": "do not expand (VM_DONTEXPAND, a driver or special mapping)",
	"ht": "hugetlb pages (VM_HUGETLB)",
	"sf": "synchronous page faults (VM_SYNC, MAP_SYNC on DAX)",
	"ar": "architecture specific flag (VM_ARCH_1)",
	"mm": "mixed map (VM_MIXEDMAP, a driver mapping)",
	"bt": "arm64 BTI guarded page",
	"mt": "arm64 MTE tags",
	"um": "userfaultfd missing-page tracking",
	"uw": "userfaultfd write-protect tracking",
	"ui": "userfaultfd minor-fault tracking",
	"ur": "userfaultfd read-write-protect tracking",
	"ss": "shadow stack",
	"sl": "sealed (mseal)",
	"gu": "guard regions (MADV_GUARD_INSTALL)",
}

// checkFlags records in v the VmFlags of m that restore sets itself, and
// refuses a mapping with a flag rtcr cannot restore. where names the
// mapping for the error. Mappings the kernel creates ([vdso], [vvar] …)
// are never checked: restore gets them from the kernel with their flags.
func checkFlags(m procfs.Mapping, v *image.VMA, where string) error {
	for _, f := range m.VmFlags {
		switch {
		case constructedFlags[f]:
		case f == image.VmMayWriteFile:
			// Private mappings always may write (copy-on-write); a
			// shared file mapping may only if its file was open for
			// writing: restore then opens it read-write too.
			if (v.FileBacked() || v.Kind == image.KindSysV) && v.Shared && v.Prot&unix.PROT_WRITE == 0 {
				v.VmFlags = append(v.VmFlags, f)
			}
		case madvices[f] != 0 || f == image.VmLocked || f == image.VmLockOnFault || f == image.VmNoReserve || f == image.VmDroppable:
			v.VmFlags = append(v.VmFlags, f)
		default:
			what, ok := refusedFlags[f]
			if !ok {
				what = "unknown to rtcr"
			}
			return fmt.Errorf("%s: VmFlags %q (%s): %w", where, f, what, ErrUnsupported)
		}
	}
	return nil
}

// mmapFlags are the mmap flags restore adds for v's VmFlags.
func mmapFlags(v *image.VMA) uint64 {
	var flags uint64
	if v.HasVmFlag(image.VmNoReserve) {
		flags |= unix.MAP_NORESERVE
	}
	return flags
}

// applyFlags sets v's VmFlags that come from madvise and mlock on the
// mapping r has restored at v, once its pages are in and its protection
// set (mlock faults pages in; it comes last).
func applyFlags(r *ptrace.Remote, v *image.VMA) error {
	lock := false
	for _, f := range v.VmFlags {
		advice, ok := madvices[f]
		switch {
		case ok:
			if _, err := r.Syscall(unix.SYS_MADVISE, v.Start, v.End-v.Start, uint64(advice)); err != nil {
				return fmt.Errorf("madvise for VmFlags %q: %w", f, err)
			}
		case f == image.VmLocked:
			lock = true
		case f == image.VmLockOnFault, f == image.VmNoReserve, f == image.VmDroppable, f == image.VmMayWriteFile:
			// Set with mlock2, or when mapping.
		default:
			return fmt.Errorf("unknown VmFlags %q", f)
		}
	}
	if lock {
		var flags uint64
		if v.HasVmFlag(image.VmLockOnFault) {
			flags = unix.MLOCK_ONFAULT
		}
		if _, err := r.Syscall(unix.SYS_MLOCK2, v.Start, v.End-v.Start, flags); err != nil {
			return fmt.Errorf("mlock2 for VmFlags %q (locked memory is limited by RLIMIT_MEMLOCK without CAP_IPC_LOCK): %w", image.VmLocked, err)
		}
	}
	return nil
}
