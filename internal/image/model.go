// Package image holds rtcr's checkpoint image: the in-memory model of a
// checkpoint (this file), the manifest codec, the page files and the rules
// that make an image trustworthy before a restore touches the system.
//
// An image directory holds:
//
//	manifest.img        header (magic, version, length, SHA-256) + JSON of Checkpoint
//	pages-<gen>-<pid>.img  raw page data of one process; CRC-32C per PageChunkSize chunk
//	                       (gen: the dump's generation; earlier versions wrote pages-<pid>.img)
//
// Every file is written atomically (temp file, fsync, rename) with mode 0600.
// The manifest is written last, so its presence marks a complete image.
package image

import "golang.org/x/sys/unix"

// PageSize is the page size of the only architecture rtcr supports (x86_64).
const PageSize = 4096

// PageChunkSize is the span of page-file bytes covered by one checksum.
const PageChunkSize = 1 << 20

// FreezeBudget records how a dump with a freeze budget went: the pages
// it copied while the tree ran (pre-copy rounds) and in the freeze, and,
// when the freeze took longer than the budget, why.
type FreezeBudget struct {
	// MaxNs is the budget, nanoseconds.
	MaxNs int64
	// Rounds is the number of pre-copy rounds, PreCopied the pages they
	// copied (a page written again is counted again).
	Rounds    int   `json:",omitempty"`
	PreCopied int64 `json:",omitempty"`
	// Frozen is the number of pages copied in the freeze.
	Frozen int64 `json:",omitempty"`
	// Over says why the freeze (FreezeNs) exceeded the budget; empty
	// when it did not.
	Over string `json:",omitempty"`
}

// Checkpoint is everything one dump captured.
type Checkpoint struct {
	// Kernel is the uname release and version of the machine that dumped.
	Kernel string
	// Arch is the machine architecture ("x86_64").
	Arch string
	// Created is the dump time, Unix nanoseconds.
	Created int64
	// PidNS says the tree lived in a pid namespace of its own (started by
	// `rtcr run`): the root is that namespace's init, every pid and tid
	// in the image is as seen inside it, and restore recreates it.
	PidNS bool `json:",omitempty"`
	// Clocks are the clocks inside the tree's time namespace at the
	// checkpoint (PidNS images only: `rtcr run` gives the tree one).
	Clocks *Clocks `json:",omitempty"`
	// Processes are the dumped processes, parents before children; the
	// first is the root.
	Processes []Process
	// SysVShm are the System V shared memory segments the tree has
	// attached.
	SysVShm []SysVShm `json:",omitempty"`
	// ID names this image (32 hex digits, random); an incremental image
	// names its parent by it. Empty in images before format version 3.
	ID string `json:",omitempty"`
	// Parent, for an incremental image, is the image that holds the
	// pages this one does not (see PageRun.Depth); nil: a full image.
	Parent *ParentLink `json:",omitempty"`
	// ChainLen is the number of images behind this one (0: a full
	// image), at most MaxChain.
	ChainLen int `json:",omitempty"`
	// FreezeNs is how long the tree had been stopped when the manifest
	// was written (the release that follows adds little), nanoseconds.
	FreezeNs int64 `json:",omitempty"`
	// Budget is what a dump with a freeze budget (rtcr run --max-freeze)
	// did to meet it; nil: it had none.
	Budget *FreezeBudget `json:",omitempty"`
	// Sum is the SHA-256 of the manifest payload this checkpoint was read
	// from (set by the reader, never written).
	Sum [32]byte `json:"-"`
	// Version is the format version of the manifest this checkpoint was
	// read from (set by the reader, never written).
	Version int `json:"-"`
	// NetLock names the nftables table (family inet) that drops the
	// packets of the tree's TCP connections and listening ports since the
	// dump killed the tree; restore deletes it once the sockets are back
	// (see NetLockName). Empty: no lock.
	NetLock string `json:",omitempty"`
	// RemotePages marks the image of a post-copy migration: the pages of
	// the VMAs' Remote spans are not in it; they stay in the frozen
	// source and only a lazy restore with a source of pages can restore
	// it (see remote.go).
	RemotePages bool `json:",omitempty"`
}

