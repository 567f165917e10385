package netrules

import (
	"errors"
	"fmt"
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

// ipt is the part of go-iptables we use, so tests can substitute a fake.
type ipt interface {
	ChainExists(table, chain string) (bool, error)
	NewChain(table, chain string) error
	ClearAndDeleteChain(table, chain string) error
	Exists(table, chain string, rulespec ...string) (bool, error)
	Insert(table, chain string, pos int, rulespec ...string) error
	Append(table, chain string, rulespec ...string) error
	DeleteIfExists(table, chain string, rulespec ...string) error
	List(table, chain string) ([]string, error)
	ListWithCounters(table, chain string) ([]string, error)
	ListChains(table string) ([]string, error)
}

// tables holds one runner per address family. go-iptables passes --wait, so
// another program holding the xtables lock makes us wait, not fail.
type tables struct{ v4, v6 ipt }

func newTables() (tables, error) {
	t4, err := iptables.NewWithProtocol(iptables.ProtocolIPv4)
	if err != nil {
		return tables{}, fmt.Errorf("iptables: %w", err)
	}
	t6, err := iptables.NewWithProtocol(iptables.ProtocolIPv6)
	if err != nil {
		return tables{}, fmt.Errorf("ip6tables: %w", err)
	}
	return tables{v4: t4, v6: t6}, nil
}

func (t tables) of(f family) ipt {
	if f == v6 {
		return t.v6
	}
	return t.v4
}

// ensureChains creates chains that do not exist yet; existing ones keep
// their rules (reconcile adds whatever is missing).
func (t tables) ensureChains(chains []chainRef) error {
	for _, c := range chains {
		ok, err := t.of(c.fam).ChainExists(c.table, c.chain)
		if err != nil {
			return fmt.Errorf("%s: check chain %s/%s: %w", c.fam, c.table, c.chain, err)
		}
		if ok {
			continue
		}
		if err := t.of(c.fam).NewChain(c.table, c.chain); err != nil {
			return fmt.Errorf("%s: create chain %s/%s: %w", c.fam, c.table, c.chain, err)
		}
	}
	return nil
}

// ensureRules adds each rule that is not present, in order; an existing rule
// is never added twice.
func (t tables) ensureRules(rules []rule) error {
	for _, r := range rules {
		x := t.of(r.fam)
		ok, err := x.Exists(r.table, r.chain, r.spec...)
		if err != nil {
			return fmt.Errorf("%s: check rule in %s/%s: %w", r.fam, r.table, r.chain, err)
		}
		if ok {
			continue
		}
		if r.top {
			err = x.Insert(r.table, r.chain, 1, r.spec...)
		} else {
			err = x.Append(r.table, r.chain, r.spec...)
		}
		if err != nil {
			return fmt.Errorf("%s: add rule to %s/%s (%s): %w", r.fam, r.table, r.chain, strings.Join(r.spec, " "), err)
		}
	}
	return nil
}

// deleteRules removes rules in reverse order; a missing rule is not an error.
func (t tables) deleteRules(rules []rule) error {
	var errs []error
	for i := len(rules) - 1; i >= 0; i-- {
		r := rules[i]
		if err := t.of(r.fam).DeleteIfExists(r.table, r.chain, r.spec...); err != nil && !notFound(err) {
			errs = append(errs, fmt.Errorf("%s: delete rule from %s/%s: %w", r.fam, r.table, r.chain, err))
		}
	}
	return errors.Join(errs...)
}

// deleteChains flushes and removes chains; a missing chain is not an error.
func (t tables) deleteChains(chains []chainRef) error {
	var errs []error
	for i := len(chains) - 1; i >= 0; i-- {
		c := chains[i]
		x := t.of(c.fam)
		ok, err := x.ChainExists(c.table, c.chain)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ok {
			continue
		}
		if err := x.ClearAndDeleteChain(c.table, c.chain); err != nil && !notFound(err) {
			errs = append(errs, fmt.Errorf("%s: delete chain %s/%s: %w", c.fam, c.table, c.chain, err))
		}
	}
	return errors.Join(errs...)
}

func notFound(err error) bool {
	var e *iptables.Error
	return errors.As(err, &e) && e.IsNotExist()
}
