// Command difftune finetunes diffusion models with weight-space adapters and samples
// from them. Each subcommand lives in its own file; this one maps errors to exit codes.
package main

import (
	"errors"
	"fmt"
	"os"
)

// usageError marks a mistake in the command line (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// exitCode maps an error to difftune's exit codes: 0 ok, 1 failure, 2 usage.
func exitCode(err error) int {
	var u usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &u):
		return 2
	}
	return 1
}

func main() {
	cmd := newRootCmd()
	err := cmd.Execute()
	if err != nil {
		fmt.Fprintln(os.Stderr, "difftune:", err)
	}
	os.Exit(exitCode(err))
}
