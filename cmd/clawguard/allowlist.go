package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/clawguard/clawguard/profiles"
)

// rePattern is what an OpenClaw allowlist pattern may be: a command name,
// a path or a glob, without spaces or shell syntax.
var rePattern = regexp.MustCompile(`^[A-Za-z0-9_./*~+-]{1,200}$`)

func allowlistCmd(_ *globals) *cobra.Command {
	var profilePath string
	cmd := &cobra.Command{
		Use:   "allowlist",
		Short: "Change the agent's command allowlist, with a dated change-log row for every change",
		Long: `The commands an OpenClaw agent may ask to run are the allowlist in the
profile's config/exec-approvals.json. Every change is recorded, with its reason
and risk, in allowlist-changes.md beside the profile; 'clawguard verify' fails
on an allowlisted command the change log does not account for. A running
sandbox loads the allowlist when it starts: restart it to apply a change.`,
	}
	cmd.PersistentFlags().StringVar(&profilePath, "profile", "", "profile file (default: the built-in openclaw profile in the current directory)")
	edit := func(add bool) *cobra.Command {
		var reason, risk string
		verb, use := "remove", "remove COMMAND --reason TEXT"
		if add {
			verb, use = "add", "add COMMAND --reason TEXT --risk TEXT"
		}
		c := &cobra.Command{
			Use:   use,
			Short: map[bool]string{true: "Allow a command and record why", false: "Remove a command and record why"}[add],
			Example: map[bool]string{
				true:  `  clawguard allowlist add jq --reason "parse API responses" --risk "Medium: reads files it is given"`,
				false: `  clawguard allowlist remove pip --reason "no Python packages in this project"`,
			}[add],
			Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				command := args[0]
				if !rePattern.MatchString(command) {
					return usage("command %q: write a command name, path or glob without spaces (e.g. jq, /usr/bin/git)", command)
				}
				if reason == "" {
					return usage("--reason is required: say why the agent needs (or no longer needs) %s", command)
				}
				if add && risk == "" {
					return usage("--risk is required: assess what %s lets a hijacked agent do, e.g. \"Low: read-only\"", command)
				}
				if !add && risk == "" {
					risk = "-"
				}
				p, dir, err := openClawProfile(profilePath)
				if err != nil {
					return err
				}
				if _, err := profiles.AllowedCommands(p); err != nil {
					return err
				}
				changed, err := profiles.EditAllowlist(dir, command, add)
				if err != nil {
					return err
				}
				if !changed {
					if add {
						fmt.Fprintf(cmd.OutOrStdout(), "%s is already allowed; nothing changed\n", command)
						return nil
					}
					return fmt.Errorf("%s is not in the allowlist; nothing changed", command)
				}
				row := profiles.ChangeRow{Date: time.Now(), Change: verb, Commands: []string{command}, Reason: reason, Risk: risk}
				if err := profiles.AppendChange(p, row); err != nil {
					// Undo the edit: an unrecorded change is what verify refuses.
					if _, uerr := profiles.EditAllowlist(dir, command, !add); uerr != nil {
						return fmt.Errorf("%w (and undoing the allowlist change failed: %v)", err, uerr)
					}
					return fmt.Errorf("%w; the allowlist was left unchanged", err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%sed %s (%s); recorded in %s\nrestart the sandbox to apply it\n",
					map[bool]string{true: "allow", false: "remov"}[add], command, dir+"/"+profiles.ApprovalsFile, profiles.ChangeLogPath(p))
				return nil
			},
		}
		c.Flags().StringVar(&reason, "reason", "", "why the change is needed (required)")
		c.Flags().StringVar(&risk, "risk", "", "risk assessment of the command (required for add)")
		return c
	}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "Show the allowlist and whether the change log accounts for each command",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, dir, err := openClawProfile(profilePath)
			if err != nil {
				return err
			}
			cmds, err := profiles.Allowlist(dir)
			if err != nil {
				return err
			}
			recorded, err := profiles.AllowedCommands(p)
			if err != nil {
				return err
			}
			type row struct {
				Command  string `json:"command"`
				Recorded bool   `json:"recorded"`
			}
			rows := []row{}
			for _, c := range cmds {
				rows = append(rows, row{c, slices.Contains(recorded, c)})
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(rows)
			}
			for _, r := range rows {
				note := ""
				if !r.Recorded {
					note = "  (not in the change log: verify fails)"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s%s\n", r.Command, note)
			}
			return nil
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(edit(true), edit(false), list)
	return cmd
}

// openClawProfile loads the profile and returns its config directory.
func openClawProfile(path string) (*profiles.Profile, string, error) {
	p, err := loadProfile(path)
	if err != nil {
		return nil, "", err
	}
	if p.Agent != profiles.AgentOpenClaw {
		return nil, "", usage("profile %s runs no OpenClaw agent (agent: %q); the allowlist is OpenClaw's", p.Source, p.Agent)
	}
	dir := profiles.OpenClawConfigSource(p)
	if dir == "" {
		return nil, "", usage("profile %s mounts no configuration at %s", p.Source, profiles.OpenClawConfigDir)
	}
	return p, dir, nil
}
