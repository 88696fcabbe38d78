package rtcr

// PostCopyDumpForTest marks opts as a post-copy migration's dump (private
// anonymous memory recorded, not copied), as MigrateLazy does.
func PostCopyDumpForTest(opts DumpOptions) DumpOptions {
	opts.postCopy = &postCopyDump{}
	return opts
}
