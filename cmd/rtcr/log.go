package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// logFlags are the logging options of dump, restore and run, named after
// CRIU's: --log-file/-o PATH and -v0 … -v4.
type logFlags struct {
	file  string
	level verbosity
}

// verbosity is the -v flag: CRIU's levels 0 to 4 (higher counts as 4);
// a bare -v is 3 (steps).
type verbosity struct {
	n   int
	set bool
}

func (v *verbosity) String() string {
	if v == nil || !v.set {
		return ""
	}
	return strconv.Itoa(v.n)
}

func (v *verbosity) Set(s string) error {
	if s == "true" { // a bare -v
		s = "3"
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return fmt.Errorf("log level %q: want 0 to 4 (-v0 … -v4)", s)
	}
	v.n, v.set = min(n, 4), true // CRIU too takes more v's as 4
	return nil
}

// IsBoolFlag lets -v stand alone.
func (v *verbosity) IsBoolFlag() bool { return true }

// slogLevel maps CRIU's levels to slog's: 0 and 1 errors, 2 warnings,
// 3 steps (Info), 4 debug.
func (v *verbosity) slogLevel() slog.Level {
	switch {
	case !v.set || v.n == 3:
		return slog.LevelInfo
	case v.n <= 1:
		return slog.LevelError
	case v.n == 2:
		return slog.LevelWarn
	default:
		return slog.LevelDebug
	}
}

// add defines the logging flags on fs.
func (l *logFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&l.file, "log-file", "", "append a log of every step to `PATH` (created 0600); a failure's message names it")
	fs.StringVar(&l.file, "o", "", "short for --log-file")
	fs.Var(&l.level, "v", "log level, CRIU style: -v0 or -v1 errors, -v2 warnings, -v3 or -v steps with durations (the default with --log-file), -v4 debug; without --log-file the log goes to stderr")
}

// criuLevel matches CRIU's spellings of the level: -v4, -vvv.
var criuLevel = regexp.MustCompile(`^-(v[0-9]+|vv+)$`)

// criuArgs rewrites CRIU's -v4 and -vvvv (which package flag would take
// for flags named "v4" and "vvvv") into -v=4, in the flags of args only:
// it stops at "--" or at the first argument that is not a flag.
func criuArgs(fs *flag.FlagSet, args []string) []string {
	out := append([]string(nil), args...)
	for i := 0; i < len(out); i++ {
		a := out[i]
		if a == "--" || !strings.HasPrefix(a, "-") || a == "-" {
			break
		}
		if m := criuLevel.FindStringSubmatch(a); m != nil {
			if n, err := strconv.Atoi(m[1][1:]); err == nil {
				out[i] = fmt.Sprintf("-v=%d", n)
			} else {
				out[i] = fmt.Sprintf("-v=%d", len(m[1]))
			}
			continue
		}
		// A flag with a separate value skips that value.
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil {
			if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
				i++
			}
		}
	}
	return out
}

// open returns the logger the flags ask for: nil without --log-file and
// -v, a handler on stderr with -v only. Its first line names rtcr's
// version, arguments, the kernel and rtcr's pid. close closes the file.
func (l *logFlags) open() (log *slog.Logger, close func(), err error) {
	close = func() {}
	var w io.Writer = os.Stderr
	switch {
	case l.file != "":
		if l.file, err = filepath.Abs(l.file); err != nil {
			return nil, close, fmt.Errorf("log file: %w", err)
		}
		f, err := os.OpenFile(l.file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, close, fmt.Errorf("log file: %w", err)
		}
		w, close = f, func() { _ = f.Close() }
	case !l.level.set:
		return nil, close, nil
	}
	log = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l.level.slogLevel()}))
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	log.Info("rtcr", "version", version(), "args", os.Args[1:], "kernel", unix.ByteSliceToString(uts.Release[:]), "rtcr_pid", os.Getpid())
	return log, close, nil
}

// failed logs err and, with a log file, names the file in the error. A
// nil err stays nil.
func (l *logFlags) failed(log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if log != nil {
		log.Error("failed", "err", err)
	}
	if l.file == "" {
		return err
	}
	return fmt.Errorf("%w (log: %s)", err, l.file)
}

// version is the module version and VCS revision rtcr was built from.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision":
			v += " " + s.Value
		case s.Key == "vcs.modified" && s.Value == "true":
			v += " (modified)"
		}
	}
	return v
}
