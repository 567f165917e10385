package netrules

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Rules are read with one iptables-save per family and changed with one
// iptables-restore --noflush per table, as kube-proxy does: a sandbox's
// rules go in or out in a single transaction, in milliseconds, instead of
// one exec per rule. Every rule of ours carries an owner comment; a group of
// rules (one owner in one chain) that is not exactly as wanted is rewritten by
// deleting the lines with that comment, using the exact text iptables printed,
// and appending the wanted ones, so a rule can never be duplicated.

// runner reads and writes one family's rules; tests substitute a fake.
type runner interface {
	save(f family) (string, error)
	restore(f family, table, input string) error
	packets(f family, table string, chains ...string) ([]counted, error)
}

// counted is a saved rule line with its chain and packet counter.
type counted struct {
	chain, line string
	packets     uint64
}

// execRunner runs the iptables-save/-restore binaries of the host (nft or
// legacy, whichever `iptables` is), in the host's network namespace or, for
// a sandbox's second layer, in the one mounted at netns. --wait makes us
// queue behind another program holding the xtables lock instead of failing,
// for xtablesWait at most; every command is killed after commandLimit.
type execRunner struct{ netns string }

// command runs bin in the runner's namespace. nsenter, not a setns of our
// own: a forked child of a Go thread moved into another namespace is easy
// to get wrong, and util-linux is on every Debian.
func (r execRunner) command(ctx context.Context, bin string, args ...string) *exec.Cmd {
	if r.netns == "" {
		return exec.CommandContext(ctx, bin, args...)
	}
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + r.netns, "--", bin}, args...)...)
}

func (r execRunner) save(f family) (string, error) { return r.saveCmd(f) }

func (r execRunner) saveCmd(f family, args ...string) (string, error) {
	bin := "iptables-save"
	if f == v6 {
		bin = "ip6tables-save"
	}
	var out, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), commandLimit)
	defer cancel()
	cmd := r.command(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %v: %s%s", bin, err, strings.TrimSpace(stderr.String()), timedOut(ctx))
	}
	return out.String(), nil
}

// packets reads the rules of chains, in one save, with their packet
// counters.
func (r execRunner) packets(f family, table string, chains ...string) ([]counted, error) {
	out, err := r.saveCmd(f, "-c", "-t", table)
	if err != nil {
		return nil, err
	}
	var res []counted
	for _, l := range strings.Split(out, "\n") {
		// "[packets:bytes] -A CHAIN rule"
		cnt, rest, ok := strings.Cut(l, "] ")
		if !ok || !strings.HasPrefix(cnt, "[") {
			continue
		}
		for _, chain := range chains {
			if line, ok := strings.CutPrefix(rest, "-A "+chain+" "); ok {
				c := counted{chain: chain, line: line}
				fmt.Sscanf(cnt[1:], "%d:", &c.packets)
				res = append(res, c)
			}
		}
	}
	return res, nil
}

func (r execRunner) restore(f family, table, input string) error {
	bin := "iptables-restore"
	if f == v6 {
		bin = "ip6tables-restore"
	}
	var stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), commandLimit)
	defer cancel()
	cmd := r.command(ctx, bin, "--wait", strconv.Itoa(int(xtablesWait/time.Second)), "--noflush")
	cmd.Stdin, cmd.Stderr = strings.NewReader(input), &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if strings.Contains(msg, "xtables lock") {
			if who := lockHolder(xtablesLock); who != "" {
				msg += " (held by " + who + ")"
			}
		}
		return fmt.Errorf("%s (table %s): %v: %s%s\ninput:\n%s", bin, table, err, msg, timedOut(ctx), input)
	}
	return nil
}

// timedOut explains a command killed at its time limit.
func timedOut(ctx context.Context) string {
	if ctx.Err() == nil {
		return ""
	}
	s := fmt.Sprintf(" (killed after %s", commandLimit)
	if who := lockHolder(xtablesLock); who != "" {
		s += "; the xtables lock is held by " + who
	}
	return s + ")"
}

// ruleset is one family's rules as iptables-save printed them: table ->
// chain -> rule lines (the text after "-A CHAIN ").
type ruleset map[string]map[string][]string

func parseSave(out string) ruleset {
	rs := ruleset{}
	table := ""
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, "*"):
			table = l[1:]
			rs[table] = map[string][]string{}
		case strings.HasPrefix(l, ":") && table != "":
			if f := strings.Fields(l[1:]); len(f) > 0 {
				rs[table][f[0]] = rs[table][f[0]][:0:0]
			}
		case strings.HasPrefix(l, "-A ") && table != "":
			chain, rest, _ := strings.Cut(l[3:], " ")
			rs[table][chain] = append(rs[table][chain], rest)
		}
	}
	return rs
}

func (rs ruleset) has(table, chain string) bool {
	_, ok := rs[table][chain]
	return ok
}

// render writes a rule spec as iptables-save would, quoting arguments with
// spaces (our comments).
func render(spec []string) string {
	out := make([]string, len(spec))
	for i, s := range spec {
		if strings.ContainsAny(s, " \t") {
			s = `"` + s + `"`
		}
		out[i] = s
	}
	return strings.Join(out, " ")
}

// owner is the comment that marks a rule as ours.
func owner(spec []string) string {
	for i := 0; i+1 < len(spec); i++ {
		if spec[i] == "--comment" {
			return spec[i+1]
		}
	}
	return ""
}

