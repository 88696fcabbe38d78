package main

func runCheck(args []string) error { return usagef("not yet") }
