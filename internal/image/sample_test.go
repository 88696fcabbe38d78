package image

import (
	"bytes"

	"golang.org/x/sys/unix"
)

// sampleCheckpoint returns a small but realistic valid checkpoint.
func sampleCheckpoint() *Checkpoint {
	xstate := make([]byte, 832)
	for i := range xstate {
		xstate[i] = byte(i * 7)
	}
	pages := make([]byte, 4*PageSize)
	return &Checkpoint{
		Kernel:  "6.8.0-45-generic #45-Ubuntu SMP",
		Arch:    "x86_64",
		Created: 1717171717123456789,
		Processes: []Process{{
			Pid:         4242,
			Comm:        "sleeper",
			Exe:         "/usr/bin/sleeper",
			Cwd:         "/home/user",
			Umask:       0o022,
			Personality: 0,
			Rlimits:     []Rlimit{{Resource: 7, Cur: 1024, Max: 4096}, {Resource: 3, Cur: 8 << 20, Max: ^uint64(0)}},
			MM: MM{
				StartCode: 0x400000, EndCode: 0x401000,
				StartData: 0x401000, EndData: 0x402000,
				StartBrk: 0x1000000, Brk: 0x1004000,
				StartStack: 0x7ffc0000f000,
				ArgStart:   0x7ffc0000e000, ArgEnd: 0x7ffc0000e010,
				EnvStart: 0x7ffc0000e010, EnvEnd: 0x7ffc0000e100,
				Auxv: []uint64{6, 4096, 25, 0x7ffc0000e200, 0, 0},
			},
			VMAs: []VMA{
				{
					Start: 0x400000, End: 0x402000, Prot: unix.PROT_READ | unix.PROT_EXEC,
					Kind: KindFile, Name: "/usr/bin/sleeper", Path: "/usr/bin/sleeper",
					Dev: 0x803, Inode: 123456, FileSize: 8192, FileMtime: 1700000000000000000,
					Pages: []PageRun{{Addr: 0x401000, Count: 1, FileOff: 0}},
				},
				{
					Start: 0x1000000, End: 0x1004000, Prot: unix.PROT_READ | unix.PROT_WRITE,
					Kind: KindHeap, Name: "[heap]",
					Pages: []PageRun{
						{Addr: 0x1000000, Count: 2, FileOff: PageSize},
						{Addr: 0x1003000, Count: 1, FileOff: 3 * PageSize},
					},
				},
			},
			VDSO: []byte{0x7f, 'E', 'L', 'F', 2, 1, 1},
			FDs: []FD{
				{Num: 0, Kind: FDInherit, Desc: "/dev/pts/0 (tty)"},
				{Num: 1, Kind: FDInherit, Desc: "pipe:[1234]"},
				{Num: 3, Kind: FDFile, Path: "/tmp/sleeper.log", Flags: unix.O_WRONLY | unix.O_APPEND | unix.O_CLOEXEC,
					Offset: 77, Mode: 0o100644, Size: 77, Desc: "/tmp/sleeper.log"},
			},
			Sigactions: []Sigaction{
				{Signal: 2, Handler: 0x401100, Flags: 0x04000000, Restorer: 0x401200, Mask: 1 << 14},
				{Signal: 15, Handler: 1},
			},
			Threads: []Thread{{
				Tid:        4242,
				Regs:       unix.PtraceRegs{Rip: 0x401080, Rsp: 0x7ffc0000d000, Rax: ^uint64(37), Orig_rax: 35, Cs: 0x33, Ss: 0x2b},
				XState:     xstate,
				SigMask:    1 << 9,
				Rseq:       &Rseq{Ptr: 0x7f0000001000, Len: 32, Sig: 0x53053053},
				TidAddress: 0x7f0000002000,
				AltStack:   SigAltStack{Flags: 2},
				Name:       "sleeper",
				Syscall:    "nanosleep: restart",
			}},
			PageFile:      PageFileName("0123456789abcdef", 4242),
			PageFileSize:  int64(len(pages)),
			PageChecksums: []uint32{crcOf(pages)},
		}},
	}
}

func crcOf(b []byte) uint32 {
	pw := NewPageWriter(new(bytes.Buffer))
	pw.Write(b)
	return pw.Checksums()[0]
}
