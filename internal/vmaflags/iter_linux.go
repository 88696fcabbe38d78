package vmaflags

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// layout is where the iterator program reads: offsets (bytes) in the
// iterator's context, in struct bpf_iter_meta, struct vm_area_struct and
// struct mm_struct, and the type id of the iterator's attach point.
type layout struct {
	iterFunc                    uint32
	ctxMeta, ctxVMA, metaSeq    uint32
	vmStart, vmEnd, vmFlags     uint32
	vmMM, mmLockSeq, seqPayload uint32
}

// layoutFrom finds the layout in the kernel's BTF s.
func layoutFrom(s *btfSpec) (*layout, error) {
	var l layout
	var err error
	if l.iterFunc, err = s.find(kindFunc, "bpf_iter_task_vma"); err != nil {
		return nil, err
	}
	type want struct {
		typ, member string
		size        uint32
		out         *uint32
	}
	for _, w := range []want{
		{"bpf_iter__task_vma", "meta", 8, &l.ctxMeta},
		{"bpf_iter__task_vma", "vma", 8, &l.ctxVMA},
		{"bpf_iter_meta", "seq", 8, &l.metaSeq},
		{"vm_area_struct", "vm_start", 8, &l.vmStart},
		{"vm_area_struct", "vm_end", 8, &l.vmEnd},
		{"vm_area_struct", "vm_flags", 8, &l.vmFlags},
		{"vm_area_struct", "vm_mm", 8, &l.vmMM},
		{"mm_struct", "mm_lock_seq", 0, &l.mmLockSeq},
		{"seqcount", "sequence", 4, &l.seqPayload},
	} {
		id, err := s.find(kindStruct, w.typ)
		if err != nil {
			return nil, err
		}
		off, size, err := s.member(id, w.member)
		if err != nil {
			return nil, err
		}
		if w.size != 0 && size != w.size {
			return nil, fmt.Errorf("BTF member %s.%s has %d bytes, want %d", w.typ, w.member, size, w.size)
		}
		*w.out = off
	}
	return &l, nil
}

// insn is one BPF instruction.
type insn struct {
	code uint8
	regs uint8 // dst in the low nibble, src in the high one
	off  int16
	imm  int32
}

func ldx(size uint8, dst, src uint8, off uint32) insn {
	return insn{code: 0x61 | size, regs: dst | src<<4, off: int16(off)}
}

const (
	sizeW  = 0x00 // BPF_W (with 0x61: ldxw)
	sizeDW = 0x18 // BPF_DW (0x79)
)

// program returns the iterator program: for every VMA of the task it
// writes {vm_start, vm_end, vm_flags, the mm's mm_lock_seq} (four u64)
// to the iterator's output.
func program(l *layout) []insn {
	stx := func(off int16, src uint8) insn { return insn{code: 0x7b, regs: 10 | src<<4, off: off} }
	return []insn{
		{code: 0xbf, regs: 6 | 1<<4},               // r6 = r1 (ctx)
		ldx(sizeDW, 7, 6, l.ctxVMA),                // r7 = ctx->vma
		{code: 0x15, regs: 7, off: 15},             // if r7 == 0 goto out
		ldx(sizeDW, 1, 7, l.vmStart),               // r1 = vma->vm_start
		stx(-32, 1),                                //
		ldx(sizeDW, 1, 7, l.vmEnd),                 // r1 = vma->vm_end
		stx(-24, 1),                                //
		ldx(sizeDW, 1, 7, l.vmFlags),               // r1 = vma->vm_flags
		stx(-16, 1),                                //
		ldx(sizeDW, 1, 7, l.vmMM),                  // r1 = vma->vm_mm
		ldx(sizeW, 1, 1, l.mmLockSeq+l.seqPayload), // r1 = mm->mm_lock_seq.sequence
		stx(-8, 1),                                 //
		ldx(sizeDW, 1, 6, l.ctxMeta),               // r1 = ctx->meta
		ldx(sizeDW, 1, 1, l.metaSeq),               // r1 = meta->seq
		{code: 0xbf, regs: 2 | 10<<4},              // r2 = r10
		{code: 0x07, regs: 2, imm: -32},            // r2 += -32
		{code: 0xb7, regs: 3, imm: 32},             // r3 = 32
		{code: 0x85, imm: 127},                     // call bpf_seq_write
		{code: 0xb7, regs: 0, imm: 0},              // out: r0 = 0
		{code: 0x95},                               // exit
	}
}

// bpf makes the bpf system call cmd with the attribute bytes attr.
func bpf(cmd int, attr []byte) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

// loaded is the iterator program, loaded once per rtcr process.
var loaded struct {
	once sync.Once
	fd   int
	err  error
}

// BTFPath is the kernel's type information.
const BTFPath = "/sys/kernel/btf/vmlinux"

// loadProgram loads the iterator program (once).
func loadProgram() (int, error) {
	loaded.once.Do(func() {
		loaded.fd, loaded.err = load()
	})
	return loaded.fd, loaded.err
}

