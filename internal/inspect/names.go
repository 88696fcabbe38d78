package inspect

import (
	"fmt"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// kernelSigRTMin is the kernel's SIGRTMIN (glibc reserves 32 and 33 and
// calls 34 SIGRTMIN; the number column of the table disambiguates).
const kernelSigRTMin = 32

// kernelSigRTMax is the highest signal number on Linux.
const kernelSigRTMax = 64

// signalName names signal n: "SIGINT", "SIGRTMIN+3" (kernel numbering),
// or "sig N" for numbers outside the known range.
func signalName(n int) string {
	if name := unix.SignalName(syscall.Signal(n)); name != "" {
		return name
	}
	if n >= kernelSigRTMin && n <= kernelSigRTMax {
		return fmt.Sprintf("SIGRTMIN+%d", n-kernelSigRTMin)
	}
	return fmt.Sprintf("sig %d", n)
}

// oLargefile is the x86_64 O_LARGEFILE bit as fdinfo reports it
// (unix.O_LARGEFILE is 0 on 64-bit targets).
const oLargefile = 0o100000

// flagWords are the open flags decoded by name, beyond the access mode.
// O_SYNC comes before O_DSYNC because it includes O_DSYNC's bit.
var flagWords = []struct {
	bit  int
	name string
}{
	{unix.O_APPEND, "append"},
	{unix.O_NONBLOCK, "nonblock"},
	{unix.O_CLOEXEC, "cloexec"},
	{unix.O_SYNC, "sync"},
	{unix.O_DSYNC, "dsync"},
	{unix.O_ASYNC, "async"},
	{unix.O_DIRECT, "direct"},
	{unix.O_DIRECTORY, "directory"},
	{unix.O_NOFOLLOW, "nofollow"},
	{unix.O_NOATIME, "noatime"},
	{unix.O_PATH, "path"},
	{oLargefile, "largefile"},
}

// openFlags decodes open(2) flags as words, e.g. "wronly|append|cloexec";
// bits without a name are appended in hex.
func openFlags(flags int) string {
	var words []string
	switch flags & unix.O_ACCMODE {
	case unix.O_RDONLY:
		words = append(words, "rdonly")
	case unix.O_WRONLY:
		words = append(words, "wronly")
	case unix.O_RDWR:
		words = append(words, "rdwr")
	default:
		words = append(words, "accmode=3")
	}
	rest := flags &^ unix.O_ACCMODE
	for _, f := range flagWords {
		if rest&f.bit == f.bit {
			words = append(words, f.name)
			rest &^= f.bit
		}
	}
	if rest != 0 {
		words = append(words, fmt.Sprintf("%#x", rest))
	}
	return strings.Join(words, "|")
}
