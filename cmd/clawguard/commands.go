package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/clawguard/clawguard/enforce"
	"github.com/clawguard/clawguard/profiles"
	"github.com/clawguard/clawguard/runtime"
)

func stopCmd(g *globals) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "stop NAME [--timeout 10s]",
		Short: "Stop a sandbox and remove everything it created",
		Long: `Stop a sandbox: SIGTERM to its processes, SIGKILL to all of them after the
timeout (default: the profile's stop_timeout), then remove its task, container,
snapshot, secrets and network namespace. Also cleans up what a crashed
'clawguard run' left behind. The log stays (see 'clawguard logs').`,
		Args: cobra.ExactArgs(1),
		RunE: g.withSupervisor(func(ctx context.Context, sup *enforce.Supervisor, cmd *cobra.Command, args []string) error {
			start := time.Now()
			if err := sup.Stop(ctx, args[0], timeout); err != nil {
				if errors.Is(err, runtime.ErrNotFound) {
					return fmt.Errorf("no sandbox named %q (see `clawguard status`)", args[0])
				}
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "clawguard: sandbox %s stopped and removed (%s)\n", args[0], time.Since(start).Round(time.Millisecond))
			return nil
		}),
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "time between SIGTERM and SIGKILL (default: the profile's stop_timeout)")
	return cmd
}

func statusCmd(g *globals) *cobra.Command {
	var asJSON, rules bool
	cmd := &cobra.Command{
		Use:   "status [NAME] [--json]",
		Short: "Show sandboxes: state, image, uptime, limits",
		Long: `Show every sandbox (or one): its state as containerd reports it, the image,
pid, uptime and limits. Leftovers are shown, not hidden: state with no
container ("missing") and containers labelled as ours that this state
directory does not know. --json prints the same data for machines.`,
		Args: cobra.MaximumNArgs(1),
		RunE: g.withSupervisor(func(ctx context.Context, sup *enforce.Supervisor, cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			list, err := sup.Status(ctx, name, time.Now())
			if err != nil {
				if errors.Is(err, runtime.ErrNotFound) {
					return fmt.Errorf("no sandbox named %q", name)
				}
				return err
			}
			if asJSON {
				if list == nil {
					list = []enforce.Status{}
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(list)
			}
			printStatus(cmd.OutOrStdout(), list)
			if rules {
				fmt.Fprintln(cmd.OutOrStdout(), "\nrules: no egress rules exist yet; each sandbox has a network namespace with loopback only, so nothing outside it is reachable")
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&rules, "rules", false, "also show the rules that enforce egress")
	return cmd
}

func printStatus(w io.Writer, list []enforce.Status) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no sandboxes")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tPID\tUPTIME\tIMAGE\tMEMORY\tCPUS\tPIDS\tNETWORK")
	for _, s := range list {
		uptime := "-"
		if s.UptimeSeconds > 0 {
			uptime = (time.Duration(s.UptimeSeconds) * time.Second).String()
		}
		pid := "-"
		if s.Pid != 0 {
			pid = fmt.Sprint(s.Pid)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%g\t%d\t%s\n", s.Name, s.State, pid, uptime, s.Image,
			profiles.FormatSize(s.MemoryBytes), s.CPUs, s.Pids, s.Network)
	}
	tw.Flush()
	for _, s := range list {
		if s.Problem != "" {
			fmt.Fprintf(w, "! %s: %s\n", s.Name, s.Problem)
		}
	}
}

func execCmd(g *globals) *cobra.Command {
	var interactive bool
	cmd := &cobra.Command{
		Use:   "exec NAME [-i] -- CMD [ARG...]",
		Short: "Run a command inside a running sandbox, under all of its controls",
		Long: `Run a command inside a running sandbox as the sandbox's user, with its
capabilities (none), seccomp profile, namespaces and limits. The exit status
is the command's. -i passes standard input through.`,
		Example: `  clawguard exec openclaw -- id
  clawguard exec openclaw -- sh -c 'ls -l /workspace'`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return usage("write the command after --, e.g. clawguard exec %s -- id", args[0])
			}
			return g.withSupervisor(func(ctx context.Context, sup *enforce.Supervisor, cmd *cobra.Command, args []string) error {
				return execIn(ctx, sup, cmd, args, interactive)
			})(cmd, args)
		},
	}
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "pass standard input to the command")
	return cmd
}

