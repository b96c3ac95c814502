// Package connstore keeps the connections at run time in the compacted Kafka topic
// connections.v1, their secrets sealed (package seal): a store every replica of every role
// shares, that survives restarts and needs no server of its own, as Kafka Connect keeps its
// configuration. The connections file stays, as the declarative way to fill it (`zenklav
// connections apply -f FILE`).
package connstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/seal"
)

// Topic is the compacted topic of the connections, keyed by connection id, unless
// ZENKLAV_CONNECTIONS_TOPIC names another (as Kafka Connect's config.storage.topic does).
const Topic = "connections.v1"

// Entry is a stored connection and whether it is disabled (kept, but served by no role).
type Entry struct {
	Connection zenklav.Connection
	Disabled   bool
	UpdatedAt  time.Time
	// Err, in a List, says why the connection could not be read (a secret sealed under a
	// key ZENKLAV_SECRETS_KEY no longer holds): the others are still listed.
	Err error
}

// record is an entry as the topic holds it: the connection with its secrets left out (the
// secrets' own encoding writes none), and the secrets sealed, by field.
type record struct {
	Connection json.RawMessage   `json:"connection"`
	Sealed     map[string]string `json:"sealed"`
	Disabled   bool              `json:"disabled,omitempty"`
	UpdatedAt  time.Time         `json:"updated_at"`
}

// Store is the connections store.
type Store struct {
	table *kafka.Table
	keys  *seal.Keyring
	now   func() time.Time

	loading sync.Mutex // one load at a time, so an older set never replaces a newer one
	loaded  time.Time  // when the last load began
	// loadedVersion is the table's version the last load read (a later one is at least as new).
	loadedVersion uint64
}

// Open creates topic when it is missing (compacted, whatever topic.Compacted says), and reads
// it whole.
func Open(ctx context.Context, logger *slog.Logger, brokers []string, topic kafka.Topic, pub zenklav.Publisher, keys *seal.Keyring) (*Store, error) {
	topic.Compacted = true
	if err := kafka.EnsureTopics(ctx, brokers, topic); err != nil {
		return nil, err
	}
	t, err := kafka.OpenTable(ctx, logger, brokers, topic.Name, pub)
	if err != nil {
		return nil, err
	}
	s := &Store{table: t, keys: keys, now: time.Now}
	if err := t.Sync(ctx); err != nil {
		t.Close()
		return nil, err
	}
	return s, nil
}

// Close stops following the topic.
func (s *Store) Close() { s.table.Close() }

// place is what a secret is sealed for: its connection and field.
func place(id, field string) string { return id + "/" + field }

// Put stores c (sealed), enabled or not.
func (s *Store) Put(ctx context.Context, c zenklav.Connection, disabled bool) error {
	if err := c.Validate(); err != nil {
		return zenklav.Wrap(zenklav.EINVALID, err, "connection %q", c.ID)
	}
	rec := record{Sealed: map[string]string{}, Disabled: disabled, UpdatedAt: s.now().UTC()}
	var err error
	c.EachSecret(func(field string, sec *zenklav.Secret) {
		if sealed, serr := s.keys.Seal(*sec, place(c.ID, field)); serr != nil {
			err = serr
		} else if sealed != "" {
			rec.Sealed[field] = sealed
		}
	})
	if err != nil {
		return err
	}
	if rec.Connection, err = json.Marshal(c); err != nil {
		return err
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return s.table.Put(ctx, c.ID, v)
}

// Remove deletes the connection (a tombstone, which compaction drops in time).
func (s *Store) Remove(ctx context.Context, id string) error {
	if _, ok := s.table.Get(id); !ok {
		return zenklav.Errorf(zenklav.ENOTFOUND, "no connection %q", id)
	}
	return s.table.Put(ctx, id, nil)
}

// Get returns the connection of id, unsealed.
func (s *Store) Get(id string) (Entry, error) {
	raw, ok := s.table.Get(id)
	if !ok {
		return Entry{}, zenklav.Errorf(zenklav.ENOTFOUND, "no connection %q", id)
	}
	var rec record
	if err := json.Unmarshal(raw, &rec); err != nil {
		return Entry{}, fmt.Errorf("connection %q in %s: %w", id, Topic, err)
	}
	var c zenklav.Connection
	if err := json.Unmarshal(rec.Connection, &c); err != nil {
		return Entry{}, fmt.Errorf("connection %q in %s: %w", id, Topic, err)
	}
	var err error
	c.EachSecret(func(field string, sec *zenklav.Secret) {
		if err != nil {
			return
		}
		*sec, err = s.keys.Open(rec.Sealed[field], place(id, field))
	})
	if err != nil {
		return Entry{}, err
	}
	return Entry{Connection: c, Disabled: rec.Disabled, UpdatedAt: rec.UpdatedAt}, nil
}

// List returns every stored connection, by id; one that cannot be read has its Err set.
func (s *Store) List(ctx context.Context) ([]Entry, error) {
	if err := s.table.Sync(ctx); err != nil {
		return nil, err
	}
	var out []Entry
	for _, id := range s.table.Keys() {
		e, err := s.Get(id)
		if err != nil {
			e = Entry{Connection: zenklav.Connection{ID: id}, Err: err}
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Connection.ID, b.Connection.ID) })
	return out, nil
}

