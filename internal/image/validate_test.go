package image

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Checkpoint)
		msg    string // substring of the error; "" means valid
	}{
		{"valid", func(c *Checkpoint) {}, ""},
		{"no page file", func(c *Checkpoint) {
			p := &c.Processes[0]
			p.PageFile, p.PageFileSize, p.PageChecksums = "", 0, nil
			for i := range p.VMAs {
				p.VMAs[i].Pages = nil
			}
		}, ""},
		{"arch", func(c *Checkpoint) { c.Arch = "aarch64" }, "arch"},
		{"no processes", func(c *Checkpoint) { c.Processes = nil }, "no processes"},
		{"pid zero", func(c *Checkpoint) { c.Processes[0].Pid = 0 }, "pid 0"},
		{"duplicate pid", func(c *Checkpoint) {
			c.Processes = append(c.Processes, c.Processes[0])
		}, "duplicate pid 4242"},
		{"no threads", func(c *Checkpoint) { c.Processes[0].Threads = nil }, "no threads"},
		{"first tid", func(c *Checkpoint) { c.Processes[0].Threads[0].Tid = 7 }, "first thread has tid 7"},
		{"duplicate tid", func(c *Checkpoint) {
			p := &c.Processes[0]
			p.Threads = append(p.Threads, Thread{Tid: 4243}, Thread{Tid: 4243})
		}, "duplicate tid 4243"},
		{"xstate too big", func(c *Checkpoint) {
			c.Processes[0].Threads[0].XState = make([]byte, maxXStateSize+1)
		}, "xstate"},
		{"root zombie", func(c *Checkpoint) {
			p := &c.Processes[0]
			*p = Process{Pid: p.Pid, Zombie: true}
		}, "root is a zombie"},
		{"pid above PID_MAX_LIMIT", func(c *Checkpoint) {
			c.Processes[0].Pid, c.Processes[0].Threads[0].Tid = MaxPid, MaxPid
		}, "out of range"},
		{"tid above PID_MAX_LIMIT", func(c *Checkpoint) {
			p := &c.Processes[0]
			p.Threads = append(p.Threads, Thread{Tid: 1 << 40})
		}, "tid 1099511627776 out of range"},
		{"fd 2^32+5", func(c *Checkpoint) { c.Processes[0].FDs[2].Num = 1<<32 + 5 }, "fd 4294967301: number out of range"},
		{"fd 2^40", func(c *Checkpoint) { c.Processes[0].FDs[2].Num = 1 << 40 }, "fd 1099511627776: number out of range"},
		{"fd negative", func(c *Checkpoint) { c.Processes[0].FDs[2].Num = -1 }, "fd -1: number out of range"},
		{"fd path with ..", func(c *Checkpoint) { c.Processes[0].FDs[2].Path = "/tmp/../etc/shadow" }, "not absolute and clean"},
		{"fd path relative", func(c *Checkpoint) { c.Processes[0].FDs[2].Path = "etc/shadow" }, "not absolute and clean"},
		{"fd is a FIFO", func(c *Checkpoint) { c.Processes[0].FDs[2].Mode = unix.S_IFIFO | 0o644 }, "file type"},
		{"shared eventfds", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDEventfd, Shared: 1}, FD{Num: 10, Kind: FDEventfd, Shared: 1})
		}, ""},
		{"shared of two kinds", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDEventfd, Shared: 1}, FD{Num: 10, Kind: FDTimerfd, TimerClock: unix.CLOCK_MONOTONIC, Shared: 1})
		}, "fd 10: shared open file 1 is a timerfd"},
		{"shared with other flags", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDEventfd, Shared: 1}, FD{Num: 10, Kind: FDEventfd, Flags: unix.O_NONBLOCK, Shared: 1})
		}, "fd 10: shared open file 1"},
		{"shared data on a later fd", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDPipe, PipeID: 5, PipeSize: 4096, Shared: 2}, FD{Num: 10, Kind: FDPipe, PipeID: 5, PipeSize: 4096, PipeData: []byte("x"), Shared: 2})
		}, "holds contents"},
		{"shared inherited", func(c *Checkpoint) { c.Processes[0].FDs[0].Kind, c.Processes[0].FDs[0].Shared = FDInherit, 3 }, "shared open file id 3"},
		{"shared negative", func(c *Checkpoint) { c.Processes[0].FDs[2].Shared = -1 }, "shared open file id -1"},
		{"eventfd counter 2^64-1", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDEventfd, Count: ^uint64(0)})
		}, "eventfd counter"},
		{"eventfd counter 2^64-2", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDEventfd, Count: ^uint64(0) - 1})
		}, ""},
		{"timerfd clock 3 (CPU time)", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDTimerfd, TimerClock: 3})
		}, "timerfd clock 3"},
		{"timerfd TFD_TIMER_CANCEL_ON_SET", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDTimerfd, TimerFlags: 3})
		}, "timerfd flags"},
		{"timerfd negative interval", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDTimerfd, TimerClock: 1, TimerInterval: -1})
		}, "timerfd flags"},
		{"timerfd absolute boottime alarm", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDTimerfd, TimerClock: 9, TimerFlags: 1, TimerValue: 5e9, TimerTicks: 2})
		}, ""},
		{"epoll target fd 2^32", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDEpoll, Epoll: []EpollTarget{{Fd: 1 << 32}}})
		}, "epoll target fd"},
		{"file locks valid", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDFile, Path: "/tmp/x", Mode: unix.S_IFREG,
				Locks: []FileLock{{Kind: LockFlock, Write: true}, {Kind: LockPosix, Start: 10, Len: 10}, {Kind: LockOFD}}})
		}, ""},
		{"pidfd on a process of the image", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDPidfd, PidfdOf: c.Processes[0].Pid})
		}, ""},
		{"pidfd on a process not in the image", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDPidfd, PidfdOf: 31337})
		}, "not a process of the image"},
		{"symbolic link without O_PATH", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDFile, Path: "/tmp/x", Mode: unix.S_IFLNK})
		}, "symbolic link open without O_PATH"},
		{"file lock on a pipe", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDPipe, PipeID: 1, PipeSize: 4096,
				Locks: []FileLock{{Kind: LockFlock}}})
		}, "file locks on a"},
		{"file lock of unknown kind", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDFile, Path: "/tmp/x", Mode: unix.S_IFREG,
				Locks: []FileLock{{Kind: "deleg"}}})
		}, "file lock \"deleg\""},
		{"lease with a range", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDFile, Path: "/tmp/x", Mode: unix.S_IFREG,
				Locks: []FileLock{{Kind: LockLease, Start: 1}}})
		}, "file lock \"lease\""},
		{"seccomp filter of a partial instruction", func(c *Checkpoint) {
			c.Processes[0].SeccompFilters = []SeccompFilter{{Prog: make([]byte, 12)}}
		}, "seccomp filter 0: 12 bytes"},
		{"seccomp filter with an unknown flag", func(c *Checkpoint) {
			c.Processes[0].SeccompFilters = []SeccompFilter{{Prog: make([]byte, 8), Flags: 1}}
		}, "seccomp filter 0: flags 0x1"},
		{"seccomp filters and a strict thread", func(c *Checkpoint) {
			c.Processes[0].SeccompFilters = []SeccompFilter{{Prog: make([]byte, 8)}}
			c.Processes[0].Threads[0].SeccompStrict = true
		}, "in strict mode in a process with filters"},
		{"namespace of unknown type", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDNamespace, NsType: "foo", NsIno: 1})
		}, "namespace type \"foo\""},
		{"flock with a range", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDFile, Path: "/tmp/x", Mode: unix.S_IFREG,
				Locks: []FileLock{{Kind: LockFlock, Start: 1}}})
		}, "file lock"},
		{"posix lock range overflows", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDFile, Path: "/tmp/x", Mode: unix.S_IFREG,
				Locks: []FileLock{{Kind: LockPosix, Start: 1 << 62, Len: 1 << 62}}})
		}, "file lock"},
		{"pty valid", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDPty, Pty: &Pty{Index: 3, Master: true,
				State: &PtyState{Cc: make([]byte, len(unix.Termios{}.Cc)), Output: []byte("x")}}})
		}, ""},
		{"pty index negative", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDPty, Pty: &Pty{Index: -1}})
		}, "pty without a pair number"},
		{"pty control characters", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDPty, Pty: &Pty{State: &PtyState{Cc: make([]byte, 100)}}})
		}, "control characters"},
		{"pty state on a file", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDFile, Path: "/tmp/x", Mode: unix.S_IFREG, Pty: &Pty{}})
		}, "pty state on a"},
		{"epoll watch held by no fd", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDEpoll, Epoll: []EpollTarget{{Fd: 4, Held: 7}}})
		}, "which no fd holds"},
		{"epoll watch held by a shared fd", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDEpoll, Epoll: []EpollTarget{{Fd: 4, Held: 7}}},
				FD{Num: 10, Kind: FDPipe, PipeID: 1, PipeSize: 4096, Shared: 7})
		}, ""},
		{"memfd valid", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDMemfd, Size: 10, MemfdSeals: 3,
				MemfdData: []DataRun{{Off: 0, Data: []byte("ab")}, {Off: 8, Data: []byte("cd")}}})
		}, ""},
		{"memfd data beyond size", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDMemfd, Size: 9,
				MemfdData: []DataRun{{Off: 8, Data: []byte("cd")}}})
		}, "beyond size"},
		{"memfd data overlapping", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDMemfd, Size: 10,
				MemfdData: []DataRun{{Off: 4, Data: []byte("ab")}, {Off: 5, Data: []byte("cd")}}})
		}, "overlapping"},
		{"memfd unknown seal", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDMemfd, MemfdSeals: 0x40})
		}, "unknown bits"},
		{"memfd size 2^62", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDMemfd, Size: 1 << 62})
		}, "out of range"},
		{"deleted file valid", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDDeleted, Path: "/tmp/x", Mode: unix.S_IFREG | 0o600,
				FileIno: 5, Size: 10, MemfdData: []DataRun{{Off: 0, Data: []byte("ab")}}})
		}, ""},
		{"deleted file data beyond size", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDDeleted, Path: "/tmp/x", Mode: unix.S_IFREG | 0o600,
				FileIno: 5, Size: 9, MemfdData: []DataRun{{Off: 8, Data: []byte("cd")}}})
		}, "beyond size"},
		{"deleted file over the cap", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDDeleted, Path: "/tmp/x", Mode: unix.S_IFREG | 0o600,
				FileIno: 5, Size: 1 << 30, MemfdData: []DataRun{{Off: 0, Data: make([]byte, MaxMemfdData+1)}}})
		}, "bytes in all"},
		{"deleted file path with ..", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDDeleted, Path: "/tmp/../etc/x", Mode: unix.S_IFREG | 0o600, FileIno: 5})
		}, "absolute clean path"},
		{"deleted file path relative", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDDeleted, Path: "tmp/x", Mode: unix.S_IFREG | 0o600, FileIno: 5})
		}, "absolute clean path"},
		{"deleted file not regular", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDDeleted, Path: "/tmp/x", Mode: unix.S_IFSOCK | 0o700, FileIno: 5})
		}, "absolute clean path"},
		{"deleted directory valid", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDDeleted, Path: "/tmp/x", Mode: unix.S_IFDIR | 0o700, FileIno: 5})
		}, ""},
		{"deleted directory with contents", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDDeleted, Path: "/tmp/x", Mode: unix.S_IFDIR | 0o700, FileIno: 5,
				Size: 2, MemfdData: []DataRun{{Off: 0, Data: []byte("ab")}}})
		}, "with contents"},
		{"deleted FIFO valid", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDDeleted, Path: "/tmp/x", Mode: unix.S_IFIFO | 0o600, FileIno: 5,
				PipeSize: 4096, PipeData: []byte("ab")})
		}, ""},
		{"deleted FIFO over its size", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDDeleted, Path: "/tmp/x", Mode: unix.S_IFIFO | 0o600, FileIno: 5,
				PipeSize: 1, PipeData: []byte("ab")})
		}, "deleted FIFO"},
		{"deleted null device", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDDeleted, Path: "/tmp/x", Mode: unix.S_IFCHR | 0o600, FileIno: 5,
				FileRdev: unix.Mkdev(1, 3)})
		}, ""},
		{"deleted disk device", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDDeleted, Path: "/tmp/x", Mode: unix.S_IFCHR | 0o600, FileIno: 5,
				FileRdev: unix.Mkdev(8, 0)})
		}, "want a device node of /dev/null"},
		{"deleted file in removed directories", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDDeleted, Path: "/tmp/a/b/x", Mode: unix.S_IFDIR | 0o700, FileIno: 5, GoneDirs: 2})
		}, ""},
		{"deleted file with / removed", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDDeleted, Path: "/tmp/x", Mode: unix.S_IFDIR | 0o700, FileIno: 5, GoneDirs: 2})
		}, "removed directories"},
		{"deleted working directory valid", func(c *Checkpoint) {
			c.Processes[0].Cwd = "/tmp/x"
			c.Processes[0].CwdDeleted = &FD{Num: -1, Kind: FDDeleted, Path: "/tmp/x", Mode: unix.S_IFDIR | 0o700, FileIno: 5}
		}, ""},
		{"deleted working directory elsewhere", func(c *Checkpoint) {
			c.Processes[0].Cwd = "/tmp/x"
			c.Processes[0].CwdDeleted = &FD{Num: -1, Kind: FDDeleted, Path: "/etc", Mode: unix.S_IFDIR | 0o700, FileIno: 5}
		}, "deleted working directory"},
		{"inotify wds not ascending", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDInotify,
				Inotify: []InotifyWatch{{Wd: 2, Path: "/a"}, {Wd: 2, Path: "/b"}}})
		}, "wds must ascend"},
		{"inotify relative path", func(c *Checkpoint) {
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDInotify, Inotify: []InotifyWatch{{Wd: 1, Path: "a"}}})
		}, "wds must ascend"},
		{"SIGKILL handler", func(c *Checkpoint) {
			c.Processes[0].Sigactions = append(c.Processes[0].Sigactions, Sigaction{Signal: 9, Handler: 0x401100})
		}, "SIGKILL or SIGSTOP"},
		{"SIGSTOP ignored", func(c *Checkpoint) {
			c.Processes[0].Sigactions = append(c.Processes[0].Sigactions, Sigaction{Signal: 19, Handler: 1})
		}, "SIGKILL or SIGSTOP"},
		{"shared file mapping with pages", func(c *Checkpoint) { c.Processes[0].VMAs[0].Shared = true }, "shared file mapping"},
		{"file mapping path with ..", func(c *Checkpoint) {
			c.Processes[0].VMAs[0].Path = "/usr/bin/../bin/sleeper"
		}, "not absolute and clean"},
		{"timer signal", func(c *Checkpoint) { c.Processes[0].PosixTimers = []PosixTimer{{Signo: 65}} }, "signal 65"},
		{"pdeath signal", func(c *Checkpoint) { c.Processes[0].Prctl.PdeathSig = 99 }, "parent-death signal 99"},
		{"rlimit resource", func(c *Checkpoint) { c.Processes[0].Rlimits[0].Resource = 16 }, "rlimit 16"},
		{"too many threads", func(c *Checkpoint) {
			p := &c.Processes[0]
			for i := range MaxThreads {
				p.Threads = append(p.Threads, Thread{Tid: 10000 + i})
			}
		}, "threads bring the total to 32769, limit is"},
		{"auxv odd", func(c *Checkpoint) { c.Processes[0].MM.Auxv = []uint64{6, 4096, 0} }, "auxv"},
		{"auxv too long", func(c *Checkpoint) { c.Processes[0].MM.Auxv = make([]uint64, 130) }, "auxv"},
		{"overlapping vmas", func(c *Checkpoint) {
			v := &c.Processes[0].VMAs
			*v = append(*v, VMA{Start: 0x1003000, End: 0x1005000, Kind: KindAnon})
		}, "vma 0x1003000-0x1005000: overlaps"},
		{"unsorted vmas", func(c *Checkpoint) {
			v := c.Processes[0].VMAs
			v[0], v[1] = v[1], v[0]
		}, "vma 0x400000-0x402000"},
		{"empty vma", func(c *Checkpoint) { c.Processes[0].VMAs[1].End = 0x1000000 }, "start not below end"},
		{"unaligned vma", func(c *Checkpoint) { c.Processes[0].VMAs[1].End = 0x1004001 }, "not page-aligned"},
		{"vma kind", func(c *Checkpoint) { c.Processes[0].VMAs[1].Kind = "weird" }, "unknown kind"},
		{"unknown VmFlags", func(c *Checkpoint) { c.Processes[0].VMAs[1].VmFlags = []string{VmDontFork, "ss"} }, `vma 0x1000000-0x1004000: unknown VmFlags "ss"`},
		{"VmFlags twice", func(c *Checkpoint) { c.Processes[0].VMAs[1].VmFlags = []string{VmHugePage, VmHugePage} }, `VmFlags "hg" twice`},
		{"mw on anon", func(c *Checkpoint) { c.Processes[0].VMAs[1].VmFlags = []string{VmMayWriteFile} }, "not a shared file mapping"},
		{"lf without lo", func(c *Checkpoint) { c.Processes[0].VMAs[1].VmFlags = []string{VmLockOnFault} }, `VmFlags "lf" without "lo"`},
		{"file vma without path", func(c *Checkpoint) { c.Processes[0].VMAs[0].Path = "" }, "not absolute and clean"},
		{"run outside vma", func(c *Checkpoint) {
			c.Processes[0].VMAs[1].Pages[1].Addr = 0x1004000
		}, "vma 0x1000000-0x1004000: page run at 0x1004000 (1 pages): outside vma"},
		{"run past vma end", func(c *Checkpoint) {
			c.Processes[0].VMAs[1].Pages[1].Count = 2
		}, "outside vma"},
		{"run huge count", func(c *Checkpoint) {
			c.Processes[0].VMAs[1].Pages[1].Count = 1 << 62
		}, "outside vma"},
		{"run before vma", func(c *Checkpoint) { c.Processes[0].VMAs[0].Pages[0].Addr = 0x3ff000 }, "outside vma"},
		{"run unaligned", func(c *Checkpoint) { c.Processes[0].VMAs[0].Pages[0].Addr = 0x401001 }, "not page-aligned"},
		{"run empty", func(c *Checkpoint) { c.Processes[0].VMAs[0].Pages[0].Count = 0 }, "no pages"},
		{"runs overlap", func(c *Checkpoint) {
			c.Processes[0].VMAs[1].Pages[1].Addr = 0x1001000
		}, "overlaps or precedes"},
		{"run beyond page file", func(c *Checkpoint) {
			c.Processes[0].VMAs[1].Pages[1].FileOff = 4 * PageSize
		}, "beyond page file size"},
		{"run file offset unaligned", func(c *Checkpoint) {
			c.Processes[0].VMAs[1].Pages[1].FileOff = 3*PageSize + 1
		}, "not page-aligned"},
		{"run file offset negative", func(c *Checkpoint) {
			c.Processes[0].VMAs[1].Pages[1].FileOff = -PageSize
		}, "file offset"},
		{"runs overlap in file", func(c *Checkpoint) {
			c.Processes[0].VMAs[1].Pages[0].FileOff = 0
		}, "overlap in page file"},
		{"negative page file size", func(c *Checkpoint) { c.Processes[0].PageFileSize = -1 }, "page file size -1"},
		{"too few checksums", func(c *Checkpoint) { c.Processes[0].PageChecksums = nil }, "0 checksums"},
		{"too many checksums", func(c *Checkpoint) {
			p := &c.Processes[0]
			p.PageChecksums = append(p.PageChecksums, 1)
		}, "2 checksums for 16384 bytes, want 1"},
		{"page file with slash", func(c *Checkpoint) { c.Processes[0].PageFile = "../pages-4242.img" }, "not a plain file name"},
		{"page file dotdot", func(c *Checkpoint) { c.Processes[0].PageFile = ".." }, "not a plain file name"},
		{"page file empty", func(c *Checkpoint) { c.Processes[0].PageFile = "" }, "not a plain file name"},
		{"duplicate fd", func(c *Checkpoint) {
			p := &c.Processes[0]
			p.FDs = append(p.FDs, FD{Num: 3, Kind: FDFile, Path: "/dev/null"})
		}, "fd 3: duplicate"},
		{"negative fd", func(c *Checkpoint) { c.Processes[0].FDs[2].Num = -1 }, "fd -1"},
		{"inherit fd 5", func(c *Checkpoint) {
			p := &c.Processes[0]
			p.FDs = append(p.FDs, FD{Num: 5, Kind: FDInherit})
		}, "fd 5: kind \"inherit\""},
		{"fd relative path", func(c *Checkpoint) { c.Processes[0].FDs[2].Path = "tmp/x" }, "fd 3: path"},
		{"fd empty path", func(c *Checkpoint) { c.Processes[0].FDs[2].Path = "" }, "fd 3: path"},
		{"fd kind", func(c *Checkpoint) { c.Processes[0].FDs[2].Kind = "socket" }, "fd 3: unknown kind"},
		{"signal 0", func(c *Checkpoint) { c.Processes[0].Sigactions[0].Signal = 0 }, "signal 0"},
		{"signal 65", func(c *Checkpoint) { c.Processes[0].Sigactions[0].Signal = 65 }, "signal 65"},
		{"duplicate signal", func(c *Checkpoint) { c.Processes[0].Sigactions[1].Signal = 2 }, "signal 2: duplicate"},
		{"pending signals", func(c *Checkpoint) {
			p := &c.Processes[0]
			p.SharedPending = []SigInfo{testSigInfo(10), testSigInfo(35), testSigInfo(35)}
			p.Threads[0].Pending = []SigInfo{testSigInfo(12)}
			p.Threads[0].Robust = RobustList{Head: 0x7f0000002020, Len: RobustListHeadSize}
		}, ""},
		{"no robust list", func(c *Checkpoint) { c.Processes[0].Threads[0].Robust = RobustList{} }, ""},
		{"robust list length", func(c *Checkpoint) {
			c.Processes[0].Threads[0].Robust = RobustList{Head: 0x7f0000002020, Len: 16}
		}, "tid 4242: robust list length 16"},
		{"siginfo short", func(c *Checkpoint) {
			c.Processes[0].Threads[0].Pending = []SigInfo{testSigInfo(10)[:64]}
		}, "tid 4242: pending signals: siginfo 0 is 64 bytes"},
		{"siginfo long", func(c *Checkpoint) {
			c.Processes[0].SharedPending = []SigInfo{testSigInfo(10), append(testSigInfo(10), 0)}
		}, "shared pending signals: siginfo 1 is 129 bytes"},
		{"siginfo signal 0", func(c *Checkpoint) {
			c.Processes[0].SharedPending = []SigInfo{testSigInfo(0)}
		}, "siginfo 0: signal 0 out of range"},
		{"siginfo signal 65", func(c *Checkpoint) {
			c.Processes[0].Threads[0].Pending = []SigInfo{testSigInfo(65)}
		}, "siginfo 0: signal 65 out of range"},
		{"siginfo negative signal", func(c *Checkpoint) {
			c.Processes[0].Threads[0].Pending = []SigInfo{testSigInfo(-1)}
		}, "signal -1 out of range"},
		{"pending at the limit", func(c *Checkpoint) {
			c.Processes[0].SharedPending = make([]SigInfo, MaxPending)
			for i := range c.Processes[0].SharedPending {
				c.Processes[0].SharedPending[i] = testSigInfo(40)
			}
		}, ""},
		{"too many pending", func(c *Checkpoint) {
			q := make([]SigInfo, MaxPending+1)
			for i := range q {
				q[i] = testSigInfo(40)
			}
			c.Processes[0].Threads[0].Pending = q
		}, "tid 4242: pending signals: 4097 signals"},
		{"tid shared across processes", func(c *Checkpoint) {
			c.Processes = append(c.Processes, Process{Pid: 99, Ppid: 4242, Threads: []Thread{{Tid: 99}, {Tid: 4242}}})
		}, "tid 4242 also belongs to pid 4242"},
		{"child before its parent", func(c *Checkpoint) {
			c.Processes = append(c.Processes, Process{Pid: 99, Ppid: 98, Threads: []Thread{{Tid: 99}}})
		}, "parent 98 is not listed before it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sampleCheckpoint()
			tt.mutate(c)
			err := c.Validate()
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Validate() = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Validate() = %q, want it to contain %q", err, tt.msg)
			}
			if c.Arch == "x86_64" && len(c.Processes) > 0 && !strings.Contains(err.Error(), "pid ") {
				t.Errorf("Validate() = %q does not name the pid", err)
			}
		})
	}
}

// testSigInfo returns a siginfo of signal s (SI_USER from pid 77, uid 0).
func testSigInfo(s int32) SigInfo {
	si := make(SigInfo, SigInfoSize)
	binary.LittleEndian.PutUint32(si[0:], uint32(s))
	binary.LittleEndian.PutUint32(si[16:], 77)
	return si
}
