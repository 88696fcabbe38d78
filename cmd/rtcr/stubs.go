package main

func runInspect(args []string) error { return usagef("not yet") }
func runCheck(args []string) error   { return usagef("not yet") }
func runDemo(args []string) error    { return usagef("not yet") }