// SysVShm is one System V shared memory segment (shmget) of the host's IPC
// namespace attached by the tree. Its contents are the Pages of the
// mappings of its first attachment in the tree (process Pid, at Start);
// every attachment is a run of KindSysV mappings whose Inode is ID.
type SysVShm struct {
	ID   int    // shmid
	Key  int32  // IPC_PRIVATE (0), and 0 once marked removed
	Size uint64 // shm_segsz, bytes
	// Mode holds the permission bits; UID and GID the owner, CUID and
	// CGID the creator.
	Mode                 uint32
	UID, GID, CUID, CGID uint32
	// Removed: marked with IPC_RMID (SHM_DEST), destroyed at its last
	// detach. Locked: SHM_LOCK.
	Removed bool `json:",omitempty"`
	Locked  bool `json:",omitempty"`
	Pid     int
	Start   uint64
}

// Clocks are clock readings in nanoseconds.
type Clocks struct {
	Monotonic, Boottime, Realtime int64
}

// Process is the state of one dumped process.
type Process struct {
	Pid int
	// Ppid, Pgid and Sid place the process in the tree, its process group
	// and its session.
	Ppid, Pgid, Sid int
	// Zombie marks a child that had exited but was not reaped yet; only
	// Pid, Ppid, Pgid, Sid and ExitStatus are meaningful then.
	Zombie bool `json:",omitempty"`
	// ExitStatus is a zombie's wait status (as waitpid reports it).
	ExitStatus int `json:",omitempty"`
	// Stopped marks a process that was stopped by a signal (SIGSTOP …):
	// it is restored stopped.
	Stopped bool `json:",omitempty"`
	// Tty is the device number of the controlling terminal (0: none) and
	// TtyFg its foreground process group; restored for session leaders.
	Tty         uint64 `json:",omitempty"`
	TtyFg       int    `json:",omitempty"`
	Comm        string
	Exe         string // target of /proc/PID/exe
	Cwd         string
	Umask       uint32
	Personality uint64
	Rlimits     []Rlimit
	// CwdDeleted is, for a working directory removed while in use, the
	// directory as a deleted-file record (FDDeleted, a directory, Num -1,
	// Path equal to Cwd): restore recreates it removed, as it does a
	// deleted directory open as an fd (the same one, when both were).
	CwdDeleted *FD `json:",omitempty"`
	// OomScoreAdj is /proc/PID/oom_score_adj (nil in images that predate
	// it: left as the restorer's).
	OomScoreAdj *int `json:",omitempty"`
	// THPDisable is what prctl(PR_GET_THP_DISABLE) returned: 0, or 1 with
	// PR_THP_DISABLE_EXCEPT_ADVISED (2) possibly set.
	THPDisable uint64 `json:",omitempty"`
	// Membarrier is what membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS)
	// returned: the registration commands the process issued.
	Membarrier uint64 `json:",omitempty"`
	MM         MM
	VMAs       []VMA
	// VDSO is the content of the [vdso] mapping; restore requires the
	// restoring kernel to provide identical bytes.
	VDSO []byte
	FDs  []FD
	// MapFiles are the memfds and deleted files this process maps that
	// the tree had not recorded before (on an earlier process or on one of
	// this process's fds): kind memfd or deleted, Num -1, with their
	// contents. Restore creates them before the memory.
	MapFiles   []FD `json:",omitempty"`
	Sigactions []Sigaction
	Threads    []Thread
	// Creds are the credentials of the process (its threads share them).
	Creds *Creds
	// Prctl is per-process prctl state programs rely on.
	Prctl Prctl
	// SeccompFilters is the seccomp filter chain all threads of the
	// process have (SECCOMP_MODE_FILTER), oldest first: the order they
	// are installed in again. The dump refuses threads with different
	// chains, or some with a chain and some without.
	SeccompFilters []SeccompFilter `json:",omitempty"`
	// Itimers are ITIMER_REAL, ITIMER_VIRTUAL and ITIMER_PROF, in that order.
	Itimers []Itimer
	// PosixTimers are the timer_create timers, by id.
	PosixTimers []PosixTimer
	// SharedPending are signals pending for the whole process, in queue
	// order, as raw siginfo.
	SharedPending []SigInfo
	// PageFile names the page file (relative to the image directory).
	PageFile string
	// PageFileSize is the exact size of the page file in bytes.
	PageFileSize int64
	// PageChecksums holds the CRC-32C (Castagnoli) of each PageChunkSize
	// chunk of the page file; the last chunk may be shorter.
	PageChecksums []uint32
}

