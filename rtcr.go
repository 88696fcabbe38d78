// Package rtcr checkpoints running Linux processes into an image directory
// and restores them, so that they continue exactly where they stopped.
//
// A dump reads top to bottom as one pass: freeze the tree → collect each
// kind of state → write the image → release (or kill) the tree. A restore:
// validate the whole image → create the stubs, parent first → install each
// kind → set registers → detach. See DumpOptions and RestoreOptions.
package rtcr

import (
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/lazy"
)

// DumpOptions says what to checkpoint and how. Names follow CRIU's flags.
type DumpOptions struct {
	// Pid is the process to checkpoint, with all its descendants (criu
	// -t). The pid of an `rtcr run`, or of a process below one, stands
	// for the run's whole pid namespace.
	Pid int
	// Dir is the image directory; it is created with mode 0700 if needed
	// (criu -D).
	Dir string
	// LeaveRunning lets the target continue after the dump instead of
	// killing it (criu -R).
	LeaveRunning bool
	// TrackMem keeps track of the pages the tree writes after this dump
	// (userfaultfd write-protect, see README "Incremental checkpoints"),
	// so that a later dump with Parent set to this image copies only
	// those. Without it (or without LeaveRunning) a dump ends any
	// tracking of the tree.
	TrackMem bool
	// Parent makes the dump incremental: the image directory (relative
	// to Dir unless absolute) of the previous dump of this tree, which
	// must have been made with TrackMem (criu --prev-images-dir). Pages
	// not written since are read from it on restore.
	Parent string
	// MaxFreeze, with Parent, is a freeze budget: while the pages
	// written since the parent would take longer to copy than this,
	// they are copied while the tree runs (pre-copy rounds, each
	// protecting them again) before it is frozen; the freeze copies what
	// was written after the last round. A freeze that still exceeds it is
	// reported in DumpStats.Budget and the image, with the reason. 0: no
	// budget.
	MaxFreeze time.Duration
	// FullPreCopy, with MaxFreeze, TrackMem and LeaveRunning and without
	// Parent, copies the full image while the tree runs: a short freeze
	// arms the tracking without copying a page, then every page is
	// copied while the tree runs (round 0) and rounds of the pages
	// written since follow until the rest fits MaxFreeze; the freeze
	// copies what was written after the last round.
	FullPreCopy bool
	// Logger receives one Info line per step (with the pid and its
	// duration), Debug details and Error lines for failures (criu -o,
	// -v). Nil logs nothing.
	Logger *slog.Logger
	// Handoff, when set, is called once the image in dir is complete
	// (its manifest committed) while the tree is still frozen: the seam
	// of a migration. If it returns nil the tree is killed (without
	// LeaveRunning) or released as usual; if it returns an error the
	// tree is released unchanged and Dump fails with that error. The
	// time it takes counts in the freeze.
	Handoff func(dir string) error

	// What a Checkpointer learnt from earlier dumps of the tree: the copy
	// rate (bytes per second) and the part of the freeze that is not
	// memory (0: unknown).
	copyRate float64
	fixed    time.Duration
	// onRound, when set, is told of each pre-copy round as it ends, and
	// once more when the rounds stop (Migrate's progress lines).
	onRound func(preRound)
	// killed, when set, is called once a dump that kills its tree has
	// sent every process SIGKILL (or, with killFrozen, made it die with
	// rtcr), before their deaths are collected
	// (Migrate tells the destination to go there and waits for its
	// confirmation); until it returns the dying threads are SCHED_IDLE.
	killed func()
	// killFrozen, with killed, calls killed before the SIGKILLs instead:
	// the frozen tree is made to die with rtcr (PTRACE_O_EXITKILL on
	// every thread, armExitKill) and stays stopped while the destination
	// is told to go and confirms, so that its exit (freeing all its
	// memory) does not compete with the copy for the CPU; the SIGKILLs
	// follow. Should arming fail, the tree is killed first as without it.
	killFrozen bool
	// committed, when set, is given the checkpoint whose manifest was
	// just committed, before Handoff: a migration sends its files
	// without reading the manifest back (3-4 ms of its downtime).
	committed func(c *image.Checkpoint)
	// temporary marks an image that lives only until it was sent (a
	// migration's, in a temporary directory): nothing of it is fsynced
	// (image.Stage.NoSync).
	temporary bool
	// preUsed, when set, receives the names of the page files begun by
	// pre-copy rounds that the freeze went on writing (the others are
	// written anew).
	preUsed map[string]bool
	// postCopy, set by a post-copy migration, leaves private anonymous
	// memory out of the image (mem.DumpRemote) and records which host
	// process each image pid is.
	postCopy *postCopyDump
}

