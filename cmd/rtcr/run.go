package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/rtcr/rtcr"
	runner "github.com/rtcr/rtcr/internal/run"
)

// exitStatus makes rtcr exit with a given status (that of the program
// `rtcr run` ran), printing nothing.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func runRun(args []string) error {
	fs := newFlags("run", "[--dir DIR --every 30s [--log-file PATH] [-v0…-v4]] -- CMD [ARGS…]")
	var o runner.Options
	fs.StringVar(&o.Dir, "dir", "", "image directory for periodic checkpoints (with --every)")
	fs.StringVar(&o.Dir, "D", "", "short for --dir")
	fs.DurationVar(&o.Every, "every", 0, "checkpoint the running tree into --dir this often (e.g. 30s)")
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
	if (o.Every > 0) != (o.Dir != "") {
		return usagef("--every and --dir go together")
	}
	log, closeLog, err := lf.open()
	if err != nil {
		return err
	}
	defer closeLog()
	o.Checkpoint = func(pid int, dir string) error {
		_, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: pid, Dir: dir, LeaveRunning: true, Logger: log})
		return lf.failed(log, err)
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