func execIn(ctx context.Context, sup *enforce.Supervisor, cmd *cobra.Command, args []string, interactive bool) error {
	var stdin io.Reader
	if interactive {
		stdin = cmd.InOrStdin()
	}
	code, err := sup.Exec(ctx, args[0], args[1:], stdin, cmd.OutOrStdout(), cmd.ErrOrStderr())
	if err != nil {
		if errors.Is(err, runtime.ErrNotFound) {
			return fmt.Errorf("no running sandbox named %q (see `clawguard status`)", args[0])
		}
		return err
	}
	if code != 0 {
		return exitCodeError{code}
	}
	return nil
}

func logsCmd(g *globals) *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs NAME [--follow]",
		Short: "Print a sandbox's output (kept after it stops)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			path := enforce.LogPathIn(g.stateDir, args[0])
			if _, err := os.Stat(path); err != nil {
				return fmt.Errorf("no log for sandbox %q at %s", args[0], path)
			}
			stop := make(chan struct{})
			if follow {
				// Stop following when the sandbox ends, if it is running now.
				if sup, closeFn, err := g.supervisor(ctx, nil); err == nil {
					defer closeFn()
					if exitC, err := sup.Wait(ctx, args[0]); err == nil {
						go func() {
							select {
							case <-exitC:
							case <-ctx.Done():
							}
							close(stop)
						}()
					}
				}
			}
			return enforce.FollowLog(ctx, path, cmd.OutOrStdout(), follow, stop)
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output until the sandbox exits or Ctrl-C")
	return cmd
}

func profileCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "profile",
		Short: "Validate profiles and show the built-in ones",
	}
	var asJSON bool
	validate := &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a profile completely without creating anything",
		Long: `Check a profile the way 'run' does before it creates anything: strict YAML
(unknown keys and wrong types are errors), every value in range, mount and
secret sources against the host policy (after resolving symlinks), the
seccomp file if one is named. Every problem is listed with its field and a fix.
Exit status 0 when valid, 2 when not.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := profiles.Load(args[0])
			if err == nil {
				err = profiles.Validate(p, enforce.Policy(g.stateDir))
			}
			var pe *profiles.Error
			if asJSON {
				res := struct {
					Valid  bool                  `json:"valid"`
					File   string                `json:"file"`
					Errors []profiles.FieldError `json:"errors"`
				}{Valid: err == nil, File: args[0], Errors: []profiles.FieldError{}}
				if errors.As(err, &pe) {
					res.Errors = pe.Fields
				} else if err != nil {
					return err
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(res); err != nil {
					return err
				}
				if !res.Valid {
					return exitCodeError{exitUsage}
				}
				return nil
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid (sandbox %s, image %s)\n", args[0], p.Name, p.Image)
			return nil
		},
	}
	validate.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	show := &cobra.Command{
		Use:   "show [NAME]",
		Short: "Print a built-in profile (default: openclaw), to copy and edit",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := profiles.DefaultName
			if len(args) == 1 {
				name = args[0]
			}
			b, err := profiles.BuiltinYAML(name)
			if err != nil {
				return usage("no built-in profile %q (built-in: %v)", name, profiles.Builtins())
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	cmd.AddCommand(validate, show)
	return cmd
}

// withSupervisor gives a command a supervisor connected to containerd and a
// context that Ctrl-C cancels, and closes the connection afterwards.
func (g *globals) withSupervisor(fn func(ctx context.Context, sup *enforce.Supervisor, cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer cancel()
		sup, closeFn, err := g.supervisor(ctx, nil)
		if err != nil {
			return err
		}
		defer closeFn()
		return fn(ctx, sup, cmd, args)
	}
}
