package procfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Mapping is one line of /proc/PID/maps (plus VmFlags from smaps when read
// with ReadSmaps).
type Mapping struct {
	// Start and End are the address range [Start, End).
	Start, End uint64
	// Read, Write, Exec and Shared come from the "rwxp"/"rwxs" column.
	Read, Write, Exec, Shared bool
	// Offset is the file offset of Start.
	Offset uint64
	// DevMajor and DevMinor identify the device of the mapped file.
	DevMajor, DevMinor uint32
	// Inode is the inode of the mapped file, 0 for anonymous memory.
	Inode uint64
	// Path is the pathname column exactly as the kernel prints it: "" for
	// anonymous memory, "[heap]", "[stack]", "[vdso]", "[anon:NAME]" ...
	// A " (deleted)" suffix is kept, spaces inside are kept, and the kernel's
	// escaping of "\n" as "\012" is not undone.
	Path string
	// VmFlags are the two-letter flags of the smaps "VmFlags:" line ("rd",
	// "gd", "dd", "io", "pf", "wf" ...); nil from ReadMaps.
	VmFlags []string
}

// Size returns End-Start in bytes.
func (m Mapping) Size() uint64 { return m.End - m.Start }

// HasFlag reports whether f is one of m.VmFlags.
func (m Mapping) HasFlag(f string) bool {
	for _, v := range m.VmFlags {
		if v == f {
			return true
		}
	}
	return false
}

// ParseMaps parses the contents of a /proc/PID/maps file.
func ParseMaps(r io.Reader) ([]Mapping, error) {
	return parseMaps(r, "maps")
}

// ReadMaps reads and parses /proc/PID/maps.
func ReadMaps(pid int) ([]Mapping, error) {
	return readMappings(pid, "maps", parseMaps)
}

// ParseSmaps parses the contents of a /proc/PID/smaps file. It returns the
// same mappings as ParseMaps, with VmFlags filled in; the other smaps keys
// (Size, Rss, Pss ...) are ignored.
func ParseSmaps(r io.Reader) ([]Mapping, error) {
	return parseSmaps(r, "smaps")
}

// ReadSmaps reads and parses /proc/PID/smaps.
func ReadSmaps(pid int) ([]Mapping, error) {
	return readMappings(pid, "smaps", parseSmaps)
}

func readMappings(pid int, file string, parse func(io.Reader, string) ([]Mapping, error)) ([]Mapping, error) {
	path := procPath(pid, file)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parse(f, path)
}

func parseMaps(r io.Reader, name string) ([]Mapping, error) {
	var out []Mapping
	err := scanLines(r, name, func(line string) error {
		m, err := parseMapsLine(line)
		if err != nil {
			return err
		}
		out = append(out, m)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func parseSmaps(r io.Reader, name string) ([]Mapping, error) {
	var out []Mapping
	err := scanLines(r, name, func(line string) error {
		tok, _, _ := strings.Cut(line, " ")
		if !strings.HasSuffix(tok, ":") {
			m, err := parseMapsLine(line)
			if err != nil {
				return err
			}
			out = append(out, m)
			return nil
		}
		if len(out) == 0 {
			return fmt.Errorf("key %q before the first mapping", tok)
		}
		if tok == "VmFlags:" {
			f := strings.Fields(line[len(tok):])
			if f == nil {
				f = []string{} // non-nil: the line was there
			}
			out[len(out)-1].VmFlags = f
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// nextField splits s at its first space.
func nextField(s string) (field, rest string) {
	field, rest, _ = strings.Cut(s, " ")
	return field, rest
}

// parseMapsLine parses
// "START-END PERMS OFFSET MAJ:MIN INODE[ padding PATH]".
func parseMapsLine(line string) (Mapping, error) {
	var m Mapping
	rng, rest := nextField(line)
	perms, rest := nextField(rest)
	off, rest := nextField(rest)
	dev, rest := nextField(rest)
	ino, rest := nextField(rest)
	if ino == "" {
		return m, fmt.Errorf("truncated line %q", line)
	}
	s, e, ok := strings.Cut(rng, "-")
	if !ok {
		return m, fmt.Errorf("bad address range %q", rng)
	}
	var err error
	if m.Start, err = parseHex64(s); err != nil {
		return m, fmt.Errorf("bad start address: %w", err)
	}
	if m.End, err = parseHex64(e); err != nil {
		return m, fmt.Errorf("bad end address: %w", err)
	}
	if m.End < m.Start {
		return m, fmt.Errorf("bad address range %q: end before start", rng)
	}
	if err := parsePerms(&m, perms); err != nil {
		return m, err
	}
	if m.Offset, err = parseHex64(off); err != nil {
		return m, fmt.Errorf("bad offset: %w", err)
	}
	maj, min, ok := strings.Cut(dev, ":")
	if !ok {
		return m, fmt.Errorf("bad device %q", dev)
	}
	v, err := strconv.ParseUint(maj, 16, 32)
	if err != nil {
		return m, fmt.Errorf("bad device major: %w", err)
	}
	m.DevMajor = uint32(v)
	if v, err = strconv.ParseUint(min, 16, 32); err != nil {
		return m, fmt.Errorf("bad device minor: %w", err)
	}
	m.DevMinor = uint32(v)
	if m.Inode, err = strconv.ParseUint(ino, 10, 64); err != nil {
		return m, fmt.Errorf("bad inode: %w", err)
	}
	m.Path = strings.TrimLeft(rest, " ")
	return m, nil
}

var errPerms = errors.New("bad permissions")

// parsePerms parses "rwxp"/"rwxs", each of the first three possibly '-'.
func parsePerms(m *Mapping, p string) error {
	if len(p) != 4 {
		return fmt.Errorf("%w %q", errPerms, p)
	}
	dst := [3]*bool{&m.Read, &m.Write, &m.Exec}
	for i, want := range "rwx" {
		switch rune(p[i]) {
		case want:
			*dst[i] = true
		case '-':
		default:
			return fmt.Errorf("%w %q", errPerms, p)
		}
	}
	switch p[3] {
	case 's':
		m.Shared = true
	case 'p':
	default:
		return fmt.Errorf("%w %q", errPerms, p)
	}
	return nil
}
