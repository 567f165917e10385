package daemon

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/google/renameio/v2"
)

// IDRange is the operator's range of uids (and the same gids) for the
// sandboxes of socket-group members: sandbox_ids in the daemon's config.
type IDRange struct{ First, Last uint32 }

// ParseIDRange reads "FIRST-LAST" (inclusive). Root's id and the ids at the
// top of the 32-bit space (-1 means "unchanged" to chown and setfsuid) are
// refused.
func ParseIDRange(s string) (IDRange, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return IDRange{}, fmt.Errorf("%q is not FIRST-LAST (e.g. 2100000000-2100000999)", s)
	}
	first, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 32)
	last, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 32)
	switch {
	case err1 != nil || err2 != nil:
		return IDRange{}, fmt.Errorf("%q is not FIRST-LAST with decimal ids (e.g. 2100000000-2100000999)", s)
	case first == 0:
		return IDRange{}, fmt.Errorf("%q includes 0 (root)", s)
	case first > last:
		return IDRange{}, fmt.Errorf("%q: FIRST is above LAST", s)
	case last >= 1<<32-2:
		return IDRange{}, fmt.Errorf("%q reaches %d; the ids 4294967294 and 4294967295 are reserved", s, last)
	}
	return IDRange{First: uint32(first), Last: uint32(last)}, nil
}

func (r IDRange) String() string { return fmt.Sprintf("%d-%d", r.First, r.Last) }

func (r IDRange) contains(id uint32) bool { return id >= r.First && id <= r.Last }

// Accounts returns the users of passwd and the groups of group (files in
// their formats) whose ids fall in r: an id the host already gives to
// someone must never be a sandbox's, or a sandbox's files would be that
// account's and the account's the sandbox's.
func (r IDRange) Accounts(passwd, group io.Reader) ([]string, error) {
	var found []string
	for _, f := range []struct {
		kind string
		r    io.Reader
	}{{"user", passwd}, {"group", group}} {
		sc := bufio.NewScanner(f.r)
		for sc.Scan() {
			fields := strings.Split(sc.Text(), ":")
			if len(fields) < 3 || strings.HasPrefix(fields[0], "#") {
				continue
			}
			id, err := strconv.ParseUint(fields[2], 10, 32)
			if err == nil && r.contains(uint32(id)) {
				found = append(found, fmt.Sprintf("%s %s (%d)", f.kind, fields[0], id))
			}
		}
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return found, nil
}

// Subordinate returns the entries of subuid and subgid (files in the
// format of /etc/subuid: NAME:FIRST:COUNT) that overlap r: a user with
// subordinate ids maps them in a user namespace of its own, and would then
// own the files of the sandboxes that run as them.
func (r IDRange) Subordinate(subuid, subgid io.Reader) ([]string, error) {
	var found []string
	for _, f := range []struct {
		kind string
		r    io.Reader
	}{{"subuid", subuid}, {"subgid", subgid}} {
		if f.r == nil {
			continue
		}
		sc := bufio.NewScanner(f.r)
		for sc.Scan() {
			fields := strings.Split(strings.TrimSpace(sc.Text()), ":")
			if len(fields) != 3 {
				continue
			}
			first, err1 := strconv.ParseUint(fields[1], 10, 32)
			count, err2 := strconv.ParseUint(fields[2], 10, 32)
			if err1 != nil || err2 != nil || count == 0 {
				continue
			}
			if last := first + count - 1; first <= uint64(r.Last) && last >= uint64(r.First) {
				found = append(found, fmt.Sprintf("%s of %s (%d-%d)", f.kind, fields[0], first, last))
			}
		}
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return found, nil
}

// idBook gives each non-root caller an id of the range, its own for good:
// every sandbox that caller starts runs as that uid and gid, and no other
// caller ever gets it. A sandbox can leave setuid or setgid files in a
// directory mounted writable; with an id of its own, such a file lets its
// caller become only what its own sandboxes already are. The book is a
// file in the state directory, written before an id is first used, so
// restarts and range changes never hand an id to a second caller.
type idBook struct {
	path  string
	rng   IDRange
	byUID map[uint32]uint32
}

type idBookFile struct {
	Version int               `json:"version"`
	IDs     map[string]uint32 `json:"ids"` // caller uid -> sandbox id
}

func openIDBook(path string, rng IDRange) (*idBook, error) {
	b := &idBook{path: path, rng: rng, byUID: map[uint32]uint32{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the sandbox id book %s: %w", path, err)
	}
	var f idBookFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("read the sandbox id book %s: %w", path, err)
	}
	for k, id := range f.IDs {
		uid, err := strconv.ParseUint(k, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("read the sandbox id book %s: caller %q is not a uid", path, k)
		}
		b.byUID[uint32(uid)] = id
	}
	return b, nil
}

// assign returns uid's sandbox id, taking the lowest free one of the range
// on its first call. Not safe for concurrent use: the daemon holds its lock.
func (b *idBook) assign(uid uint32) (uint32, error) {
	if id, ok := b.byUID[uid]; ok {
		if !b.rng.contains(id) {
			return 0, fmt.Errorf("uid %d's sandbox id %d (recorded in %s) is outside sandbox_ids %s: widen sandbox_ids to include it, or delete that entry if no file on this host is owned by %d", uid, id, b.path, b.rng, id)
		}
		return id, nil
	}
	taken := make(map[uint32]bool, len(b.byUID))
	for _, id := range b.byUID {
		taken[id] = true
	}
	for id := b.rng.First; ; id++ {
		if !taken[id] {
			b.byUID[uid] = id
			if err := b.save(); err != nil {
				delete(b.byUID, uid)
				return 0, err
			}
			return id, nil
		}
		if id == b.rng.Last {
			return 0, fmt.Errorf("every id of sandbox_ids %s is given to a caller already (%d); widen the range", b.rng, len(taken))
		}
	}
}

func (b *idBook) save() error {
	f := idBookFile{Version: 1, IDs: map[string]uint32{}}
	for uid, id := range b.byUID {
		f.IDs[strconv.FormatUint(uint64(uid), 10)] = id
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	// Synced and renamed into place: a crash leaves the old book or the
	// new one, never a torn one that would forget an id already in use.
	if err := renameio.WriteFile(b.path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write the sandbox id book: %w", err)
	}
	return nil
}
