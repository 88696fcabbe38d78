package bench

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// fdCycle is the mix of fds the fd benchmark's process opens, in order,
// over and over: each entry is one kind and how many fds it adds.
var fdCycle = []struct {
	kind string
	fds  int
}{
	{"regular file", 1},
	{"dup of it (one open file description)", 1},
	{"pipe with 3 bytes buffered", 2},
	{"unix socket pair", 2},
	{"eventfd", 1},
	{"epoll watching that eventfd", 1},
	{"memfd with 3 bytes", 1},
	{"armed timerfd", 1},
	{"signalfd", 1},
	{"/dev/null", 1},
}

// fdProg builds the text of a process that raises its soft RLIMIT_NOFILE
// to its hard limit, opens n fds from 3 up following fdCycle (the file
// at path for regular files) and then loops in pause(). The code is
// straight-line: fds are given the lowest free number, so every fd number
// is known here, and each call is a few "mov reg, imm64" and a syscall.
// Its read-only data (paths, structs) comes first, jumped over.
func fdProg(n int, path string) []byte {
	var data []byte
	put := func(b []byte) uint64 {
		off := uint64(5 + len(data)) // after the leading jmp rel32
		data = append(data, b...)
		for len(data)%8 != 0 {
			data = append(data, 0)
		}
		return hogBase + codeOffset + off
	}
	pathAddr := put(append([]byte(path), 0))
	nullAddr := put([]byte("/dev/null\x00"))
	nameAddr := put([]byte("rtcr-bench\x00"))
	bytesAddr := put([]byte("abc"))
	var ev [12]byte // struct epoll_event, packed: events, data
	binary.LittleEndian.PutUint32(ev[:], unix.EPOLLIN)
	evAddr := put(ev[:])
	var its [32]byte // struct itimerspec: 1000 s interval and value
	binary.LittleEndian.PutUint64(its[0:], 1000)
	binary.LittleEndian.PutUint64(its[16:], 1000)
	itsAddr := put(its[:])
	var mask [8]byte
	binary.LittleEndian.PutUint64(mask[:], 1<<(unix.SIGUSR1-1))
	maskAddr := put(mask[:])

	atFDCWD := ^uint64(99) // AT_FDCWD (-100), as the register holds it
	var c asm
	// prlimit64(0, RLIMIT_NOFILE, NULL, rsp); rlim_cur = rlim_max;
	// prlimit64(0, RLIMIT_NOFILE, rsp, NULL).
	c.call(unix.SYS_PRLIMIT64, imm(0), imm(unix.RLIMIT_NOFILE), imm(0), rsp)
	c.b = append(c.b, 0x48, 0x8b, 0x44, 0x24, 0x08) // mov rax, [rsp+8]
	c.b = append(c.b, 0x48, 0x89, 0x04, 0x24)       // mov [rsp], rax
	c.call(unix.SYS_PRLIMIT64, imm(0), imm(unix.RLIMIT_NOFILE), rsp, imm(0))
	next := uint64(3)
	left := n
	for i := 0; left > 0; i = (i + 1) % len(fdCycle) {
		if fdCycle[i].fds > left {
			i = len(fdCycle) - 1 // fill up with /dev/null
		}
		switch i {
		case 0:
			c.call(unix.SYS_OPENAT, imm(atFDCWD), imm(pathAddr), imm(unix.O_RDWR))
		case 1:
			c.call(unix.SYS_DUP, imm(next-1))
		case 2:
			c.call(unix.SYS_PIPE2, rsp, imm(0))
			c.call(unix.SYS_WRITE, imm(next+1), imm(bytesAddr), imm(3))
		case 3:
			c.call(unix.SYS_SOCKETPAIR, imm(unix.AF_UNIX), imm(unix.SOCK_STREAM), imm(0), rsp)
		case 4:
			c.call(unix.SYS_EVENTFD2, imm(5), imm(0))
		case 5:
			c.call(unix.SYS_EPOLL_CREATE1, imm(0))
			c.call(unix.SYS_EPOLL_CTL, imm(next), imm(unix.EPOLL_CTL_ADD), imm(next-1), imm(evAddr))
		case 6:
			c.call(unix.SYS_MEMFD_CREATE, imm(nameAddr), imm(0))
			c.call(unix.SYS_WRITE, imm(next), imm(bytesAddr), imm(3))
		case 7:
			c.call(unix.SYS_TIMERFD_CREATE, imm(unix.CLOCK_MONOTONIC), imm(0))
			c.call(unix.SYS_TIMERFD_SETTIME, imm(next), imm(0), imm(itsAddr), imm(0))
		case 8:
			c.call(unix.SYS_SIGNALFD4, imm(^uint64(0)), imm(maskAddr), imm(8), imm(0))
		case 9:
			c.call(unix.SYS_OPENAT, imm(atFDCWD), imm(nullAddr), imm(unix.O_RDONLY))
		}
		next += uint64(fdCycle[i].fds)
		left -= fdCycle[i].fds
	}
	c.b = append(c.b, pauseText...)

	text := []byte{0xe9}
	text = binary.LittleEndian.AppendUint32(text, uint32(len(data)))
	text = append(text, data...)
	return append(text, c.b...)
}

// codeOffset is where stub.Program puts the text in the file and in
// memory, after the ELF header and its one program header.
const codeOffset = 64 + 56

// arg is one argument of asm.call: an immediate, or the stack pointer.
type arg struct {
	v     uint64
	isRsp bool
}

func imm(v uint64) arg { return arg{v: v} }

var rsp = arg{isRsp: true}

// asm emits x86_64 system calls.
type asm struct{ b []byte }

// The argument registers of a system call, as (REX, register number):
// rdi, rsi, rdx, r10, r8, r9.
var argRegs = [6]struct{ rex, reg byte }{{0x48, 7}, {0x48, 6}, {0x48, 2}, {0x49, 2}, {0x49, 0}, {0x49, 1}}

// call emits "mov rax, nr", the arguments ("mov reg, imm64" or
// "mov reg, rsp") and "syscall".
func (a *asm) call(nr uint64, args ...arg) {
	a.b = append(a.b, 0x48, 0xb8)
	a.b = binary.LittleEndian.AppendUint64(a.b, nr)
	for i, x := range args {
		r := argRegs[i]
		if x.isRsp {
			// mov reg, rsp: REX.W (+B) 89 /r, ModRM 11 100 reg
			a.b = append(a.b, r.rex, 0x89, 0xe0|r.reg)
			continue
		}
		a.b = append(a.b, r.rex, 0xb8+r.reg)
		a.b = binary.LittleEndian.AppendUint64(a.b, x.v)
	}
	a.b = append(a.b, 0x0f, 0x05)
}
