//go:build !linux

package main

// raiseOpenFiles leaves the open-files limit as it is outside Linux (Go's
// runtime raises it on other Unix systems at start); the limit is not
// reported.
func raiseOpenFiles() openFilesLimit { return openFilesLimit{} }
