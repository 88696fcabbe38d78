package inspect

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/rtcr/rtcr/internal/image"
	"golang.org/x/sys/unix"
)

// sample returns a realistic checkpoint of one small process.
func sample() *image.Checkpoint {
	return &image.Checkpoint{
		Kernel:  "6.8.0-45-generic #45-Ubuntu SMP",
		Arch:    "x86_64",
		Created: 1717171717123456789,
		Processes: []image.Process{{
			Pid: 4242, Comm: "sleeper", Exe: "/usr/bin/sleeper", Cwd: "/home/user",
			Umask: 0o022, Personality: 0x400000,
			Rlimits: []image.Rlimit{
				{Resource: 7, Cur: 1024, Max: 4096},
				{Resource: 3, Cur: 8 << 20, Max: ^uint64(0)},
				{Resource: 0, Cur: ^uint64(0), Max: ^uint64(0)},
			},
			MM: image.MM{
				StartCode: 0x555555554000, EndCode: 0x555555556000,
				StartBrk: 0x555555559000, Brk: 0x55555557a000,
				StartStack: 0x7ffffffde000,
				ArgStart:   0x7ffffffdf000, ArgEnd: 0x7ffffffdf010,
				EnvStart: 0x7ffffffdf010, EnvEnd: 0x7ffffffdf100,
				Auxv: []uint64{6, 4096, 0, 0},
			},
			VMAs: []image.VMA{
				{
					Start: 0x555555554000, End: 0x555555556000, Prot: unix.PROT_READ | unix.PROT_EXEC,
					Kind: image.KindFile, Name: "/usr/bin/sleeper", Path: "/usr/bin/sleeper",
					Pages: []image.PageRun{{Addr: 0x555555555000, Count: 1}},
				},
				{
					Start: 0x555555559000, End: 0x55555557a000, Prot: unix.PROT_READ | unix.PROT_WRITE,
					Kind: image.KindHeap, Name: "[heap]",
					Pages: []image.PageRun{
						{Addr: 0x555555559000, Count: 2, FileOff: image.PageSize},
						{Addr: 0x555555560000, Count: 1, FileOff: 3 * image.PageSize},
					},
				},
				{
					Start: 0x7ffff7fc1000, End: 0x7ffff7fc3000, Prot: unix.PROT_READ | unix.PROT_EXEC,
					Kind: image.KindVDSO, Name: "[vdso]",
				},
			},
			VDSO: make([]byte, 2*image.PageSize),
			FDs: []image.FD{
				{Num: 0, Kind: image.FDInherit, Flags: unix.O_RDWR, Desc: "/dev/pts/0 (tty)"},
				{Num: 3, Kind: image.FDFile, Path: "/tmp/sleeper.log",
					Flags:  unix.O_WRONLY | unix.O_APPEND | unix.O_CLOEXEC | 0o100000,
					Offset: 77, Mode: 0o100644, Size: 77},
			},
			Sigactions: []image.Sigaction{
				{Signal: 2, Handler: 0x555555555100, Flags: 0x04000000, Mask: 1 << 14},
				{Signal: 15, Handler: 1},
				{Signal: 34, Handler: 0},
			},
			Threads: []image.Thread{{
				Tid:     4242,
				Regs:    unix.PtraceRegs{Rip: 0x7ffff7e8a7fa, Rsp: 0x7fffffffe3a8, Fs_base: 0x7ffff7d8a740},
				XState:  make([]byte, 2696),
				SigMask: 1 << 9,
				Rseq:    &image.Rseq{Ptr: 0x7ffff7d8b0e0, Len: 32, Sig: 0x53053053},
				Name:    "sleeper",
				Syscall: "nanosleep: restart",
			}, {
				Tid: 4243, Name: "worker", XState: make([]byte, 2696),
			}},
			PageFile:      "pages-4242.img",
			PageFileSize:  4 * image.PageSize,
			PageChecksums: []uint32{0xdeadbeef},
		}},
	}
}

