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
// The flags are those of the frozen process: smaps read in the freeze, or
// read before it and proven unchanged in it by the mappings' vm_flags
// words, or taken from words smaps showed before (preread_linux.go).
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
//	um uw ui ur  userfaultfd tracking      refused, except "uw" of rtcr's own dirty tracking (Incr.Tracked)
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
//
// # Shared memory
//
// What a mapping shares with other mappings, fds and processes, and how
// restore makes it one object again (tests in the root package):
//
//	mapping                   dump                                    restore
//	MAP_SHARED|MAP_ANONYMOUS  the object (inode of map_files), its     the first mapping of the tree (its home) mapped
//	                          size (fstat), each view's offset; the    anonymous, the object sized with ftruncate, the home
//	                          first view saves its pages, later views  moved to its offset; later views (other processes,
//	                          the pages of their range it does not     or an mremap copy in the same one) mmap the home's
//	                          cover (Shared.share)                     map_files at their offset (TestSharedAnonViews)
//	memfd, deleted file       the file, recorded once per tree by      the file created once, before the memory of its
//	(shared or private)       internal/files (Tree.DumpMapped) with    first process (files.Restorer.PrepareHomes); each
//	                          its contents, on an fd record or in      mapping and fd reopens it through /proc
//	                          image.Process.MapFiles; private copied   (TestMemfdAndDeletedMappings, TestMemfd)
//	                          pages saved as for files
//	POSIX shm (/dev/shm)      a file mapping like any other            the file (TestPosixShm)
//	SysV shm (/SYSVkey)       image.SysVShm: shmid (the inode), key,   PrepareSysV before any process: the segment reused
//	                          size, permission bits, owner, creator,   (same id, key, size, attached nowhere; contents
//	                          SHM_LOCK, SHM_DEST; each attachment      reset) or created again with its id (shm_next_id)
//	                          (address, SHM_RDONLY: no wr and no mw,   and creator, IPC_SET, SHM_LOCK, contents written;
//	                          SHM_EXEC, split mappings); contents      shmat at each address, mprotect per mapping;
//	                          from the first attachment                IPC_RMID again after every process attached
//	                                                                   (TestSysVShm)
//	file                      size, mtime, ctime                       refused if any changed (TestMappedFileChanged)
//	[anon:N], [anon_shmem:N]  the name                                 PR_SET_VMA_ANON_NAME (needs CONFIG_ANON_VMA_NAME)
//
// Refused at dump (ErrUnsupported, naming the mapping): a SysV segment
// attached in part (a part unmapped: shmat attaches whole segments) or
// attached outside the tree too (shm_nattch counts one per mapping, more
// than the tree's), SysV mode bits other than the permissions, SHM_DEST
// and SHM_LOCKED, "nr" or "dp" on a SysV mapping (shmat cannot set them),
// hugetlb segments ("ht"), a mapping under a "(deleted)" name that is not
// a regular file, a deleted file still linked elsewhere, hugetlb memfds,
// more than 16 MiB of memfd or deleted-file data. Not restored, set by
// the kernel: a SysV segment's cpid, lpid and times (the segment created
// again is rtcr's; attach and detach times are those of the restore), and
// bytes past a segment's size in its last page. Data of a shared
// anonymous object that no view covers is not saved (nothing maps it).
//
// # Copy-on-write sharing
//
// A forked child shares its parent's private pages until one of them
// writes: a pre-fork server's workers share nearly all of the memory the
// parent filled before the forks. Dump (Forked, cow_linux.go): the parent
// is dumped first; of each private mapping of the child (anonymous, heap,
// stack, private file mapping), a page that is present, not mapped
// exclusively (pagemap bit 56 clear) and has the parent's frame number at
// the same address is not copied when the parent's image holds that
// address: the child's run names the parent's run (image.PageRun.Pid: the
// process whose page file holds it, Depth and FileOff as in the parent's
// run, so in a deeper tree the grandparent's). Frame numbers need
// CAP_SYS_ADMIN (0 without: every page is saved). Pages that may be
// shared are read through /proc/PID/mem, not process_vm_readv: that pins
// them, and the kernel unshares a pinned shared anonymous page (the tree
// left running would get a copy of each).
//
// Restore (Restore with parent, inherit_linux.go): the child's stub is
// forked from the parent's right after the parent's Restore, so it holds a
// copy-on-write copy of the parent's restored memory. planInherit keeps,
// from the image alone, the parts of the child's private mappings that lie
// in a parent mapping of the same kind, name, VmFlags, grows-down flag and
// (for a file) file and offset, not MADV_DONTFORK, WIPEONFORK or
// MAP_DROPPABLE (fork does not copy those as they are), where the runs of
// both name the same pages of the same page file; dropInherited unmaps all
// the rest but the scratch area; mapKept maps the child's mappings around
// the kept parts and drops (MADV_DONTNEED) the kept pages the child does
// not share; writePages writes every other run, a shared one that could
// not be kept from the page file of the process holding it. Protections,
// names and VmFlags are then set as for any mapping (fork clears mlock).
//
// Incremental images keep this: a run names bytes of one image, not "the
// parent's page now". When the parent writes a shared page after a
// checkpoint, its tracking saves the new bytes in the next increment while
// the child's run still names the old ones one image deeper (its own
// tracking sees no write), so each gets its own bytes back, and pages
// neither wrote stay shared. Not kept shared: pages that only siblings
// share, and pages shared with an ancestor other than the parent the
// image names (TestPreforkShared, TestPreforkIncremental, TestPreforkRun,
// TestPreforkSeriesMerge).
// # Dirty tracking (incremental dumps)
//
//	mapping                   tracked (Incr, internal/track)           an increment saves
//	private anonymous         its own registration (incrRuns)          written pages; empty ones are zero again
//	private file, memfd or    its own registration; a written page is  written copies (fileIncrRuns); a page back to the
//	deleted file (private)    a copy-on-write copy (or dropped)        file (dropped: a marker or no entry) is not saved
//	MAP_SHARED|MAP_ANONYMOUS  every view of every process registered;  the union of all views' written (and unprotected)
//	SysV segment              ScanShared scans all before any copy     pages, in object offsets, by the first view
//	memfd, deleted file       -                                        the whole contents, in the manifest, every time
//	(shared); shared file     -                                        nothing (the data is in the file)
//
// A shared object is saved whole by an increment when a view is not
// tracked since the parent image (a process that was not, a view mapped
// or moved since), an fd of the tree is open on it (write(2) changes it
// without any page table), or a process outside the tree maps it. Pages
// are taken from the parent only where the parent's mapping at the same
// address showed the same object at the same offset (objectRuns); every
// other page with data is copied. Write-protect markers (pagemap swap type
// SWP_PTE_MARKER, isMarker) are never saved as pages.
package mem