func load() (int, error) {
	s, err := loadBTF(BTFPath)
	if err != nil {
		return -1, fmt.Errorf("kernel BTF: %w", err)
	}
	l, err := layoutFrom(s)
	if err != nil {
		return -1, fmt.Errorf("kernel BTF: %w", err)
	}
	prog := program(l)
	code := make([]byte, 8*len(prog))
	for i, in := range prog {
		b := code[8*i:]
		b[0], b[1] = in.code, in.regs
		binary.LittleEndian.PutUint16(b[2:], uint16(in.off))
		binary.LittleEndian.PutUint32(b[4:], uint32(in.imm))
	}
	license := []byte("GPL\x00")
	logBuf := make([]byte, 64<<10)
	attr := make([]byte, 144)
	le := binary.LittleEndian
	le.PutUint32(attr[0:], unix.BPF_PROG_TYPE_TRACING)
	le.PutUint32(attr[4:], uint32(len(prog)))
	le.PutUint64(attr[8:], uint64(uintptr(unsafe.Pointer(&code[0]))))
	le.PutUint64(attr[16:], uint64(uintptr(unsafe.Pointer(&license[0]))))
	le.PutUint32(attr[24:], 1) // log level
	le.PutUint32(attr[28:], uint32(len(logBuf)))
	le.PutUint64(attr[32:], uint64(uintptr(unsafe.Pointer(&logBuf[0]))))
	copy(attr[48:64], "rtcr_vmaflags")
	le.PutUint32(attr[68:], unix.BPF_TRACE_ITER)
	le.PutUint32(attr[108:], l.iterFunc)
	fd, err := bpf(unix.BPF_PROG_LOAD, attr)
	if err != nil {
		msg := string(logBuf)
		if i := indexZero(logBuf); i >= 0 {
			msg = string(logBuf[:i])
		}
		return -1, fmt.Errorf("load the VMA iterator: %w (verifier: %.400s)", err, msg)
	}
	unix.CloseOnExec(fd)
	return fd, nil
}

func indexZero(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

// VMA is one mapping as the kernel holds it: its range, its vm_flags word
// (what /proc/PID/smaps shows as VmFlags) and the sequence count of its
// address space's mmap lock, which moves whenever the lock is taken for
// writing (every change of a mapping's range or flags is made so).
type VMA struct {
	Start, End, Flags, LockSeq uint64
}

// Iter reads the mappings of one process through a BPF iterator.
type Iter struct {
	pid  int
	link int
	buf  []byte
}

// ErrUnavailable reports a kernel without what the iterator needs.
var ErrUnavailable = errors.New("VMA iterator unavailable")

// Open makes an iterator over the mappings of process pid (its thread
// pid: one address space).
func Open(pid int) (*Iter, error) {
	prog, err := loadProgram()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	info := make([]byte, 24) // union bpf_iter_link_info: task {tid, pid, pid_fd}
	binary.LittleEndian.PutUint32(info[0:], uint32(pid))
	attr := make([]byte, 64)
	le := binary.LittleEndian
	le.PutUint32(attr[0:], uint32(prog))
	le.PutUint32(attr[8:], unix.BPF_TRACE_ITER)
	le.PutUint64(attr[16:], uint64(uintptr(unsafe.Pointer(&info[0]))))
	le.PutUint32(attr[24:], uint32(len(info)))
	link, err := bpf(unix.BPF_LINK_CREATE, attr)
	if err != nil {
		return nil, fmt.Errorf("%w: link the VMA iterator to %d: %w", ErrUnavailable, pid, err)
	}
	unix.CloseOnExec(link)
	return &Iter{pid: pid, link: link, buf: make([]byte, 64<<10)}, nil
}

// Close releases the iterator.
func (it *Iter) Close() error { return unix.Close(it.link) }

// Read returns the process's mappings in address order. Each read()
// of the iterator holds the mmap lock for reading; a long list may be
// read in several (LockSeq tells whether the lock was taken in between).
func (it *Iter) Read(out []VMA) ([]VMA, error) {
	attr := make([]byte, 8)
	binary.LittleEndian.PutUint32(attr[0:], uint32(it.link))
	fd, err := bpf(unix.BPF_ITER_CREATE, attr)
	if err != nil {
		return nil, fmt.Errorf("VMAs of %d: create iterator: %w", it.pid, err)
	}
	defer unix.Close(fd)
	out = out[:0]
	var rest []byte
	for {
		n, err := unix.Read(fd, it.buf)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("VMAs of %d: %w", it.pid, err)
		}
		if n == 0 {
			break
		}
		rest = append(rest, it.buf[:n]...)
		for len(rest) >= 32 {
			le := binary.LittleEndian
			out = append(out, VMA{Start: le.Uint64(rest), End: le.Uint64(rest[8:]), Flags: le.Uint64(rest[16:]), LockSeq: le.Uint64(rest[24:])})
			rest = rest[32:]
		}
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("VMAs of %d: %d bytes left over", it.pid, len(rest))
	}
	return out, nil
}
