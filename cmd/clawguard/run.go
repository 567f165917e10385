package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/clawguard/clawguard/enforce"
	"github.com/clawguard/clawguard/enforce/api"
	"github.com/clawguard/clawguard/profiles"
	"github.com/clawguard/clawguard/runtime"
	"github.com/clawguard/clawguard/verify"
)

func runCmd(g *globals) *cobra.Command {
	var profilePath, name, image string
	var detach, verifyAfter bool
	var vf verifyFlags
	cmd := &cobra.Command{
		Use:   "run [--profile FILE] [--name NAME] [--image REF]",
		Short: "Start a sandbox in the foreground; Ctrl-C stops it and removes everything it created",
		Long: `Start a sandbox from a profile and supervise it in the foreground.

With no --profile the built-in "openclaw" profile is used; its relative paths
(./workspace, ./config, ./secrets) are taken from the current directory, so run
it from the agent's project folder. The whole profile is validated before
anything is created; if a later step fails, everything created so far is
removed again. The agent's output is shown here and kept in the state
directory (see 'clawguard logs'). Ctrl-C or SIGTERM stops the sandbox
(SIGTERM, then SIGKILL after stop_timeout) and removes its container,
snapshot, network namespace and secrets.

With --detach the daemon starts and supervises the sandbox (see 'clawguard
daemon') and run returns once the sandbox runs.

With --verify, 'clawguard verify' runs as soon as the sandbox is up; if any
check fails, the sandbox is stopped and removed and run exits 1.

Exit status: 0 when the sandbox was stopped or exited 0; 1 when it failed or
exited non-zero; 2 for a bad command line or an invalid profile.`,
		Example: `  clawguard run                                  # built-in openclaw profile
  clawguard run --profile agent.yaml --name agent-2
  clawguard run --image docker.io/library/busybox:latest --name try`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := loadProfile(profilePath)
			if err != nil {
				return err
			}
			if err := p.Override(name, image); err != nil {
				return err
			}
			var after *verifyFlags
			if verifyAfter {
				after = &vf
			}
			if detach {
				return runDetached(cmd, g, profilePath, name, image, after)
			}
			return runForeground(cmd, g, p, after)
		},
	}
	f := cmd.Flags()
	f.StringVar(&profilePath, "profile", "", "profile file (default: the built-in openclaw profile)")
	f.StringVar(&name, "name", "", "sandbox name (default: the profile's name)")
	f.StringVar(&image, "image", "", "image reference to run instead of the profile's, with the image's own command")
	f.BoolVar(&detach, "detach", false, "start the sandbox in the daemon and return at once")
	f.BoolVar(&verifyAfter, "verify", false, "verify the sandbox once it runs; stop it if a check fails")
	vf.register(cmd)
	return cmd
}

func loadProfile(path string) (*profiles.Profile, error) {
	if path != "" {
		return profiles.Load(path)
	}
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	return profiles.LoadBuiltin(profiles.DefaultName, wd)
}