// Rotate seals every connection again under the keyring's current key; it returns how many
// it re-sealed.
func (s *Store) Rotate(ctx context.Context) (int, error) {
	entries, err := s.List(ctx)
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		if e.Err != nil {
			return 0, e.Err // every key that sealed must be in the ring while rotating
		}
		if err := s.Put(ctx, e.Connection, e.Disabled); err != nil {
			return 0, err
		}
	}
	return len(entries), nil
}

// Same says whether two connections are alike, their secrets included.
func Same(a, b zenklav.Connection) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if !bytes.Equal(ja, jb) {
		return false
	}
	var sa, sb []zenklav.Secret
	a.EachSecret(func(_ string, s *zenklav.Secret) { sa = append(sa, *s) })
	b.EachSecret(func(_ string, s *zenklav.Secret) { sb = append(sb, *s) })
	return slices.Equal(sa, sb)
}

// Follow keeps conns equal to the store's enabled connections until ctx ends: it looks every
// interval, and replaces the set when the store changed and the new set is valid (an invalid
// one is logged, and the last good set stays). It fills conns once before it returns.
func (s *Store) Follow(ctx context.Context, logger *slog.Logger, conns *zenklav.Connections, interval time.Duration) error {
	seen := s.table.Version()
	if err := s.load(ctx, conns, s.now()); err != nil {
		return err
	}
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if v := s.table.Version(); v != seen {
				seen = v
				if err := s.load(ctx, conns, s.now()); err != nil {
					logger.Error("the connections store changed, but the new set cannot be used; keeping the last one", "err", err)
					continue
				}
				logger.Info("connections changed", "connections", len(conns.All()))
			}
		}
	}()
	return nil
}

// CatchUp reads the topic to its end and loads it into conns, unless a load that began after
// the call did so meanwhile: for a part that met a connection conns lacks, which may have
// been added a moment ago (another process accepted its webhook already). Callers at once
// share a load.
func (s *Store) CatchUp(ctx context.Context, conns *zenklav.Connections) error {
	return s.load(ctx, conns, s.now())
}

// load replaces conns with the store's enabled connections, unless a load that began after
// asked did so meanwhile.
func (s *Store) load(ctx context.Context, conns *zenklav.Connections, asked time.Time) error {
	s.loading.Lock()
	defer s.loading.Unlock()
	if s.loaded.After(asked) {
		return nil
	}
	began := s.now()
	if err := s.table.Sync(ctx); err != nil {
		return err
	}
	version := s.table.Version()
	if s.loadedVersion == version && !s.loaded.IsZero() {
		// Nothing was written since the last load: no need to open every secret again (a
		// burst of messages of a removed connection each asks).
		s.loaded = began
		return nil
	}
	entries, err := s.List(ctx)
	if err != nil {
		return err
	}
	var list []zenklav.Connection
	var errs []error
	for _, e := range entries {
		switch {
		case e.Err != nil:
			errs = append(errs, e.Err)
		case !e.Disabled:
			list = append(list, e.Connection)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := conns.Replace(list...); err != nil {
		return err
	}
	s.loaded, s.loadedVersion = began, version
	return nil
}