// Rlimit is one resource limit (RLIMIT_* number, soft and hard values).
type Rlimit struct {
	Resource int
	Cur, Max uint64
}

// MM holds the mm_struct fields restored with PR_SET_MM_MAP.
type MM struct {
	StartCode, EndCode uint64
	StartData, EndData uint64
	StartBrk, Brk      uint64
	StartStack         uint64
	ArgStart, ArgEnd   uint64
	EnvStart, EnvEnd   uint64
	Auxv               []uint64 // saved_auxv words, up to and including AT_NULL
}

// VMA kinds.
const (
	KindAnon       = "anon"        // private anonymous memory
	KindSharedAnon = "shared-anon" // MAP_SHARED|MAP_ANONYMOUS
	KindFile       = "file"        // file-backed, private or shared
	KindHeap       = "heap"        // [heap]
	KindStack      = "stack"       // [stack]
	KindVvar       = "vvar"        // [vvar]
	KindVvarClock  = "vvar_vclock" // [vvar_vclock]
	KindVDSO       = "vdso"        // [vdso]
	KindVsyscall   = "vsyscall"    // [vsyscall], fixed by the kernel, never restored
	KindMemfd      = "memfd"       // a memfd, private or shared (Dev, Inode: its identity at dump)
	KindDeleted    = "deleted"     // a deleted (unlinked) regular file, private or shared
	KindSysV       = "sysv"        // a System V shared memory attachment (Inode: the shmid)
)

// VmFlags mnemonics of /proc/PID/smaps a VMA may carry in VMA.VmFlags:
// the ones restore sets on the mapping it recreates.
const (
	VmDontDump     = "dd" // MADV_DONTDUMP
	VmDontFork     = "dc" // MADV_DONTFORK
	VmWipeOnFork   = "wf" // MADV_WIPEONFORK
	VmHugePage     = "hg" // MADV_HUGEPAGE
	VmNoHugePage   = "nh" // MADV_NOHUGEPAGE
	VmMergeable    = "mg" // MADV_MERGEABLE
	VmSeqRead      = "sr" // MADV_SEQUENTIAL
	VmRandRead     = "rr" // MADV_RANDOM
	VmLocked       = "lo" // mlock
	VmLockOnFault  = "lf" // mlock2 MLOCK_ONFAULT (with VmLocked)
	VmNoReserve    = "nr" // MAP_NORESERVE
	VmDroppable    = "dp" // MAP_DROPPABLE
	VmMayWriteFile = "mw" // shared file mapping whose file was open for writing (it may become writable)
)

// HasVmFlag reports whether f is one of v.VmFlags.
func (v *VMA) HasVmFlag(f string) bool {
	for _, g := range v.VmFlags {
		if g == f {
			return true
		}
	}
	return false
}

// FileBacked reports whether v maps a file restore opens: a file by path,
// a memfd or a deleted file.
func (v *VMA) FileBacked() bool {
	return v.Kind == KindFile || v.Kind == KindMemfd || v.Kind == KindDeleted
}

// OpensWritable reports whether restore opens the file of a file mapping
// read-write: a shared mapping that is writable or may become so.
func (v *VMA) OpensWritable() bool {
	return v.Shared && (v.Prot&unix.PROT_WRITE != 0 || v.HasVmFlag(VmMayWriteFile))
}

