package main

import (
	"errors"
	"os"

	"github.com/rtcr/rtcr/internal/kcheck"
)

func runCheck(args []string) error {
	fs := newFlags("check", "")
	if err := parse(fs, args); err != nil {
		return err
	}
	rs := kcheck.Run()
	kcheck.Write(os.Stdout, rs)
	if !kcheck.AllRequiredOK(rs) {
		return errors.New("a required feature is missing or does not work (see the table above)")
	}
	return nil
}
