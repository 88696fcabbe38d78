package procfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Status holds the fields of /proc/PID/status that rtcr uses.
type Status struct {
	// Name is the command name as printed by the kernel (with "\n" and "\\"
	// escaped); spaces, including trailing ones, are kept.
	Name string
	// Umask is the file mode creation mask (octal in the file).
	Umask uint32
	// State is the first letter of the State line ('R', 'S', ...).
	State byte
	// Tgid, Pid and PPid are the thread group id, thread id and parent pid.
	Tgid, Pid, PPid int
	// TracerPid is the pid of the process tracing this one, 0 if none.
	TracerPid int
	// NSpid is the thread's id in each pid namespace it is in, from the
	// namespace of the /proc mount down to its own.
	NSpid []int
	// Threads is the number of threads in the thread group.
	Threads int
	// SigBlk, SigIgn, SigCgt are the blocked, ignored and caught signal
	// masks; SigPnd and ShdPnd the thread and process pending signals.
	SigBlk, SigIgn, SigCgt, SigPnd, ShdPnd uint64
	// NoNewPrivs is the no_new_privs bit.
	NoNewPrivs bool
	// Seccomp is the thread's seccomp mode: 0 none, 1 strict, 2 filter.
	Seccomp int
	// Uid and Gid are the real, effective, saved and filesystem ids.
	Uid, Gid [4]int
	// Groups are the supplementary group ids.
	Groups []int
	// CapInh, CapPrm, CapEff, CapBnd and CapAmb are the capability sets.
	CapInh, CapPrm, CapEff, CapBnd, CapAmb uint64
	// X86ThreadFeatures are the words of the x86_Thread_features line
	// ("shstk", "wrss"); nil when there is none.
	X86ThreadFeatures []string
	// SpecStoreBypass and SpecIndirectBranch are the text of the
	// Speculation_Store_Bypass and SpeculationIndirectBranch lines
	// ("thread vulnerable", "conditional enabled" …; "" without them).
	SpecStoreBypass, SpecIndirectBranch string
	// UntagMask is the untag_mask line: the address bits kept when a
	// pointer is untagged (all ones without linear address masking); ""
	// without the line.
	UntagMask string
}

// ParseStatus parses the contents of a /proc/PID/status file. Unknown keys
// are ignored; a Pid line is required.
func ParseStatus(r io.Reader) (*Status, error) {
	return parseStatus(r, "status")
}

// ReadStatus reads and parses /proc/PID/status.
func ReadStatus(pid int) (*Status, error) {
	return readStatus(procPath(pid, "status"))
}

// ReadTaskStatus reads and parses /proc/PID/task/TID/status.
func ReadTaskStatus(pid, tid int) (*Status, error) {
	return readStatus(procPath(pid, "task/"+strconv.Itoa(tid)+"/status"))
}

func readStatus(path string) (*Status, error) {
	r, err := readFileReader(path)
	if err != nil {
		return nil, err
	}
	return parseStatus(r, path)
}

func parseStatus(r io.Reader, name string) (*Status, error) {
	st := &Status{}
	sawPid := false
	err := scanLines(r, name, func(line string) error {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			return fmt.Errorf("no colon in %q", line)
		}
		if key == "Name" {
			st.Name = strings.TrimPrefix(val, "\t")
			return nil
		}
		val = strings.TrimSpace(val)
		if key == "Pid" {
			sawPid = true
		}
		if err := st.set(key, val); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !sawPid {
		return nil, fmt.Errorf("parse %s: no Pid line", name)
	}
	return st, nil
}

// set stores the value of one status key; unknown keys are ignored.
func (st *Status) set(key, val string) error {
	var err error
	switch key {
	case "Umask":
		var v uint64
		v, err = strconv.ParseUint(val, 8, 32)
		st.Umask = uint32(v)
	case "State":
		if val == "" {
			return errors.New("empty state")
		}
		st.State = val[0]
	case "Tgid":
		st.Tgid, err = strconv.Atoi(val)
	case "Pid":
		st.Pid, err = strconv.Atoi(val)
	case "PPid":
		st.PPid, err = strconv.Atoi(val)
	case "TracerPid":
		st.TracerPid, err = strconv.Atoi(val)
	case "NSpid":
		st.NSpid, err = parseInts(val)
	case "Threads":
		st.Threads, err = strconv.Atoi(val)
	case "SigPnd":
		st.SigPnd, err = parseHex64(val)
	case "ShdPnd":
		st.ShdPnd, err = parseHex64(val)
	case "SigBlk":
		st.SigBlk, err = parseHex64(val)
	case "SigIgn":
		st.SigIgn, err = parseHex64(val)
	case "SigCgt":
		st.SigCgt, err = parseHex64(val)
	case "CapInh":
		st.CapInh, err = parseHex64(val)
	case "CapPrm":
		st.CapPrm, err = parseHex64(val)
	case "CapEff":
		st.CapEff, err = parseHex64(val)
	case "CapBnd":
		st.CapBnd, err = parseHex64(val)
	case "CapAmb":
		st.CapAmb, err = parseHex64(val)
	case "x86_Thread_features":
		st.X86ThreadFeatures = strings.Fields(val)
	case "NoNewPrivs":
		switch val {
		case "0", "1":
			st.NoNewPrivs = val == "1"
		default:
			err = fmt.Errorf("bad value %q", val)
		}
	case "untag_mask":
		st.UntagMask = val
	case "Speculation_Store_Bypass":
		st.SpecStoreBypass = val
	case "SpeculationIndirectBranch":
		st.SpecIndirectBranch = val
	case "Seccomp":
		st.Seccomp, err = strconv.Atoi(val)
	case "Uid":
		err = parseIDs(&st.Uid, val)
	case "Gid":
		err = parseIDs(&st.Gid, val)
	case "Groups":
		st.Groups, err = parseInts(val)
	}
	return err
}

// parseIDs parses exactly four whitespace-separated ids.
func parseIDs(dst *[4]int, val string) error {
	ids, err := parseInts(val)
	if err != nil {
		return err
	}
	if len(ids) != 4 {
		return fmt.Errorf("%d ids, want 4", len(ids))
	}
	copy(dst[:], ids)
	return nil
}

// parseInts parses whitespace-separated decimal numbers.
func parseInts(val string) ([]int, error) {
	f := strings.Fields(val)
	out := make([]int, 0, len(f))
	for _, s := range f {
		v, err := strconv.Atoi(s)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// ReadTaskSeccomp returns the Seccomp field of /proc/PID/task/TID/status
// (0 when the kernel has none), as ReadTaskStatus would, without parsing
// the rest of the file: a dump reads it for every thread.
func ReadTaskSeccomp(pid, tid int) (int, error) {
	path := procPath(pid, "task/"+strconv.Itoa(tid)+"/status")
	b, err := readFile(path)
	if err != nil {
		return 0, err
	}
	return parseSeccompLine(b, path)
}

// parseSeccompLine finds the Seccomp line of a status file's content b.
func parseSeccompLine(b []byte, name string) (int, error) {
	const key = "\nSeccomp:"
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0, nil
	}
	line := b[i+len(key):]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(line)))
	if err != nil {
		return 0, fmt.Errorf("parse %s: Seccomp: %w", name, err)
	}
	return v, nil
}