// VMA is one mapping of the address space.
type VMA struct {
	Start, End uint64
	Prot       int  // PROT_READ|PROT_WRITE|PROT_EXEC
	Shared     bool // MAP_SHARED
	GrowsDown  bool // VM_GROWSDOWN
	Kind       string
	Name       string // the pathname column of /proc/PID/maps
	// File-backed mappings only (for memfd and deleted-file mappings Dev
	// and Inode name the file among Process.MapFiles and the fds).
	Path   string
	Offset uint64
	Dev    uint64
	Inode  uint64
	// FileSize, FileMtime and FileCtime (Unix ns) identify the file's
	// content at dump (FileCtime 0: an image without it).
	FileSize  int64
	FileMtime int64
	FileCtime int64 `json:",omitempty"`
	// Pages are the runs of saved pages, in address order. Since format
	// version 5 they are not in the manifest's JSON but in its runs
	// section (pagerun_bin.go).
	Pages PageRuns `json:",omitempty"`
	// VmFlags are the /proc/PID/smaps VmFlags of the mapping that restore
	// sets itself, beyond those that follow from Prot, Shared, GrowsDown
	// and Kind (the Vm* constants; see the table in internal/mem).
	VmFlags []string `json:",omitempty"`
	// ShareOf, for shared anonymous memory an earlier process of the tree
	// (or an earlier mapping of this one) also maps (inherited across
	// fork, duplicated by mremap), names that first mapping (the home);
	// this one maps the same memory. Its Pages are those of its range
	// the home's does not cover (the views may differ).
	ShareOf *ShmRef `json:",omitempty"`
	// ShmSize is, for shared anonymous memory, the size of the memory
	// object at dump (which any view may be smaller or larger than);
	// restore gives the home's object that size and maps every view at
	// its own Offset in it. 0 in images of earlier versions.
	ShmSize int64 `json:",omitempty"`
	// Remote, in an image with RemotePages, are the spans of private
	// anonymous memory whose pages exist but are not in the image: a
	// post-copy restore fetches them from the source.
	Remote []PageSpan `json:",omitempty"`
}

// ShmRef names the mapping of shared anonymous memory that holds it.
type ShmRef struct {
	Pid   int    // the process (listed earlier in the checkpoint)
	Start uint64 // the start of its mapping
	// Offset is where this mapping starts in the memory object, in
	// bytes (when the home has ShmSize; in earlier images, relative to
	// the home mapping's start).
	Offset uint64
}

// PageRun is a run of consecutive saved pages of a VMA.
type PageRun struct {
	Addr    uint64 // address of the first page
	Count   uint64 // number of pages
	FileOff int64  // offset in the page file
	// Depth says which image of the chain holds the pages: 0 this one,
	// k the k-th ancestor (its page file of the process with the same
	// pid, at FileOff). At most the checkpoint's ChainLen.
	Depth int `json:",omitempty"`
	// Pid, when not 0, names the process whose page file (in the image at
	// Depth) holds the pages: an ancestor in the tree that this process
	// still shared them with copy-on-write at the dump (the same physical
	// pages), saved once. Restore lets the process inherit them by fork
	// where it can (see internal/mem, "Copy-on-write sharing"), and
	// writes them from that page file otherwise. 0: the VMA's own process.
	Pid int `json:",omitempty"`
}

// Owner returns the pid of the process whose page file holds r, a run of
// process pid.
func (r PageRun) Owner(pid int) int {
	if r.Pid != 0 {
		return r.Pid
	}
	return pid
}

// MaxChain bounds the number of images behind an incremental image.
const MaxChain = 64

// ParentLink names the parent of an incremental image.
type ParentLink struct {
	// Dir is the parent image directory, relative to this image's
	// directory unless absolute (as given to --parent).
	Dir string
	// ID is the parent's Checkpoint.ID.
	ID string
	// Sum is the SHA-256 of the parent's manifest payload, hex.
	Sum string
}

