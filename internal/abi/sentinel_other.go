//go:build !(linux && amd64)

package abi

// rtcr checkpoints Linux processes on x86_64 only: the syscall numbers,
// register layouts and generated machine code are amd64's. This file makes
// a build for any other target fail with the name below.
var _ = rtcr_supports_only_linux_amd64
