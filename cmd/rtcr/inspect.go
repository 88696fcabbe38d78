package main

import (
	"os"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/inspect"
)

func runInspect(args []string) error {
	fs := newFlags("inspect", "--dir DIR")
	var dir string
	fs.StringVar(&dir, "dir", "", "image directory")
	fs.StringVar(&dir, "D", "", "short for --dir")
	if err := parse(fs, args); err != nil {
		return err
	}
	if dir == "" {
		return usagef("--dir is required")
	}
	c, err := image.ReadManifest(dir)
	if err != nil {
		return err
	}
	// Verify the page checksums too: inspect is how people check an image.
	for i := range c.Processes {
		_, closePages, err := image.OpenPages(dir, &c.Processes[i])
		if err != nil {
			return err
		}
		_ = closePages()
	}
	return inspect.Write(os.Stdout, dir, c)
}