// preRound reports one pre-copy round of a dump with MaxFreeze.
type preRound struct {
	// Round counts from 1 (0: round 0 of a full image, FullPreCopy,
	// which copies every page); Done marks the report made when the
	// rounds stop (Pages is then 0 and Dirty what the freeze will copy).
	Round int
	Done  bool
	// Pages is what the round copied; Took how long it ran; Since the
	// time since the previous round began (or since the dump started).
	Pages       int64
	Took, Since time.Duration
	// Dirty is the pages written since the round before it, as counted
	// when deciding to make it; Predicted the freeze estimated for them.
	Dirty     int64
	Predicted time.Duration
	// Stop says why the rounds stopped (with Done): "" the rest fits the
	// budget, "growing", "cap", "untracked".
	Stop string
	// files are the page files the rounds write, as far as written and
	// synced (Migrate streams them).
	files []roundFile
}

// roundFile is a page file pre-copy rounds write, size bytes so far.
type roundFile struct {
	name string
	r    io.ReaderAt
	size int64
}

// BudgetStats reports how a dump with DumpOptions.MaxFreeze went.
type BudgetStats struct {
	// Max is the budget.
	Max time.Duration
	// Rounds is the number of pre-copy rounds made while the tree ran;
	// PreCopiedPages the pages they copied (a page copied twice counts
	// twice), FrozenPages the pages copied in the freeze.
	Rounds         int
	PreCopiedPages int64
	FrozenPages    int64
	// Over says why the freeze exceeded Max; empty when it did not.
	Over string
	// CopyRate is the copy rate measured in this dump, bytes per
	// second (0: too little was copied to tell).
	CopyRate float64
	// ArmFreeze is, with FullPreCopy, how long the short freeze that
	// armed the tracking before round 0 stopped the tree (the tree is
	// stopped twice: that, and the freeze the dump reports).
	ArmFreeze time.Duration
}

// DumpStats reports what a dump did and how long the target was stopped.
type DumpStats struct {
	// Freeze is how long the target was stopped: until it was released,
	// or, when the dump kills it, until every process was sent SIGKILL.
	Freeze time.Duration
	// Total is the duration of the whole dump.
	Total time.Duration
	// PageBytes is the amount of memory written to the image (with
	// pre-copy rounds, every copy of a page written again counts).
	PageBytes int64
	// ParentPages counts the pages an incremental image takes from its
	// parent images (0 for a full image); Parent names the parent.
	ParentPages int64
	Parent      string
	// MemoryTime is the part of the freeze spent copying memory.
	MemoryTime time.Duration
	// Dir is the image directory written (a Checkpointer's series
	// names a new one for each checkpoint).
	Dir string
	// Notes are what a Checkpointer did beyond the dump: a full image
	// made where an increment was due (and why), old checkpoints merged
	// and removed, or kept because that failed.
	Notes []string
	// Budget reports the pre-copy rounds and whether the freeze met
	// DumpOptions.MaxFreeze (nil without one).
	Budget *BudgetStats
	// Exited lists the processes that died while frozen (something
	// killed them) and so were not released; with LeaveRunning, after a
	// successful dump, they died after the image was complete.
	Exited []int
}

