// Package abi holds the kernel constants and structures rtcr needs that
// golang.org/x/sys/unix does not provide (or provides only for other
// architectures). Names follow the kernel's; each group names its header.
package abi

// Syscall restart codes a thread stopped inside a system call shows in rax
// (include/linux/errno.h). They never reach user space.
const (
	ERESTARTSYS           = 512
	ERESTARTNOINTR        = 513
	ERESTARTNOHAND        = 514
	ERESTART_RESTARTBLOCK = 516
)

// ptrace requests and options (include/uapi/linux/ptrace.h).
const (
	PTRACE_GETREGSET              = 0x4204
	PTRACE_SETREGSET              = 0x4205
	PTRACE_SEIZE                  = 0x4206
	PTRACE_GETSIGMASK             = 0x420a
	PTRACE_SETSIGMASK             = 0x420b
	PTRACE_GET_RSEQ_CONFIGURATION = 0x420f
	PTRACE_GET_SECCOMP_METADATA   = 0x420d
	PTRACE_EVENT_STOP             = 128
	PTRACE_ARCH_PRCTL             = 30 // x86: arch_prctl on a tracee
)

// SeccompMetadata is struct seccomp_metadata (PTRACE_GET_SECCOMP_METADATA).
type SeccompMetadata struct {
	FilterOff uint64 // in: the filter's index, 0 the newest
	Flags     uint64 // out: SECCOMP_FILTER_FLAG_LOG
}

// Shadow stack arch_prctl codes and features (arch/x86/include/uapi/asm/prctl.h).
const (
	ARCH_SHSTK_STATUS = 0x5005
	ARCH_SHSTK_SHSTK  = 1 << 0
)

// PtraceRseqConfiguration is struct ptrace_rseq_configuration.
type PtraceRseqConfiguration struct {
	RseqAbiPointer uint64
	RseqAbiSize    uint32
	Signature      uint32
	Flags          uint32
	Pad            uint32
}

// CloneArgs is struct clone_args (include/uapi/linux/sched.h), version 2.
type CloneArgs struct {
	Flags      uint64
	Pidfd      uint64
	ChildTid   uint64
	ParentTid  uint64
	ExitSignal uint64
	Stack      uint64
	StackSize  uint64
	TLS        uint64
	SetTid     uint64
	SetTidSize uint64
	Cgroup     uint64
}

// PrctlMMMap is struct prctl_mm_map (include/uapi/linux/prctl.h).
type PrctlMMMap struct {
	StartCode  uint64
	EndCode    uint64
	StartData  uint64
	EndData    uint64
	StartBrk   uint64
	Brk        uint64
	StartStack uint64
	ArgStart   uint64
	ArgEnd     uint64
	EnvStart   uint64
	EnvEnd     uint64
	Auxv       uint64
	AuxvSize   uint32
	ExeFd      uint32
}

// prctl options (include/uapi/linux/prctl.h).
const (
	PR_SET_MM          = 35
	PR_SET_MM_MAP      = 14
	PR_SET_MM_MAP_SIZE = 15
	PR_GET_TID_ADDRESS = 40
	ARCH_MAP_VDSO_64   = 0x2003 // arch/x86/include/uapi/asm/prctl.h
	SYS_RSEQ           = 334
	SYS_CLONE3         = 435
	SigsetSize         = 8
	MaxSignal          = 64
)

// KernelSigaction is the x86_64 kernel's struct sigaction.
type KernelSigaction struct {
	Handler  uint64
	Flags    uint64
	Restorer uint64
	Mask     uint64
}

// StackT is stack_t (include/uapi/asm-generic/signal.h).
type StackT struct {
	Sp    uint64
	Flags int32
	_     int32
	Size  uint64
}

// stack_t flags (include/uapi/linux/signal.h).
const (
	SS_ONSTACK = 1
	SS_DISABLE = 2
)

// EpollEvent is struct epoll_event, packed on x86_64 (12 bytes: the
// 64-bit data at offset 4, so it is split in two halves here).
type EpollEvent struct {
	Events         uint32
	DataLo, DataHi uint32
}