// FD kinds.
const (
	FDFile    = "file"    // a path reopened on restore: regular file, directory, /dev/null …
	FDInherit = "inherit" // fd 0–2 not restorable by path (tty, pipe…): restore uses the restorer's own
	FDEventfd = "eventfd" // an eventfd with its counter
	FDEpoll   = "epoll"   // an epoll instance with its watched fds
	FDPipe    = "pipe"    // one end of a pipe
	FDMemfd   = "memfd"   // a memfd with its contents
	FDInotify = "inotify" // an inotify instance with its watches
	FDFifo    = "fifo"    // a named pipe reopened by path, with its buffered bytes
	FDDeleted = "deleted" // a deleted regular file with its contents, recreated unlinked
)

// FD kinds of timers and signals.
const (
	FDTimerfd  = "timerfd"  // a timerfd with its setting and unread expirations
	FDSignalfd = "signalfd" // a signalfd with its signal mask
)

// FDUnixPair is one end of a connected AF_UNIX socket pair whose two ends
// are both held in the tree: from socketpair(2) (unnamed) or from
// connect(2) and accept(2) (the accepted end has the listener's name).
const FDUnixPair = "unixpair"

// FDPty is one end of a pseudo-terminal pair whose master is held in the
// tree (the slave may be too).
const FDPty = "pty"

// FDExternal is a pipe end or an AF_UNIX socket whose other end was held
// outside the dumped tree: restore gives the fd the restorer's fd named
// for its ID (--inherit-fd), or else a new pipe or socket pair whose other
// end is closed (fds 0–2: the restorer's own fd of the same number).
const FDExternal = "external"

// FDUnix is an AF_UNIX socket that is not one end of such a pair: bound
// or not, listening, or a datagram socket connected to a named socket
// (held in the tree or not).
const FDUnix = "unix"

// FDPidfd is a pidfd (pidfd_open) on a process of the tree: restore
// opens one on the restored process.
const FDPidfd = "pidfd"

// FDNamespace is a namespace file (/proc/PID/ns/TYPE opened) on a
// namespace the process was in, which rtcr's own was too: restore opens
// the restored process's namespace of that type again.
const FDNamespace = "ns"

// FDCtty is an fd on /dev/tty reaching the process's controlling
// terminal: restore opens /dev/tty again.
const FDCtty = "ctty"