func runForeground(cmd *cobra.Command, g *globals, p *profiles.Profile, vf *verifyFlags) error {
	out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
	ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	step := func(s string, d time.Duration, err error) {
		mark := "✓"
		if err != nil {
			mark = "✗"
		}
		fmt.Fprintf(errOut, "  %s %-18s %s\n", mark, s, d.Round(time.Millisecond))
	}
	sup, closeFn, err := g.supervisor(ctx, step)
	if err != nil {
		return err
	}
	defer closeFn()

	// Validate first, on its own, so a bad profile is reported as such
	// (exit 2) before anything is touched.
	if err := sup.Validate(p); err != nil {
		return err
	}
	fmt.Fprintf(errOut, "clawguard: starting sandbox %s (profile %s)\n", p.Name, p.Source)
	for _, w := range profiles.Warnings(p) {
		fmt.Fprintf(errOut, "  ! warning: %s\n", w)
	}
	progress := func(format string, args ...any) { fmt.Fprintf(errOut, "    "+format+"\n", args...) }
	started, err := sup.Start(ctx, p, progress)
	if err != nil {
		return err
	}
	defer started.Close()
	if !weakened("firewall-guard") {
		guardCtx, stopGuard := context.WithCancel(ctx)
		guarded := make(chan struct{})
		go func() {
			defer close(guarded)
			sup.GuardFirewall(guardCtx, enforce.GuardPoll)
		}()
		defer func() { stopGuard(); <-guarded }()
	}
	fmt.Fprintf(errOut, "clawguard: sandbox %s running (pid %d, address %s, started in %s); egress: %d allowlist entries, everything else denied; Ctrl-C stops it\n",
		started.Name, started.Pid, started.IP, started.Took.Round(time.Millisecond), len(p.Egress.Allow))
	if len(p.Publish) > 0 {
		fmt.Fprintf(errOut, "clawguard: published (this host only): %s\n", strings.Join(p.Publish, ", "))
	}
	if vf != nil {
		if err := verifyStarted(ctx, errOut, g, p.Name, vf); err != nil {
			fmt.Fprintf(errOut, "clawguard: stopping %s: %v\n", p.Name, err)
			if serr := sup.Stop(context.WithoutCancel(ctx), p.Name, p.StopTimeout.Duration); serr != nil {
				return fmt.Errorf("%w (and stopping it failed: %v)", err, serr)
			}
			return exitCodeError{exitFailure}
		}
	}
	fmt.Fprintf(errOut, "clawguard: output follows (also in %s)\n", started.LogPath)
	// On a terminal the agent's escape sequences are shown, not obeyed.
	out, flush := agentOutput(out, false)
	defer flush()

	exited := make(chan struct{})
	logDone := make(chan error, 1)
	go func() {
		logDone <- enforce.FollowLog(context.WithoutCancel(ctx), started.LogPath, out, false, true, exited)
	}()

	cleanup := context.WithoutCancel(ctx)
	select {
	case st := <-started.Exit:
		close(exited)
		<-logDone
		code, _, werr := st.Result()
		if err := sup.Teardown(cleanup, p.Name); err != nil {
			return err
		}
		if werr != nil {
			return fmt.Errorf("sandbox %s: %w", p.Name, werr)
		}
		fmt.Fprintf(errOut, "clawguard: sandbox %s exited with code %d; removed\n", p.Name, code)
		if code != 0 {
			return exitCodeError{exitFailure}
		}
		return nil
	case <-ctx.Done():
		fmt.Fprintf(errOut, "\nclawguard: stopping %s (SIGTERM, then SIGKILL after %s)\n", p.Name, p.StopTimeout.Duration)
		err := sup.Stop(cleanup, p.Name, p.StopTimeout.Duration)
		close(exited)
		<-logDone
		// Someone ran `clawguard stop` at the same moment: already gone is fine.
		if err != nil && !errors.Is(err, runtime.ErrNotFound) {
			return err
		}
		fmt.Fprintf(errOut, "clawguard: sandbox %s stopped and removed\n", p.Name)
		return nil
	}
}

// runDetached asks the daemon to start the sandbox. The daemon loads the
// profile itself (it is on the same host); relative paths of the built-in
// profile start at this command's working directory.
func runDetached(cmd *cobra.Command, g *globals, profilePath, name, image string, vf *verifyFlags) error {
	c, err := g.daemon()
	if err != nil {
		return usage("--detach needs the daemon: %v", err)
	}
	req := api.RunRequest{Name: name, Image: image}
	if profilePath != "" {
		if req.Profile, err = filepath.Abs(profilePath); err != nil {
			return err
		}
	} else if req.Dir, err = os.Getwd(); err != nil {
		return err
	}
	var resp api.RunResponse
	if err := c.Do(cmd.Context(), "POST", "/v1/sandboxes", req, &resp); err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "clawguard: sandbox %s running in the daemon (pid %d, address %s, user %s, started in %.0fms)\n", resp.Name, resp.Pid, resp.IP, resp.User, resp.TookMs)
	if vf == nil {
		return nil
	}
	if err := verifyStarted(cmd.Context(), cmd.ErrOrStderr(), g, resp.Name, vf); err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "clawguard: stopping %s: %v\n", resp.Name, err)
		if serr := c.Do(context.WithoutCancel(cmd.Context()), "DELETE", "/v1/sandboxes/"+resp.Name, nil, nil); serr != nil {
			return fmt.Errorf("%w (and stopping it failed: %v)", err, serr)
		}
		return exitCodeError{exitFailure}
	}
	return nil
}

// verifyStarted verifies a sandbox that just started; it prints the table
// when a check fails and a one-line summary otherwise.
func verifyStarted(ctx context.Context, w io.Writer, g *globals, name string, vf *verifyFlags) error {
	v, err := g.verify(ctx, name, vf)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if !v.Passed {
		printVerification(w, v, false)
		return errors.New("verify failed")
	}
	warn := 0
	for _, r := range v.Results {
		if r.Status == verify.Warn {
			warn++
		}
	}
	fmt.Fprintf(w, "clawguard: verify: %d checks, none failed, %d warnings (%s); 'clawguard verify %s' shows them\n",
		len(v.Results), warn, v.Took.Round(10*time.Millisecond), name)
	return nil
}
