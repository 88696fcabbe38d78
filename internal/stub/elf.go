// Package stub creates the empty process a restore starts from: a minimal
// static ELF (no libc, no start-up code: it only ever waits in pause())
// that rtcr writes to a memfd and executes traced, then a clone3 from
// inside it that gives the new process the checkpointed pid. Restore then
// replaces everything the stub has with the image's state.
package stub

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
)

// code is the stub's whole program: for (;;) pause();
//
//	mov  eax, 34   ; __NR_pause
//	syscall
//	jmp  .-9
var code = []byte{0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7}

// syscallOff is the offset of the syscall instruction within code.
const syscallOff = 5

const (
	ehdrSize = 64
	phdrSize = 56
	codeOff  = ehdrSize + phdrSize
)

// ELF returns a static x86_64 executable loaded at base (page-aligned)
// whose entry point loops in pause(), and the address of its syscall
// instruction.
func ELF(base uint64) (image []byte, syscallAddr uint64) {
	return Program(base, code), base + codeOff + syscallOff
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