// FD is one open file descriptor.
type FD struct {
	Num    int
	Kind   string
	Path   string
	Flags  int    // open flags from fdinfo, including O_CLOEXEC
	Offset int64  // file position
	Mode   uint32 // st_mode of the file
	Size   int64  // regular files: size at dump (a restore needs at least Offset)
	Desc   string // human description (e.g. "/dev/pts/0 (tty)")
	// Eventfd fds: the counter and EFD_SEMAPHORE.
	Count     uint64 `json:",omitempty"`
	Semaphore bool   `json:",omitempty"`
	// Epoll fds: the watched fds.
	Epoll []EpollTarget `json:",omitempty"`
	// Pipe fds: the pipe's inode (ends with the same inode are one pipe),
	// its capacity and, on one end per pipe, the bytes buffered in it.
	// FIFO fds: Path, the capacity and, on one fd per FIFO, the bytes.
	PipeID   uint64 `json:",omitempty"`
	PipeSize int    `json:",omitempty"`
	PipeData []byte `json:",omitempty"`
	// Memfd fds: the name given to memfd_create, the seals (F_GET_SEALS)
	// and the contents as runs of data (holes left out); the file's size
	// is Size, its permission bits Mode, its position Offset.
	MemfdName  string    `json:",omitempty"`
	MemfdSeals int       `json:",omitempty"`
	MemfdData  []DataRun `json:",omitempty"`
	// Deleted-file fds: Path is the file's path before it was deleted
	// (restore creates an unlinked file in its directory), Size, Mode
	// (permission bits) and Offset as for memfds, the contents in
	// MemfdData on the first fd of the tree on the file only (FileDev and
	// FileIno, its identity at dump, tell the fds on one file).
	FileDev uint64 `json:",omitempty"`
	FileIno uint64 `json:",omitempty"`
	// FileUid and FileGid are a deleted file's owner, FileAtime and
	// FileMtime its access and modification times in ns (0: not recorded,
	// older images). Mode holds its set-id and sticky bits too.
	FileUid   uint32 `json:",omitempty"`
	FileGid   uint32 `json:",omitempty"`
	FileAtime int64  `json:",omitempty"`
	FileMtime int64  `json:",omitempty"`
	// FileRdev is a deleted device node's device number (st_rdev).
	FileRdev uint64 `json:",omitempty"`
	// GoneDirs is, for a deleted file whose directory was removed too,
	// how many directories of its path (its own, its parent …) were gone
	// at dump: restore makes them, under their names, and removes them
	// again once the file is made.
	GoneDirs int `json:",omitempty"`
	// Inotify fds: the watches.
	Inotify []InotifyWatch `json:",omitempty"`
	// Timerfd fds: the clock (clockid), the settime flags
	// (TFD_TIMER_ABSTIME), the next expiry in ns (with TFD_TIMER_ABSTIME
	// the time on that clock as the process saw it, else the time left;
	// 0: disarmed), the interval in ns and the expirations not yet read.
	TimerClock    int    `json:",omitempty"`
	TimerFlags    int    `json:",omitempty"`
	TimerValue    int64  `json:",omitempty"`
	TimerInterval int64  `json:",omitempty"`
	TimerTicks    uint64 `json:",omitempty"`
	// Signalfd fds: the signals it accepts (bit n-1 for signal n).
	SigMask uint64 `json:",omitempty"`
	// Unix socketpair fds: the socket and its peer.
	Sock *UnixSock `json:",omitempty"`
	// External fds: the object and what it held.
	External *External `json:",omitempty"`
	// TCP and UDP socket fds: the socket's addresses, state and options.
	Inet *InetSock `json:",omitempty"`
	// PidfdOf is, for a pidfd, the pid of the process of the tree it
	// refers to.
	PidfdOf int `json:",omitempty"`
	// NsType and NsIno are, for a namespace file, its type as
	// /proc/PID/ns names it (net, uts, ipc, mnt, cgroup, user, pid,
	// time) and the namespace's inode.
	NsType string `json:",omitempty"`
	NsIno  uint64 `json:",omitempty"`
	// Owner is the process, thread or process group that gets the fd's
	// SIGIO (F_GETOWN_EX), nil when none was ever set; Sig the signal
	// sent instead of SIGIO (F_GETSIG, 0: SIGIO).
	Owner *FDOwner `json:",omitempty"`
	Sig   int      `json:",omitempty"`
	// Shared, when not 0, names the open file description the fd shared
	// at dump with the other fds of the tree with the same Shared (dup,
	// fork, SCM_RIGHTS): restore creates it once and gives it to each.
	Shared int `json:",omitempty"`
	// Pty fds: the pair and which end.
	Pty *Pty `json:",omitempty"`
	// Locks are the file locks held through the fd (fdinfo "lock:"
	// lines): flock and OFD locks belong to its open file description,
	// POSIX locks to the process.
	Locks []FileLock `json:",omitempty"`
}

// DataRun is a run of bytes of a file at offset Off.
type DataRun struct {
	Off  int64
	Data []byte
}

// InotifyWatch is one watch of an inotify instance: its watch descriptor,
// its event mask (IN_ONESHOT and IN_EXCL_UNLINK included) and the path of
// the watched file or directory at dump.
type InotifyWatch struct {
	Wd   int
	Mask uint32
	Path string
	// FileDev and FileIno name, for a watch on a deleted file (Path is
	// empty), the deleted file of the tree it watches (FDDeleted's
	// identity).
	FileDev uint64 `json:",omitempty"`
	FileIno uint64 `json:",omitempty"`
}

// EpollTarget is one fd watched by an epoll instance.
type EpollTarget struct {
	Fd     int
	Events uint32
	Data   uint64
	// Held, when not 0, says fd Fd no longer held the watched file at
	// dump (closed, or reused for another file) while the epoll still
	// watched it: the file is the open file description another fd of
	// the tree holds, the one whose FD.Shared is Held.
	Held int `json:",omitempty"`
}

