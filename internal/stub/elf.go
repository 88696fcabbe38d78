// Package stub creates the empty process a restore starts from: a minimal
// static ELF (no libc, no start-up code: it dies with its parent, and
// otherwise only ever waits in pause()) that rtcr writes to a memfd and
// executes traced, then a clone3 from inside it that gives the new process
// the checkpointed pid. Restore then
// replaces everything the stub has with the image's state.
package stub

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
)

// code returns the stub's whole program for a stub whose parent is the
// process parent:
//
//	prctl(PR_SET_PDEATHSIG, SIGKILL);
//	if (getppid() != parent) exit_group(1);
//	for (;;) pause();
//
// rtcr runs the stub traced and only ever injects system calls into it, so
// this code runs only if rtcr (the tracer and parent) died before it
// could set PTRACE_O_EXITKILL, e.g. between fork and exec: then the stub
// must not live on holding rtcr's stdio. The death signal covers a parent
// dying after the prctl, the getppid check one that died before it.
//
//	mov  eax, 157      ; __NR_prctl
//	mov  edi, 1        ; PR_SET_PDEATHSIG
//	mov  esi, 9        ; SIGKILL
//	syscall
//	mov  eax, 110      ; __NR_getppid
//	syscall
//	cmp  eax, parent
//	jne  die
//	loop: mov eax, 34  ; __NR_pause
//	syscall
//	jmp  loop
//	die: mov eax, 231  ; __NR_exit_group
//	mov  edi, 1
//	syscall
func code(parent int) []byte {
	p := uint32(parent)
	return []byte{
		0xb8, 0x9d, 0x00, 0x00, 0x00,
		0xbf, 0x01, 0x00, 0x00, 0x00,
		0xbe, 0x09, 0x00, 0x00, 0x00,
		0x0f, 0x05,
		0xb8, 0x6e, 0x00, 0x00, 0x00,
		0x0f, 0x05,
		0x3d, byte(p), byte(p >> 8), byte(p >> 16), byte(p >> 24),
		0x75, 0x09,
		0xb8, 0x22, 0x00, 0x00, 0x00,
		0x0f, 0x05,
		0xeb, 0xf7,
		0xb8, 0xe7, 0x00, 0x00, 0x00,
		0xbf, 0x01, 0x00, 0x00, 0x00,
		0x0f, 0x05,
	}
}

// syscallOff is the offset within code of the pause loop's syscall
// instruction, the one rtcr injects through.
const syscallOff = 36

const (
	ehdrSize = 64
	phdrSize = 56
	codeOff  = ehdrSize + phdrSize
)

// ELF returns a static x86_64 executable loaded at base (page-aligned)
// that dies with its parent, the process parent (or at once if its parent
// is another), and otherwise loops in pause(); and the address of its
// syscall instruction.
func ELF(base uint64, parent int) (image []byte, syscallAddr uint64) {
	return Program(base, code(parent)), base + codeOff + syscallOff
}

// Program returns a static x86_64 executable loaded at base (page-aligned)
// that consists of one read+execute segment and starts at the first byte
// of text.
func Program(base uint64, text []byte) []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	ident := [16]byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)}
	hdr := elf.Header64{
		Ident:     ident,
		Type:      uint16(elf.ET_EXEC),
		Machine:   uint16(elf.EM_X86_64),
		Version:   uint32(elf.EV_CURRENT),
		Entry:     base + codeOff,
		Phoff:     ehdrSize,
		Ehsize:    ehdrSize,
		Phentsize: phdrSize,
		Phnum:     1,
	}
	size := uint64(codeOff + len(text))
	ph := elf.Prog64{
		Type:   uint32(elf.PT_LOAD),
		Flags:  uint32(elf.PF_R | elf.PF_X),
		Vaddr:  base,
		Paddr:  base,
		Filesz: size,
		Memsz:  size,
		Align:  0x1000,
	}
	_ = binary.Write(&b, le, &hdr)
	_ = binary.Write(&b, le, &ph)
	b.Write(text)
	return b.Bytes()
}
