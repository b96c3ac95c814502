package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/config"
	"github.com/zenklav/zenklav/connstore"
	"github.com/zenklav/zenklav/seal"
)

const connectionsUsage = `Usage: zenklav connections apply -f FILE [--dry-run] | list | show ID | disable ID | enable ID | remove ID

Keeps the connections in the store every process shares (the compacted Kafka topic
connections.v1), their secrets sealed with ZENKLAV_SECRETS_KEY (zenklav secrets new-key).
apply makes the store hold the file's connections (idempotent: what is already so is left
alone; --dry-run prints what would change); it removes none (remove ID does). show prints a
connection with its secrets masked.
`

const secretsUsage = `Usage: zenklav secrets new-key | rotate

new-key prints a fresh key for ZENKLAV_SECRETS_KEY; its last line is the value to set. To
rotate, put the new key first (ZENKLAV_SECRETS_KEY=new,old), run zenklav secrets rotate, which
seals every stored secret again under the new key, then drop the old key.
`

// adminArgs are the words after `zenklav connections` or `zenklav secrets`.
type adminArgs struct {
	verb, id, file string
	dryRun         bool
}

func parseConnectionsFlags(c call) (adminArgs, error) {
	fs := flag.NewFlagSet("connections", flag.ContinueOnError)
	fs.SetOutput(c.stdout)
	fs.Usage = func() { fmt.Fprint(c.stdout, connectionsUsage); fs.PrintDefaults() }
	var a adminArgs
	if len(c.args) == 0 {
		fs.Usage()
		return a, errors.New("connections: say what to do: apply, list, show, disable, enable or remove")
	}
	a.verb = c.args[0]
	fs.StringVar(&a.file, "f", "", "the connections `FILE` to apply (JSON or YAML, as ZENKLAV_CONNECTIONS_FILE)")
	fs.BoolVar(&a.dryRun, "dry-run", false, "print what apply would change; change nothing")
	if err := fs.Parse(c.args[1:]); err != nil {
		return a, fmt.Errorf("connections: %w", err)
	}
	switch a.verb {
	case "apply":
		if a.file == "" || fs.NArg() > 0 {
			return a, errors.New("connections apply: give the file with -f FILE")
		}
	case "list":
	case "show", "disable", "enable", "remove":
		if fs.NArg() != 1 {
			return a, fmt.Errorf("connections %s: give one connection id", a.verb)
		}
		a.id = fs.Arg(0)
	default:
		return a, fmt.Errorf("connections: unknown command %q: apply, list, show, disable, enable or remove", a.verb)
	}
	return a, nil
}

func parseSecretsFlags(c call) (adminArgs, error) {
	if len(c.args) != 1 || (c.args[0] != "new-key" && c.args[0] != "rotate") {
		fmt.Fprint(c.stdout, secretsUsage)
		return adminArgs{}, errors.New("secrets: say new-key or rotate")
	}
	return adminArgs{verb: c.args[0]}, nil
}

// openStore opens the connections store with the env's brokers and keys.
func (e *env) openStore(ctx context.Context, what string) (*connstore.Store, error) {
	brokers, err := e.needBrokers(what)
	if err != nil {
		return nil, err
	}
	if e.cfg.SecretsKey == "" {
		return nil, errors.New("ZENKLAV_SECRETS_KEY is empty: the connections' secrets are sealed with it; make one with `zenklav secrets new-key`")
	}
	keys, err := seal.ParseKeyring(e.cfg.SecretsKey)
	if err != nil {
		return nil, err
	}
	e.brokers = brokers
	store, err := connstore.Open(ctx, e.logger, brokers, e.topic(e.cfg.ConnectionsTopic, true), e.kafkaProducer(), keys)
	if err != nil {
		return nil, err
	}
	e.onClose(store.Close)
	return store, nil
}

