package main

import (
	"context"
	"errors"
	"time"

	"github.com/containerd/containerd/v2/core/runtime/v2/logging"
	"github.com/spf13/cobra"

	"github.com/clawguard/clawguard/runtime"
	"github.com/clawguard/clawguard/runtime/logfile"
)

// logWriterGrace is how long the log writer goes on reading after the shim
// asks it to stop (SIGTERM, when the task is deleted): the shim has closed
// its ends of the pipes by then, so what is left is only what they still
// hold. The shim kills a logger that takes longer than 12 s.
const logWriterGrace = 5 * time.Second

// logWriterCmd is what containerd's shim runs to keep a sandbox's output
// (runtime.Start names this binary in a binary:// log URI): the task's
// stdout on fd 3, stderr on fd 4, and fd 5 to say it is ready. It is not
// for people, so it is hidden from help.
func logWriterCmd() *cobra.Command {
	var maxSize int64
	var keep int
	cmd := &cobra.Command{
		Use:    runtime.LogWriterCommand + " PATH --max-size BYTES --keep N",
		Short:  "Write a sandbox's output to size-capped files (run by containerd's shim)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			path := args[0]
			if maxSize <= 0 || keep < 0 {
				return usage("%s: --max-size must be positive and --keep not negative", runtime.LogWriterCommand)
			}
			// Run reports an error on stderr (which the shim discards)
			// and exits; it does not return.
			logging.Run(func(ctx context.Context, cfg *logging.Config, ready func() error) error {
				return writeLogs(ctx, cfg, ready, path, maxSize, keep)
			})
			return nil
		},
	}
	cmd.Flags().Int64Var(&maxSize, "max-size", 0, "bytes per file")
	cmd.Flags().IntVar(&keep, "keep", 0, "older files kept")
	return cmd
}

// writeLogs opens the log, tells the shim it may start the task, and copies
// both streams into the log until both end. A failed ready means the shim
// stopped waiting; copying goes on regardless, since a task it does start
// must find its output read, or a write would stall or kill the agent.
func writeLogs(ctx context.Context, cfg *logging.Config, ready func() error, path string, maxSize int64, keep int) error {
	w, err := logfile.Open(path, maxSize, keep)
	if err != nil {
		return err
	}
	defer w.Close()
	readyErr := ready()
	return errors.Join(readyErr, logfile.Copy(ctx, w, logWriterGrace, cfg.Stdout, cfg.Stderr))
}