// Creds are a process's credentials.
type Creds struct {
	Uid, Euid, Suid, Fsuid uint32
	Gid, Egid, Sgid, Fsgid uint32
	Groups                 []uint32
	CapInh, CapPrm, CapEff uint64
	CapBnd, CapAmb         uint64
	Securebits             uint32
	NoNewPrivs             bool
}

// Prctl is per-process prctl state.
type Prctl struct {
	Dumpable       int
	ChildSubreaper bool
	PdeathSig      int
}

// SeccompFilter is one seccomp filter of a chain.
type SeccompFilter struct {
	// Flags are the filter's flags the kernel reports
	// (PTRACE_GET_SECCOMP_METADATA): SECCOMP_FILTER_FLAG_LOG or 0.
	Flags uint64 `json:",omitempty"`
	// Prog is the classic BPF program: struct sock_filter entries (8
	// bytes each: code, jt, jf, k) back to back, as the kernel returns
	// them (PTRACE_SECCOMP_GET_FILTER).
	Prog []byte
}

// Itimer is one setitimer timer; times in nanoseconds, Value 0 = disarmed.
type Itimer struct {
	IntervalNs, ValueNs int64
}

// PosixTimer is one timer_create timer. ValueNs is the time left until it
// next fires (0: disarmed), IntervalNs its period.
type PosixTimer struct {
	ID          int32
	Clock       int32
	SigevNotify int32  // SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD_ID …
	Signo       int32  // signal sent on expiry
	SigevValue  uint64 // sigev_value delivered with the signal
	NotifyTid   int    // target thread for SIGEV_THREAD_ID
	IntervalNs  int64
	ValueNs     int64
}

// SigInfo is a raw 128-byte siginfo_t of a pending signal.
type SigInfo []byte

// RobustList is a thread's robust futex list head (set_robust_list).
type RobustList struct {
	Head uint64
	Len  uint64
}

// Sigaction is the kernel sigaction of one signal (struct kernel_sigaction).
type Sigaction struct {
	Signal   int
	Handler  uint64
	Flags    uint64
	Restorer uint64
	Mask     uint64
}

// Rseq is a thread's rseq registration.
type Rseq struct {
	Ptr uint64
	Len uint32
	Sig uint32
}

// SigAltStack is a thread's alternate signal stack (stack_t).
type SigAltStack struct {
	Sp    uint64
	Flags int32
	Size  uint64
}

// Thread is the CPU and kernel state of one thread.
type Thread struct {
	Tid int
	// Regs are the general registers, already adjusted so that a thread
	// stopped inside a system call re-enters it (see Syscall).
	Regs unix.PtraceRegs
	// XState is the NT_X86_XSTATE register set (FPU, SSE, AVX …).
	XState     []byte
	SigMask    uint64
	Rseq       *Rseq
	TidAddress uint64
	AltStack   SigAltStack
	Name       string
	// Robust is the robust futex list registration.
	Robust RobustList
	// Pending are signals pending for this thread only, in queue order.
	Pending []SigInfo
	// Syscall describes the system call the thread was stopped in and how
	// it resumes ("" when it was running in user space).
	Syscall string
	// Sched is the thread's scheduling policy, nice value and priority
	// (nil in images that predate it: left as the stub's defaults).
	Sched *Sched `json:",omitempty"`
	// SeccompStrict marks a thread in seccomp strict mode
	// (SECCOMP_MODE_STRICT: only read, write, exit and sigreturn).
	SeccompStrict bool `json:",omitempty"`
}

// Sched is a thread's scheduling state, as sched_getattr(2) reports it.
type Sched struct {
	Policy   uint32 // SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE, SCHED_DEADLINE
	Flags    uint64 `json:",omitempty"` // SCHED_FLAG_RESET_ON_FORK and the deadline flags
	Nice     int32  `json:",omitempty"`
	Priority uint32 `json:",omitempty"` // real-time priority
	Runtime  uint64 `json:",omitempty"` // SCHED_DEADLINE, ns
	Deadline uint64 `json:",omitempty"`
	Period   uint64 `json:",omitempty"`
	UtilMin  uint32 `json:",omitempty"` // utilization clamps (0 and 1024 by default)
	UtilMax  uint32 `json:",omitempty"`
}