// RestoreOptions says which image to restore.
type RestoreOptions struct {
	// Dir is the image directory (criu -D).
	Dir string
	// NoClockJump makes CLOCK_MONOTONIC and CLOCK_BOOTTIME of a tree
	// started by `rtcr run` continue exactly from their values at the
	// checkpoint. By default they advance by the downtime.
	NoClockJump bool
	// Logger receives one Info line per step (with the pid and its
	// duration), Debug details and Error lines for failures (criu -o,
	// -v). Nil logs nothing.
	Logger *slog.Logger
	// TrustImageOwner accepts an image whose files are owned by a user
	// other than root and the restorer (rtcr restore --trust-image-owner).
	// Its processes are then held to what that user has: its uid, its
	// groups, no capabilities (see "Trust model" in README).
	TrustImageOwner bool
	// InheritFDs give the restored processes fds of the caller where the
	// image has external objects (pipes and sockets whose other end was
	// outside the tree; criu --inherit-fd). Every fd that had one gets
	// the caller's fd, with its recorded status flags.
	InheritFDs []InheritFD
	// Warnings receives one line per warning (an external object not
	// inherited, bytes that cannot be put back); nil: none. The Logger
	// gets them too.
	Warnings io.Writer
	// Hold, when set, is called when every process is restored but
	// before the network lock goes and before any process runs (they
	// are all still traced): nil lets them run; an error kills them all
	// and Restore fails with it. rtcr serve waits there for a migration's
	// source to be gone.
	Hold func() error
	// AddressesLater lets TCP and UDP sockets be restored bound to local
	// addresses this host does not have yet (IP_TRANSPARENT for the time
	// of their bind and connect): the address must arrive before the
	// processes need it, as a migration's pre-resume action adds it
	// (README "Moving TCP connections"). Without it such a restore fails
	// at the bind (EADDRNOTAVAIL).
	AddressesLater bool
	// verifiedParents says the page files of the image's ancestors were
	// checked (CRC-32C) by the caller already: rtcr serve checked a
	// pre-copy migration's full image when it arrived, and the restore
	// in the freeze does not read it all again.
	verifiedParents bool
	// parent, when set, is the manifest of the image's parent, read and
	// checked when it arrived (rtcr serve's receiveBase), with the
	// directory it was read from: the restore in the freeze uses it
	// instead of decoding it again when the image names that directory.
	parent *readManifest
	// loaded, when set, is given the manifest Restore read and checked,
	// before any process exists (rtcr serve's Hold uses it: its
	// pre-resume step decoded the manifest again after Go).
	loaded func(*image.Checkpoint)
	// running, when set, is called on the restore's tracer thread as soon
	// as every process was let go (its root's and program's host pids),
	// before anything else: rtcr serve confirms a migration from there,
	// before a lazy restore's background copy starts competing for the
	// CPU. Nothing after it can fail the restore.
	running func(pid, program int)
	// prep, for a lazy restore, is the tracer thread to run it on, with
	// spare keepers started before the image was complete (rtcr serve,
	// pre-copy); Restore runs it or leaves it to the caller's drop.
	prep *lazyPrep
	// Lazy restores private anonymous memory lazily (rtcr restore
	// --lazy, see README "Lazy restore"): the processes run as soon as
	// everything else is in place, their pages come in on first touch
	// (userfaultfd) and in the background. Restore then returns as soon as
	// they run, with RestoreStats.Lazy to follow and wait for the rest.
	Lazy bool
	// LazySource gives the pages left out (post-copy migration: the
	// source machine). Nil: the image's own page files, through its
	// chain.
	LazySource lazy.Source

	// checks, for a lazy restore, verify the page files chunk by chunk
	// as they are used (see image.OpenPagesLazy).
	checks pageChecks

	// remotePages admits an image whose private memory stays with a
	// post-copy migration's source (image.Checkpoint.RemotePages): set
	// only by rtcr serve, which feeds those pages to the lazy restore.
	remotePages bool
}

// InheritFD names a caller's fd for an external object of the image:
// Fd becomes the object with ID ID ("pipe:[123]", "socket:[456]", as
// `rtcr inspect` lists them).
type InheritFD struct {
	Fd int
	ID string
}

// RestoreStats reports what a restore did.
type RestoreStats struct {
	// Pid is the pid of the restored (root) process.
	Pid int
	// Program is, for a tree started by `rtcr run`, the pid of the
	// program (pid 2 inside its namespace; Pid is then its init's).
	Program int
	// Total is the duration of the whole restore.
	Total time.Duration
	// PageBytes is the amount of memory written into the new process.
	PageBytes int64
	// MemoryTime is the part spent recreating the address space.
	MemoryTime time.Duration
	// Lazy, for a lazy restore, serves the pages still missing; its Wait
	// returns once all are in (nil otherwise). Total is then the time
	// until the processes ran.
	Lazy *LazyRestore
}

// ErrInterrupted reports a dump cancelled by its context (e.g. Ctrl-C);
// the target was released unchanged.
var ErrInterrupted = errors.New("interrupted")
