package procfs

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
)

// maxLine bounds one line of a /proc text file. Paths are at most PATH_MAX
// (4096) bytes, escaped, plus a short prefix, so 1 MiB is generous.
const maxLine = 1 << 20

// scanLines calls fn for every line of r with its 1-based number. Errors
// returned by fn are wrapped as "parse NAME line N: err"; read errors as
// "parse NAME: err".
func scanLines(r io.Reader, name string, fn func(line string) error) error {
	buf := getLineBuffer()
	defer putLineBuffer(buf)
	sc := bufio.NewScanner(r)
	sc.Buffer(buf, maxLine)
	n := 0
	for sc.Scan() {
		n++
		if err := fn(sc.Text()); err != nil {
			return fmt.Errorf("parse %s line %d: %w", name, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("parse %s: %w", name, err)
	}
	return nil
}

// lineBuffers keeps the scanners' 64 KiB buffers between reads. Not a
// sync.Pool, which every garbage collection empties: a dump freezes its
// tree, reads a few files of every process, and fresh memory costs a page
// fault a page (16 a buffer; tens of microseconds each on our VMs).
var lineBuffers = make(chan []byte, 8)

// getLineBuffer returns an empty buffer for scanLines.
func getLineBuffer() []byte {
	select {
	case b := <-lineBuffers:
		return b
	default:
		return make([]byte, 0, 64<<10)
	}
}

// putLineBuffer keeps b for the next scanLines, if there is room.
func putLineBuffer(b []byte) {
	select {
	case lineBuffers <- b[:0]:
	default:
	}
}

// procPath returns "/proc/PID/NAME".
func procPath(pid int, name string) string {
	return "/proc/" + strconv.Itoa(pid) + "/" + name
}

// parseHex64 parses an unsigned hexadecimal number without prefix.
func parseHex64(s string) (uint64, error) {
	return strconv.ParseUint(s, 16, 64)
}
