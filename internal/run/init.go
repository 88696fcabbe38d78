// Package run starts a program under rtcr in new pid and time namespaces,
// below a tiny init of rtcr's own, so that the program's pids are small
// and the same on every run, and its clocks can be carried across a
// checkpoint.
package run

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rtcr/rtcr/internal/stub"
)

// initText is the init's whole program, for x86_64 (assembled from the
// listing below with GNU as; argv is "rtcr-init PATH ARG0 ARG1 …"):
//
//	_start:  mov rbx, rsp                 ; argc, argv[], NULL, envp[]
//	         mov eax, 57 ; syscall        ; fork
//	         test eax, eax ; jnz parent
//	         mov rdi, [rbx+16]            ; child: execve(argv[1],
//	         lea rsi, [rbx+24]            ;   &argv[2],
//	         mov rcx, [rbx]               ;   envp = &argv[argc+1])
//	         lea rdx, [rbx+rcx*8+16]
//	         mov eax, 59 ; syscall
//	         mov edi, 127 ; mov eax, 231 ; syscall   ; exit_group(127)
//	parent:  mov r12, rax ; sub rsp, 16
//	wait:    mov rdi, -1 ; mov rsi, rsp ; xor edx, edx ; xor r10d, r10d
//	         mov eax, 61 ; syscall        ; wait4(-1, &status, 0, NULL): reap
//	         test rax, rax ; js failed
//	         cmp rax, r12 ; jne wait      ; until the program itself exits
//	         mov eax, [rsp] ; mov edi, eax ; and edi, 0x7f ; jz exited
//	         add edi, 128 ; jmp done      ; killed: 128 + signal
//	exited:  shr eax, 8 ; movzx edi, al   ; exited: its code
//	done:    mov eax, 231 ; syscall       ; exit_group
//	failed:  mov edi, 127 ; mov eax, 231 ; syscall
//	         mov rax, 15 ; syscall        ; never run: a sigreturn gadget
//
// The last two instructions are there for rtcr's kill-safe injection
// (internal/ptrace, live): a process without a sigreturn gadget in its
// code costs two unprotected injected calls per checkpoint.
//
// Being pid 1 of its namespace, it gets no signal it has no handler for,
// except SIGKILL from outside; `rtcr run` sends signals to the program.
var initText = []byte{
	0x48, 0x89, 0xe3, 0xb8, 0x39, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x85, 0xc0, 0x75, 0x23, 0x48, 0x8b,
	0x7b, 0x10, 0x48, 0x8d, 0x73, 0x18, 0x48, 0x8b, 0x0b, 0x48, 0x8d, 0x54, 0xcb, 0x10, 0xb8, 0x3b,
	0x00, 0x00, 0x00, 0x0f, 0x05, 0xbf, 0x7f, 0x00, 0x00, 0x00, 0xb8, 0xe7, 0x00, 0x00, 0x00, 0x0f,
	0x05, 0x49, 0x89, 0xc4, 0x48, 0x83, 0xec, 0x10, 0x48, 0xc7, 0xc7, 0xff, 0xff, 0xff, 0xff, 0x48,
	0x89, 0xe6, 0x31, 0xd2, 0x45, 0x31, 0xd2, 0xb8, 0x3d, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x48, 0x85,
	0xc0, 0x78, 0x24, 0x4c, 0x39, 0xe0, 0x75, 0xe0, 0x8b, 0x04, 0x24, 0x89, 0xc7, 0x83, 0xe7, 0x7f,
	0x74, 0x08, 0x81, 0xc7, 0x80, 0x00, 0x00, 0x00, 0xeb, 0x06, 0xc1, 0xe8, 0x08, 0x0f, 0xb6, 0xf8,
	0xb8, 0xe7, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xbf, 0x7f, 0x00, 0x00, 0x00, 0xb8, 0xe7, 0x00, 0x00,
	0x00, 0x0f, 0x05, 0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05,
}

// initBase is where the init executable is loaded.
const initBase = 0x10000

// InitDir is where the init executable is kept. It must survive reboots
// no more than images do: restore writes it again when it is missing.
var InitDir = "/var/lib/rtcr"

// initMtime is the fixed modification time of the init file: a restore
// checks that privately mapped files did not change, and a rewritten init
// must look the same.
var initMtime = time.Unix(1700000000, 0)

// InstallInit writes the init executable, named by its content's hash,
// unless it is there already, and returns its path.
func InstallInit() (string, error) {
	img := stub.Program(initBase, initText)
	sum := sha256.Sum256(img)
	path := filepath.Join(InitDir, fmt.Sprintf("init-%x", sum[:6]))
	if b, err := os.ReadFile(path); err == nil && bytes.Equal(b, img) {
		return path, nil
	}
	if err := os.MkdirAll(InitDir, 0o755); err != nil {
		return "", fmt.Errorf("install init: %w", err)
	}
	tmp, err := os.CreateTemp(InitDir, ".init-*")
	if err != nil {
		return "", fmt.Errorf("install init: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(img); err != nil {
		tmp.Close()
		return "", fmt.Errorf("install init: %w", err)
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return "", fmt.Errorf("install init: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("install init: %w", err)
	}
	if err := os.Chtimes(tmp.Name(), initMtime, initMtime); err != nil {
		return "", fmt.Errorf("install init: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("install init: %w", err)
	}
	return path, nil
}

// IsInit reports whether path names an init InstallInit writes.
func IsInit(path string) bool {
	return filepath.Dir(path) == InitDir && len(filepath.Base(path)) == len("init-")+12 &&
		filepath.Base(path)[:5] == "init-"
}
