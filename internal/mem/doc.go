// Package mem holds the address space: which mappings a process has, which
// of their pages a checkpoint saves, and how restore recreates them inside
// the stub — dump and restore side by side.
//
// # VmFlags
//
// Every flag of the "VmFlags:" line of /proc/PID/smaps (the kernel's
// Documentation/filesystems/proc.rst) is either restored or refused at
// dump with an error naming the mapping's range and the flag (wrapping
// ErrUnsupported): nothing is dropped silently. Flags restore sets itself
// are kept in image.VMA.VmFlags; restore refuses a name it does not know.
// Tests: TestVmFlags (root package: testdata/vmflags.c's regions, every
// mapping's VmFlags compared before the dump and after the restore, then
// the program checks the behaviour) and TestVmFlagsRefused.
//
//	flag      meaning                      rtcr
//	rd wr ex  read, write, execute         by construction: mapped with Prot (writable while pages are written, then mprotect)
//	sh ms     shared, may share            by construction: MAP_SHARED (sh of a file mapping: see mw)
//	mr me     may read, may execute        by construction: the same file, opened as at dump, on the same mount; always on anonymous memory
//	mw        may write                    by construction on private and anonymous mappings; on a shared file mapping without
//	                                       PROT_WRITE (file open read-write, mprotect may make it writable) stored "mw":
//	                                       restore opens the file O_RDWR (TestVmFlags, region maywrite: mprotect after restore)
//	gd        grows down                   by construction: MAP_GROWSDOWN (VMA.GrowsDown)
//	ac        accountable                  not user state: commit charge that follows the protections a mapping has had;
//	                                       the kernel charges it again when a mapping becomes writable. Not compared.
//	sd        soft dirty                   not user state: dirty tracking for incremental dumps, reset by clear_refs
//	dw        deny write                   not user state; no kernel since 5.16 sets it
//	nr        MAP_NORESERVE                restored: mmap MAP_NORESERVE (TestVmFlags: region noreserve and the PROT_NONE gaps)
//	dp        MAP_DROPPABLE                restored: mmap MAP_DROPPABLE (TestVmFlags: region droppable)
//	dd        MADV_DONTDUMP                restored: madvise, once pages and protection are in (TestVmFlags: dontdump)
//	dc        MADV_DONTFORK                restored: madvise (TestVmFlags: dontfork, absent from a child forked after restore)
//	wf        MADV_WIPEONFORK              restored: madvise (TestVmFlags: wipeonfork, zeros in a child forked after restore)
//	hg nh     MADV_HUGEPAGE, NOHUGEPAGE    restored: madvise (TestVmFlags: hugepage, nohugepage)
//	mg        MADV_MERGEABLE               restored: madvise (TestVmFlags: mergeable)
//	sr rr     MADV_SEQUENTIAL, RANDOM      restored: madvise (TestVmFlags: sequential, random)
//	lo lf     mlock, mlock2 MLOCK_ONFAULT  restored: mlock2 (MLOCK_ONFAULT for lf), after the madvise calls (TestVmFlags:
//	                                       locked, lockonfault). Without CAP_IPC_LOCK, RLIMIT_MEMLOCK applies: a restore
//	                                       over the limit fails naming the mapping (the process's own limit is set after).
//	pf io     PFN range, memory-mapped I/O refused: "device mapping"
//	de        do not expand                refused: a driver or special mapping
//	ht        hugetlb                      refused
//	sf        MAP_SYNC (DAX)               refused
//	ar        architecture flag            refused
//	mm        mixed map                    refused: a driver mapping
//	bt mt     arm64 BTI, MTE               refused (never on x86_64)
//	um uw ui ur  userfaultfd tracking      refused
//	ss        shadow stack                 refused
//	sl        sealed (mseal)               refused (TestVmFlagsRefused)
//	gu        guard regions                refused
//	other     any flag rtcr does not know  refused: "unknown to rtcr"
//
// The mappings the kernel creates, [vdso], [vvar] and [vvar_vclock] ("rd
// mr pf io de dd" …), are not checked: restore gets them from the kernel
// with the kernel's flags. [vsyscall] is never part of an image.
//
// Not VmFlags and not covered here: memory protection keys (the smaps
// "ProtectionKey:" line), guard regions installed by MADV_GUARD_INSTALL on
// kernels that do not print "gu", and per-process defaults for future
// mappings (mlockall MCL_FUTURE, PR_SET_THP_DISABLE, KSM's
// PR_SET_MEMORY_MERGE).
package mem
