package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/rtcr/rtcr"
	runner "github.com/rtcr/rtcr/internal/run"
	"github.com/rtcr/rtcr/internal/series"
)

// exitStatus makes rtcr exit with a given status (that of the program
// `rtcr run` ran), printing nothing.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func runRun(args []string) error {
	fs := newFlags("run", "[--dir DIR --every 30s [--keep 3] [--log-file PATH] [-v0…-v4]] -- CMD [ARGS…]")
	var o runner.Options
	var dir string
	fs.StringVar(&dir, "dir", "", "directory of the periodic checkpoints DIR/1, DIR/2 … and DIR/latest (with --every)")
	fs.StringVar(&dir, "D", "", "short for --dir")
	fs.DurationVar(&o.Every, "every", 0, "checkpoint the running tree into --dir this often (e.g. 30s)")
	keep := fs.Int("keep", 3, "periodic checkpoints kept, the newest (0: all)")
	var lf logFlags
	lf.add(fs)
	args = criuArgs(fs, args)
	if err := fs.Parse(args); err != nil {
		return parse(fs, args) // prints help, or turns the error into a usage error
	}
	o.Args = fs.Args()
	if len(o.Args) == 0 {
		return usagef("no program given (rtcr run [options] -- CMD [ARGS…])")
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if given["every"] && o.Every <= 0 {
		return usagef("--every must be > 0")
	}
	if (o.Every > 0) != (dir != "") {
		return usagef("--every and --dir go together")
	}
	if *keep < 0 {
		return usagef("--keep must be >= 0")
	}
	if given["keep"] && o.Every == 0 {
		return usagef("--keep goes with --every")
	}
	log, closeLog, err := lf.open()
	if err != nil {
		return err
	}
	defer closeLog()
	if o.Every > 0 {
		s, err := series.Open(dir, *keep)
		if err != nil {
			return err
		}
		o.Checkpoint = func(pid int) (string, error) {
			n, path := s.Next()
			st, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: pid, Dir: path, LeaveRunning: true, Logger: log})
			if err != nil {
				s.Skip(n)
				return "", lf.failed(log, err)
			}
			if err := s.Done(n); err != nil {
				return "", err
			}
			return fmt.Sprintf("%s (frozen %v)", path, st.Freeze.Round(10*time.Microsecond)), nil
		}
	}
	o.Log = func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "rtcr run: "+format+"\n", args...)
	}
	code, err := runner.Run(o)
	if err != nil {
		return err
	}
	return exitStatus(code)
}
