package procfs

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"sync"
)

// maxLine bounds one line of a /proc text file. Paths are at most PATH_MAX
// (4096) bytes, escaped, plus a short prefix, so 1 MiB is generous.
const maxLine = 1 << 20

// lineBufs holds the 64 KiB read buffers of scanLines: one made (and
// cleared) for every file read took a tenth of a 32-process dump's CPU
// time, most of it in the status files read for every process.
var lineBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// scanLines calls fn for every line of r with its 1-based number. Errors
// returned by fn are wrapped as "parse NAME line N: err"; read errors as
// "parse NAME: err".
func scanLines(r io.Reader, name string, fn func(line string) error) error {
	buf := lineBufs.Get().(*[]byte)
	defer lineBufs.Put(buf)
	sc := bufio.NewScanner(r)
	sc.Buffer((*buf)[:0], maxLine)
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

// procPath returns "/proc/PID/NAME".
func procPath(pid int, name string) string {
	return "/proc/" + strconv.Itoa(pid) + "/" + name
}

// parseHex64 parses an unsigned hexadecimal number without prefix.
func parseHex64(s string) (uint64, error) {
	return strconv.ParseUint(s, 16, 64)
}