// secrets is `zenklav secrets`.
func secrets(ctx context.Context, e *env, a adminArgs, out io.Writer) error {
	if a.verb == "new-key" {
		key, err := seal.NewKey(time.Now().UTC().Format("20060102"))
		if err != nil {
			return err
		}
		fmt.Fprintln(out, "A new key for ZENKLAV_SECRETS_KEY (put it first, keep the old one after it until `zenklav secrets rotate` has run):")
		fmt.Fprintln(out, key)
		return nil
	}
	store, err := e.openStore(ctx, "secrets rotate reads and writes the connections store in")
	if err != nil {
		return err
	}
	n, err := store.Rotate(ctx)
	if err != nil {
		return fmt.Errorf("secrets rotate: %w", err)
	}
	fmt.Fprintf(out, "re-sealed the secrets of %d connection(s) under the current key\n", n)
	return nil
}

// connections is `zenklav connections`.
func connections(ctx context.Context, e *env, a adminArgs, out io.Writer) error {
	store, err := e.openStore(ctx, "connections reads and writes the connections store in")
	if err != nil {
		return err
	}
	switch a.verb {
	case "apply":
		return applyConnections(ctx, store, a, out)
	case "list":
		entries, err := store.List(ctx)
		if err != nil {
			return err
		}
		for _, en := range entries {
			if en.Err != nil {
				fmt.Fprintf(out, "%s\tunreadable: %v\n", en.Connection.ID, en.Err)
				continue
			}
			fmt.Fprintf(out, "%s\t%s\tzendesk %s\tsms %v\tupdated %s\n", en.Connection.ID, state(en.Disabled),
				en.Connection.Zendesk.Subdomain, en.Connection.SMS.Enabled, en.UpdatedAt.Format(time.RFC3339))
		}
		return nil
	case "show":
		en, err := store.Get(a.id)
		if err != nil {
			return err
		}
		// A Secret's own encoding masks it: show prints no secret.
		b, err := json.MarshalIndent(struct {
			Connection zenklav.Connection `json:"connection"`
			State      string             `json:"state"`
		}{en.Connection, state(en.Disabled)}, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(out, string(b))
		return nil
	case "remove":
		if err := store.Remove(ctx, a.id); err != nil {
			return err
		}
		fmt.Fprintf(out, "removed %s\n", a.id)
		return nil
	}
	en, err := store.Get(a.id) // disable, enable
	if err != nil {
		return err
	}
	if err := store.Put(ctx, en.Connection, a.verb == "disable"); err != nil {
		return err
	}
	fmt.Fprintf(out, "%s %s\n", a.id, state(a.verb == "disable"))
	return nil
}

func state(disabled bool) string {
	if disabled {
		return "disabled"
	}
	return "enabled"
}

// applyConnections makes the store hold the file's connections; a connection already so is
// left alone, and a disabled one stays disabled.
func applyConnections(ctx context.Context, store *connstore.Store, a adminArgs, out io.Writer) error {
	want, err := config.LoadConnections(a.file)
	if err != nil {
		return err
	}
	changed := 0
	for _, c := range want.All() {
		old, err := store.Get(c.ID)
		verb := "add"
		switch {
		case err == nil && connstore.Same(old.Connection, c):
			fmt.Fprintf(out, "unchanged %s\n", c.ID)
			continue
		case err == nil:
			verb = "change"
		case zenklav.ErrorCode(err) != zenklav.ENOTFOUND:
			return err
		}
		changed++
		if a.dryRun {
			fmt.Fprintf(out, "would %s %s\n", verb, c.ID)
			continue
		}
		if err := store.Put(ctx, c, err == nil && old.Disabled); err != nil {
			return err
		}
		fmt.Fprintf(out, "%sed %s\n", map[string]string{"add": "add", "change": "chang"}[verb], c.ID)
	}
	fmt.Fprintf(out, "%d of %d connection(s) %s\n", changed, len(want.All()), map[bool]string{true: "would change", false: "changed"}[a.dryRun])
	return nil
}