// ownedBy reports whether a saved rule line carries the owner comment.
func ownedBy(line, own string) bool {
	return strings.Contains(line, "--comment "+render([]string{own})+" ") || strings.HasSuffix(line, "--comment "+render([]string{own}))
}

// plan collects restore lines per table: declarations and deletions come
// before additions, and chain removals last, so one transaction per table
// can add, move and remove rules and chains.
type plan struct {
	decl, del, add, drop map[string][]string
}

func newPlan() *plan {
	return &plan{decl: map[string][]string{}, del: map[string][]string{}, add: map[string][]string{}, drop: map[string][]string{}}
}

func (p *plan) input(table string) string {
	lines := slices.Concat(p.decl[table], p.del[table], p.add[table], p.drop[table])
	if len(lines) == 0 {
		return ""
	}
	return "*" + table + "\n" + strings.Join(lines, "\n") + "\nCOMMIT\n"
}

// planEnsure makes chains exist and each owner's rules in each chain be
// exactly the wanted ones, in order. top rules (hooks from the built-in
// chains) must be the first rule of their chain.
func planEnsure(rs ruleset, f family, chains []chainRef, rules []rule) *plan {
	p := newPlan()
	for _, c := range chains {
		if c.fam == f && !rs.has(c.table, c.chain) {
			p.decl[c.table] = append(p.decl[c.table], ":"+c.chain+" - [0:0]")
		}
	}
	type key struct{ table, chain, owner string }
	var order []key
	groups := map[key][]string{}
	for _, r := range rules {
		if r.fam != f {
			continue
		}
		line := render(r.spec)
		if r.top {
			existing := rs[r.table][r.chain]
			if len(existing) > 0 && existing[0] == line {
				continue
			}
			for _, l := range existing {
				if l == line {
					p.del[r.table] = append(p.del[r.table], "-D "+r.chain+" "+l)
				}
			}
			p.add[r.table] = append(p.add[r.table], "-I "+r.chain+" 1 "+line)
			continue
		}
		k := key{r.table, r.chain, owner(r.spec)}
		if _, seen := groups[k]; !seen {
			order = append(order, k)
		}
		groups[k] = append(groups[k], line)
	}
	for _, k := range order {
		var have []string
		for _, l := range rs[k.table][k.chain] {
			if ownedBy(l, k.owner) {
				have = append(have, l)
			}
		}
		if slices.Equal(have, groups[k]) {
			continue
		}
		for _, l := range have {
			p.del[k.table] = append(p.del[k.table], "-D "+k.chain+" "+l)
		}
		for _, l := range groups[k] {
			p.add[k.table] = append(p.add[k.table], "-A "+k.chain+" "+l)
		}
	}
	return p
}

// planRemoveOwner deletes every rule with the owner comment from the given
// chains and then removes the chains in drop (flushed first).
func planRemoveOwner(rs ruleset, f family, own string, from []chainRef, drop []chainRef) *plan {
	p := newPlan()
	for _, c := range from {
		if c.fam != f {
			continue
		}
		for _, l := range rs[c.table][c.chain] {
			if ownedBy(l, own) {
				p.del[c.table] = append(p.del[c.table], "-D "+c.chain+" "+l)
			}
		}
	}
	for _, c := range drop {
		if c.fam == f && rs.has(c.table, c.chain) {
			p.drop[c.table] = append(p.drop[c.table], "-F "+c.chain, "-X "+c.chain)
		}
	}
	return p
}

// tables applies plans through a runner.
type tables struct{ r runner }

func (t tables) load(f family) (ruleset, error) {
	out, err := t.r.save(f)
	if err != nil {
		return nil, err
	}
	return parseSave(out), nil
}

// ruleTables are the tables rules of ours live in, in the order they are
// written.
func ruleTables() []string { return []string{"raw", "filter", "nat"} }

func (t tables) apply(f family, p *plan) error {
	for _, table := range ruleTables() {
		if in := p.input(table); in != "" {
			if err := t.r.restore(f, table, in); err != nil {
				return err
			}
		}
	}
	return nil
}

// ensure makes chains and rules of both families as wanted. It returns the
// rules it had to add (or move back to the top), as restore lines: none
// when everything was in place.
func (t tables) ensure(chains []chainRef, rules []rule) ([]string, error) {
	var added []string
	for _, f := range []family{v4, v6} {
		rs, err := t.load(f)
		if err != nil {
			return added, err
		}
		p := planEnsure(rs, f, chains, rules)
		if err := t.apply(f, p); err != nil {
			return added, err
		}
		for _, table := range ruleTables() {
			for _, l := range p.add[table] {
				added = append(added, f.String()+" -t "+table+" "+l)
			}
		}
	}
	return added, nil
}

// removeOwner deletes the owner's rules from chains and removes drop.
func (t tables) removeOwner(own string, from, drop []chainRef) error {
	for _, f := range []family{v4, v6} {
		rs, err := t.load(f)
		if err != nil {
			return err
		}
		if err := t.apply(f, planRemoveOwner(rs, f, own, from, drop)); err != nil {
			return err
		}
	}
	return nil
}

// lines returns the saved rules of one chain (for status and counters).
func (t tables) lines(f family, table, chain string) ([]string, bool, error) {
	rs, err := t.load(f)
	if err != nil {
		return nil, false, err
	}
	l, ok := rs[table][chain]
	return l, ok, nil
}