func TestWrite(t *testing.T) {
	var buf bytes.Buffer
	c := sample()
	c.Version = 4 // the format the manifest was read in
	if err := Write(&buf, "/tmp/img", c); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	t.Log("\n" + out)
	for _, want := range []string{
		"/tmp/img",
		"format     4\n",
		"2024-05-31T16:08:37Z",
		"x86_64",
		"Process 4242 (sleeper)",
		"0022",
		"0x400000",
		"pages-4242.img, 16.0 KiB (16384 bytes)",
		"1 (CRC-32C per 1.0 MiB)",
		"0x555555559000",
		"0000555555554000-0000555555556000",
		"r-xp",
		"rw-p",
		"[vdso]",
		"1 (4.0 KiB)",
		"3 VMAs, 148.0 KiB mapped, 16.0 KiB saved",
		"rdwr",
		"wronly|append|cloexec|largefile",
		"/tmp/sleeper.log",
		"/dev/pts/0 (tty)",
		"SIGINT",
		"0x555555555100",
		"SIG_IGN",
		"SIG_DFL",
		"SIGRTMIN+2",
		"0x7ffff7e8a7fa",
		"2696 B",
		"0x7ffff7d8b0e0/32",
		"nanosleep: restart",
		"user space",
		"nofile",
		"unlimited",
		"unlimited: cpu",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestWriteEmpty(t *testing.T) {
	c := &image.Checkpoint{Processes: []image.Process{{Pid: 1}}}
	var buf bytes.Buffer
	if err := Write(&buf, "d", c); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "(none)") {
		t.Errorf("empty sections not marked:\n%s", buf.String())
	}
	if err := Write(&buf, "d", nil); err == nil {
		t.Error("nil checkpoint: no error")
	}
}

type failWriter struct{}

var errFail = errors.New("disk full")

func (failWriter) Write([]byte) (int, error) { return 0, errFail }

func TestWriteError(t *testing.T) {
	if err := Write(failWriter{}, "d", sample()); !errors.Is(err, errFail) {
		t.Errorf("got %v, want %v", err, errFail)
	}
}

func TestHumanSize(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{1<<20 - 1, "1.0 MiB"},
		{1 << 20, "1.0 MiB"},
		{5 << 30, "5.0 GiB"},
		{3 << 40, "3.0 TiB"},
		{-2048, "-2.0 KiB"},
		{-1 << 63, "-8.0 EiB"},
	} {
		if got := HumanSize(tc.n); got != tc.want {
			t.Errorf("HumanSize(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestOpenFlags(t *testing.T) {
	for _, tc := range []struct {
		flags int
		want  string
	}{
		{unix.O_RDONLY, "rdonly"},
		{unix.O_RDWR | unix.O_NONBLOCK, "rdwr|nonblock"},
		{unix.O_WRONLY | unix.O_SYNC, "wronly|sync"},
		{unix.O_WRONLY | unix.O_DSYNC, "wronly|dsync"},
		{unix.O_RDONLY | 0x80000000, "rdonly|0x80000000"},
	} {
		if got := openFlags(tc.flags); got != tc.want {
			t.Errorf("openFlags(%#x) = %q, want %q", tc.flags, got, tc.want)
		}
	}
}

func TestSignalName(t *testing.T) {
	for n, want := range map[int]string{2: "SIGINT", 17: "SIGCHLD", 32: "SIGRTMIN+0", 64: "SIGRTMIN+32", 65: "sig 65"} {
		if got := signalName(n); got != want {
			t.Errorf("signalName(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestWriteTree covers what trees, namespaces, credentials and timers add.
func TestWriteTree(t *testing.T) {
	c := sample()
	c.PidNS = true
	c.Clocks = &image.Clocks{Monotonic: 90e9, Boottime: 95e9}
	p := &c.Processes[0]
	p.Ppid, p.Pgid, p.Sid = 1, 4242, 7
	p.Creds = &image.Creds{Uid: 1000, Euid: 1001, Groups: []uint32{5, 6}, CapEff: 0x400}
	p.Prctl = image.Prctl{Dumpable: 1, PdeathSig: 12}
	p.Itimers = []image.Itimer{{IntervalNs: 2e9, ValueNs: 1e9}, {}, {}}
	p.PosixTimers = []image.PosixTimer{{ID: 3, Clock: 1, Signo: 10, IntervalNs: 5e6, ValueNs: 4e6}, {ID: 4, Signo: 12}}
	p.Stopped, p.Tty, p.TtyFg = true, 0x8802, 4242 // /dev/pts/2
	c.Processes = append(c.Processes, image.Process{Pid: 4300, Ppid: 4242, Pgid: 4242, Sid: 7, Comm: "child", Zombie: true, ExitStatus: 3 << 8})
	var buf bytes.Buffer
	if err := Write(&buf, "/tmp/img", c); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"pid and time (started by rtcr run",
		"monotonic 1m30s, boottime 1m35s",
		"group, session  4242, 7",
		"1000 1001 0 0 (real, effective, saved, fs)",
		"groups [5 6]",
		"eff 0x400",
		"1, false, 12",
		"Timers (3)",
		"itimer real",
		"timer 3",
		"SIGUSR1",
		"disarmed",
		"Process 4300 (child)",
		"exited, wait status 0x300, not reaped yet",
		"by a signal; restored stopped",
		"device 136:2, foreground group 4242",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestWriteIncremental: an incremental image shows its parent, its freeze
// time, and how many pages it holds itself and takes from parents.
func TestWriteIncremental(t *testing.T) {
	c := sample()
	c.ID = strings.Repeat("a", 32)
	c.FreezeNs = 12_345_000
	c.ChainLen = 2
	c.Parent = &image.ParentLink{Dir: "../1", ID: strings.Repeat("b", 32), Sum: strings.Repeat("c", 64)}
	v := &c.Processes[0].VMAs[len(c.Processes[0].VMAs)-1]
	v.Pages = append(v.Pages, image.PageRun{Addr: v.End - image.PageSize, Count: 1, FileOff: 0, Depth: 2})
	var buf bytes.Buffer
	if err := Write(&buf, "/tmp/img", c); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"freeze     12.345ms", "parent     ../1 (id " + c.Parent.ID, "2 images behind this one", "1 from parent images (4.0 KiB)", "in parent images"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
