package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/term"
	"sigs.k8s.io/yaml"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/connstore"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/setup"
	"github.com/zenklav/zenklav/zendesk"
)

// setupService is the env's setup service (the /admin wizard's and `zenklav setup`'s), made
// on first use: the connections store (the one the roles follow, when they do), the
// accounts' admin APIs with each connection's credentials, and the OAuth clients.
func (e *env) setupService(ctx context.Context) (*setup.Service, error) {
	if e.setup != nil {
		return e.setup, nil
	}
	if err := e.cfg.Setup.Validate(); err != nil {
		return nil, err
	}
	svc, err := e.newSetupService(ctx, e.cfg.PublicURL)
	if err != nil {
		return nil, err
	}
	e.setup = svc
	return svc, nil
}

// newSetupService makes a setup service whose webhooks point at publicURL.
func (e *env) newSetupService(ctx context.Context, publicURL string) (*setup.Service, error) {
	store, err := e.sharedStore(ctx)
	if err != nil {
		return nil, err
	}
	return setup.New(e.logger.With("part", "setup"), setup.Config{
		PublicURL: publicURL, Store: store,
		Zendesk: e.zendeskAdmin, Klaviyo: e.klaviyoAdmin,
		ZendeskOAuth: e.zendeskOAuth(), KlaviyoOAuth: e.klaviyoOAuth(), Applied: e.catchUp,
	})
}

// sharedStore is the env's connections store: the one its roles follow, else one opened now.
func (e *env) sharedStore(ctx context.Context) (*connstore.Store, error) {
	if e.connStore != nil {
		return e.connStore, nil
	}
	store, err := e.openStore(ctx, "setup keeps the connections in the connections store, in")
	if err != nil {
		return nil, err
	}
	e.connStore = store
	return store, nil
}

// zendeskAdmin is the admin API of c's Zendesk account, with c's API token or grant. The
// grant's access token is the one c holds: a connection being set up is not stored yet, and
// one being taken down is read from the store, whose token the refresher keeps fresh.
func (e *env) zendeskAdmin(c *zenklav.Connection) (zenklav.ZendeskAdmin, error) {
	cfg := zendesk.ClientConfig{BaseURL: e.cfg.ZendeskURL(c.Zendesk.Subdomain)}
	if t := c.Zendesk.OAuth; t != nil {
		access := t.AccessToken
		cfg.Token = func(context.Context) (string, error) { return access.Reveal(), nil }
	} else {
		cfg.Email, cfg.APIToken = c.Zendesk.Email, c.Zendesk.APIToken.Reveal()
	}
	zc, err := zendesk.NewClient(e.logger, cfg)
	if err != nil {
		return nil, err
	}
	return zc, nil
}

// klaviyoAdmin is the admin API of c's Klaviyo account, with c's private key or grant (as
// zendeskAdmin).
func (e *env) klaviyoAdmin(c *zenklav.Connection) (zenklav.KlaviyoAdmin, error) {
	cfg := klaviyo.ClientConfig{BaseURL: e.cfg.KlaviyoBaseURL}
	if t := c.Klaviyo.OAuth; t != nil {
		access := t.AccessToken
		cfg.Token = func(context.Context) (string, error) { return access.Reveal(), nil }
	} else {
		cfg.PrivateKey = c.Klaviyo.PrivateKey.Reveal()
	}
	kc, err := klaviyo.NewClient(e.logger, cfg)
	if err != nil {
		return nil, err
	}
	return kc, nil
}

// zendeskOAuth is "Connect with Zendesk" with the operator's global OAuth client, for any
// account by its subdomain; nil when no client is configured.
func (e *env) zendeskOAuth() zenklav.OAuthProvider {
	if e.cfg.ZendeskOAuthClientID == "" {
		return nil
	}
	return &zendesk.OAuth{
		ClientID: e.cfg.ZendeskOAuthClientID, ClientSecret: e.cfg.ZendeskOAuthClientSecret,
		// Read at each call: sandbox mode points the API at its simulator after start.
		BaseURL: func(subdomain string) string { return e.cfg.ZendeskURL(subdomain) },
		Logger:  e.logger,
	}
}

// klaviyoOAuth is "Connect with Klaviyo" with zenklav's app; nil when no client is
// configured. The browser approves at ZENKLAV_KLAVIYO_OAUTH_URL, the token calls go to the
// API's address.
func (e *env) klaviyoOAuth() zenklav.OAuthProvider {
	if e.cfg.KlaviyoOAuthClientID == "" {
		return nil
	}
	return &klaviyo.OAuth{
		ClientID: e.cfg.KlaviyoOAuthClientID, ClientSecret: e.cfg.KlaviyoOAuthClientSecret,
		AuthorizeBase: e.cfg.KlaviyoOAuthURL, TokenBase: e.cfg.KlaviyoBaseURL,
	}
}

// refreshEvery is how often, about, a process looks for grants to refresh.
const refreshEvery = time.Minute

// startRefresher keeps the grants of the stored connections fresh while ctx lasts, when the
// connections store is the env's source (setup/refresh.go says how the api processes share
// the work, and why any of them may do it). The env's close waits for it.
func (e *env) startRefresher(ctx context.Context) error {
	if e.connStore == nil {
		return nil // the connections come from a file: nothing to store a refreshed grant in
	}
	svc := e.setup
	if svc == nil {
		// Refreshing makes no webhook: it needs no public URL, which the api role may lack
		// when it serves no wizard.
		var err error
		if svc, err = e.newSetupService(ctx, cmp.Or(e.cfg.PublicURL, "http://localhost")); err != nil {
			return err
		}
	}
	if e.cfg.ZendeskOAuthClientID == "" && e.cfg.KlaviyoOAuthClientID == "" {
		e.logger.Info("no OAuth client is configured: stored grants are not refreshed (a grant expiring is logged)")
	}
	ctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { svc.RunRefresher(ctx, refreshEvery) })
	e.onClose(func() {
		stop()
		wg.Wait()
	})
	return nil
}

// `zenklav setup`: the wizard's steps in a terminal.

const setupUsage = `Usage: zenklav setup [--callback-port PORT]
       zenklav setup --non-interactive -f FILE
       zenklav setup --disconnect ID

Connects a Zendesk account with a Klaviyo account, as the /admin wizard does, in a terminal.
It asks for the connection's id; the Zendesk account, and how to reach it ("Connect with
Zendesk" when ZENKLAV_ZENDESK_OAUTH_CLIENT_ID is set, else an API token); the Klaviyo account
("Connect with Klaviyo" when ZENKLAV_KLAVIYO_OAUTH_CLIENT_ID is set, else a private key); the
brands to sync; the SMS settings. Then it makes what the connection needs in both accounts
(the Zendesk webhook, the SMS automation and view, the Klaviyo webhook) and stores it, its
secrets sealed, in the connections store, where every running process picks it up. Run again
on the same connection, it offers the stored settings as the answers and changes only what
the answers change. Secrets typed are not shown.

"Connect with ..." prints an address to open in a browser; the browser comes back to a
listener of this command on 127.0.0.1 (http://127.0.0.1:PORT/callback: --callback-port fixes
PORT, for an OAuth client that takes registered redirect addresses only).

--non-interactive -f FILE sets up the connection of FILE (JSON or YAML, one connection as in
the connections file; credentials left out keep the stored ones) without a question.
--disconnect ID removes what setup made for the connection (what another connection of the
same Zendesk account uses stays), revokes its grants and removes it from the store.

Needs ZENKLAV_KAFKA_BROKERS, ZENKLAV_SECRETS_KEY and ZENKLAV_PUBLIC_URL.
`

// setupFlags are the flags of `zenklav setup`.
type setupFlags struct {
	file, disconnect string
	nonInteractive   bool
	callbackPort     int
}

func parseSetupFlags(c call) (setupFlags, error) {
	fs := flag.NewFlagSet("setup", flag.ContinueOnError)
	fs.SetOutput(c.stdout)
	fs.Usage = func() { fmt.Fprint(c.stdout, setupUsage); fs.PrintDefaults() }
	var f setupFlags
	fs.StringVar(&f.file, "f", "", "the connection `FILE` (JSON or YAML) that --non-interactive sets up")
	fs.BoolVar(&f.nonInteractive, "non-interactive", false, "ask nothing: set up the connection of -f FILE")
	fs.StringVar(&f.disconnect, "disconnect", "", "take the connection `ID` down: remove what setup made, revoke its grants, remove it")
	fs.IntVar(&f.callbackPort, "callback-port", 0, "the `PORT` on 127.0.0.1 the browser comes back to after \"Connect with ...\"; 0: any free one")
	if err := fs.Parse(c.args); err != nil {
		return f, fmt.Errorf("setup: %w", err)
	}
	switch {
	case fs.NArg() > 0:
		return f, fmt.Errorf("setup: unexpected %q (zenklav setup -h)", fs.Arg(0))
	case f.disconnect != "" && (f.file != "" || f.nonInteractive):
		return f, errors.New("setup: --disconnect ID takes down a stored connection: give it alone")
	case f.nonInteractive != (f.file != ""):
		return f, errors.New("setup: --non-interactive and -f FILE go together: the file holds the answers")
	case f.callbackPort < 0 || f.callbackPort > 65535:
		return f, fmt.Errorf("setup: --callback-port %d is not a port", f.callbackPort)
	}
	return f, nil
}

// setupInput is where `zenklav setup` reads its answers: the terminal, or what a test gives.
var setupInput io.Reader = os.Stdin

// setupTool is `zenklav setup`.
func setupTool(ctx context.Context, e *env, f setupFlags, out io.Writer) error {
	svc, err := e.setupService(ctx)
	if err != nil {
		return err
	}
	if f.disconnect != "" {
		changes, err := svc.Disconnect(ctx, f.disconnect)
		printChanges(out, changes)
		if err != nil {
			return fmt.Errorf("setup --disconnect %s: %w", f.disconnect, err)
		}
		fmt.Fprintf(out, "Connection %s is disconnected.\n", f.disconnect)
		return nil
	}
	var c zenklav.Connection
	if f.nonInteractive {
		if c, err = readConnectionFile(f.file); err != nil {
			return err
		}
		c = keepStored(e.connStore, c)
	} else {
		w := newWizard(e, svc, setupInput, out, f.callbackPort)
		if c, err = w.connection(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "\nSetting up %s in Zendesk and Klaviyo...\n", c.ID)
	done, changes, err := svc.Finish(ctx, c)
	printChanges(out, changes)
	if err != nil {
		return fmt.Errorf("setup %s: %w", c.ID, err)
	}
	base := strings.TrimRight(e.cfg.PublicURL, "/")
	fmt.Fprintf(out, "Connection %s is set up: Zendesk sends its events to %s/webhooks/zendesk/%s", done.ID, base, done.Zendesk.Subdomain)
	if done.SMS.Enabled {
		fmt.Fprintf(out, ", Klaviyo its SMS to %s/webhooks/klaviyo/%s", base, done.ID)
	}
	fmt.Fprintln(out, ".")
	return nil
}

// printChanges lists what setup did, one line each.
func printChanges(out io.Writer, changes []setup.Change) {
	for _, ch := range changes {
		fmt.Fprintf(out, "  %-19s %s\n", ch.Action, ch.What)
	}
}

// readConnectionFile reads one connection, JSON or YAML (by extension), unknown keys refused
// as in the connections file. It is not validated here: Finish checks it, once it has the
// secrets it reads back.
func readConnectionFile(path string) (zenklav.Connection, error) {
	var c zenklav.Connection
	data, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("setup: %w", err)
	}
	if ext := strings.ToLower(filepath.Ext(path)); ext == ".yaml" || ext == ".yml" {
		if data, err = yaml.YAMLToJSON(data); err != nil {
			return c, fmt.Errorf("setup: %s: %w", path, err)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("setup: %s: %w", path, err)
	}
	return c, nil
}

// keepStored fills what a connection file leaves out from the stored connection of its id:
// what setup made there and the Klaviyo webhook's secret (so that a second run changes
// nothing), and the credentials of a side the file gives none for (a grant made in the
// wizard, say, which no file holds).
func keepStored(store *connstore.Store, c zenklav.Connection) zenklav.Connection {
	old, err := store.Get(c.ID)
	if err != nil {
		return c
	}
	o := old.Connection
	if c.Made == (zenklav.Made{}) {
		c.Made = o.Made
		if o.Zendesk.Subdomain != c.Zendesk.Subdomain {
			c.Made.ZendeskWebhook, c.Made.ZendeskAutomation, c.Made.ZendeskView = "", 0, 0 // another account's
		}
	}
	if len(c.Klaviyo.WebhookSecrets) == 0 {
		c.Klaviyo.WebhookSecrets = o.Klaviyo.WebhookSecrets
	}
	if !c.HasZendeskAPI() && o.Zendesk.Subdomain == c.Zendesk.Subdomain {
		c.Zendesk.Email, c.Zendesk.APIToken, c.Zendesk.OAuth = o.Zendesk.Email, o.Zendesk.APIToken, o.Zendesk.OAuth
	}
	if !c.HasKlaviyo() {
		c.Klaviyo.PrivateKey, c.Klaviyo.OAuth = o.Klaviyo.PrivateKey, o.Klaviyo.OAuth
	}
	return c
}

// wizard asks a connection's settings in a terminal.
type wizard struct {
	e   *env
	svc *setup.Service
	in  *bufio.Reader
	// terminal is the descriptor secrets are read from without echo; -1 when the answers
	// do not come from a terminal.
	terminal int
	out      io.Writer
	port     int // of the OAuth callback; 0: any
}

func newWizard(e *env, svc *setup.Service, in io.Reader, out io.Writer, port int) *wizard {
	w := &wizard{e: e, svc: svc, in: bufio.NewReader(in), terminal: -1, out: out, port: port}
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		w.terminal = int(f.Fd())
	}
	return w
}

// maxTries is how often a question is asked again after an answer it cannot take.
const maxTries = 3

// ask asks until check takes the answer (def when the answer is empty); check returns the
// value to keep, or says what is wrong.
func (w *wizard) ask(prompt, def string, check func(string) (string, error)) (string, error) {
	for range maxTries {
		if def != "" {
			fmt.Fprintf(w.out, "%s [%s]: ", prompt, def)
		} else {
			fmt.Fprintf(w.out, "%s: ", prompt)
		}
		answer, err := w.readLine()
		if err != nil {
			return "", fmt.Errorf("setup: no answer to %q: %w", prompt, err)
		}
		v, err := check(cmp.Or(answer, def))
		if err == nil {
			return v, nil
		}
		fmt.Fprintf(w.out, "  %v\n", err)
	}
	return "", fmt.Errorf("setup: no answer to %q that can be used", prompt)
}

// readLine reads one answer; when the answers do not come from a terminal, it ends the
// prompt's line, which no one typed.
func (w *wizard) readLine() (string, error) {
	line, err := w.in.ReadString('\n')
	if err != nil && (err != io.EOF || line == "") {
		if err == io.EOF {
			err = errors.New("the input ended")
		}
		return "", err
	}
	if w.terminal < 0 {
		fmt.Fprintln(w.out)
	}
	return strings.TrimSpace(line), nil
}

// secret asks for a secret, which is neither echoed nor printed; an empty answer keeps old
// when there is one.
func (w *wizard) secret(prompt string, old zenklav.Secret, check func(string) error) (zenklav.Secret, error) {
	hint := "not shown"
	if old != "" {
		hint += "; empty keeps the stored one"
	}
	for range maxTries {
		fmt.Fprintf(w.out, "%s (%s): ", prompt, hint)
		var answer string
		if w.terminal >= 0 {
			b, err := term.ReadPassword(w.terminal)
			fmt.Fprintln(w.out)
			if err != nil {
				return "", fmt.Errorf("setup: %s: %w", prompt, err)
			}
			answer = strings.TrimSpace(string(b))
		} else {
			var err error
			if answer, err = w.readLine(); err != nil {
				return "", fmt.Errorf("setup: no answer to %q: %w", prompt, err)
			}
		}
		if answer == "" && old != "" {
			return old, nil
		}
		if err := check(answer); err != nil {
			fmt.Fprintf(w.out, "  %v\n", err) // the message never quotes the answer
			continue
		}
		return zenklav.Secret(answer), nil
	}
	return "", fmt.Errorf("setup: no answer to %q that can be used", prompt)
}

// choose asks for one of options.
func (w *wizard) choose(prompt string, options []string, def string) (string, error) {
	return w.ask(prompt+" ("+strings.Join(options, "/")+")", def, func(a string) (string, error) {
		if a = strings.ToLower(a); slices.Contains(options, a) {
			return a, nil
		}
		return "", fmt.Errorf("answer one of %s", strings.Join(options, ", "))
	})
}

// yes asks a yes-or-no question.
func (w *wizard) yes(prompt string, def bool) (bool, error) {
	a, err := w.ask(prompt+" (y/n)", map[bool]string{true: "y", false: "n"}[def], func(a string) (string, error) {
		switch strings.ToLower(a) {
		case "y", "yes":
			return "y", nil
		case "n", "no":
			return "n", nil
		}
		return "", errors.New("answer y or n")
	})
	return a == "y", err
}

// connection asks the wizard's steps and returns the connection to finish.
func (w *wizard) connection(ctx context.Context) (zenklav.Connection, error) {
	c, err := w.draft()
	if err != nil {
		return c, err
	}
	if err := w.zendesk(ctx, &c); err != nil {
		return c, err
	}
	if err := w.klaviyo(ctx, &c); err != nil {
		return c, err
	}
	brands, err := w.brands(ctx, &c)
	if err != nil {
		return c, err
	}
	return c, w.sms(&c, brands)
}

var (
	// connectionID and subdomainPattern are what zenklav.Connection.Validate takes.
	connectionID     = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	subdomainPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
)

// draft is the stored connection of the id asked for, whose settings are then the default
// answers, or a new one.
func (w *wizard) draft() (zenklav.Connection, error) {
	id, err := w.ask("Connection id (lowercase letters, digits, - and _)", "", func(a string) (string, error) {
		if !connectionID.MatchString(a) {
			return "", errors.New("an id is 1-63 lowercase letters, digits, - or _, starting with a letter or digit")
		}
		return a, nil
	})
	if err != nil {
		return zenklav.Connection{}, err
	}
	old, err := w.e.connStore.Get(id)
	switch {
	case err == nil:
		fmt.Fprintf(w.out, "Connection %s is stored: its settings are the answers in [brackets], and its secrets stay unless you give others.\n", id)
		return old.Connection, nil
	case zenklav.ErrorCode(err) == zenklav.ENOTFOUND:
		return zenklav.Connection{ID: id, Zendesk: zenklav.ZendeskSettings{Brands: zenklav.Brands{All: true}}}, nil
	}
	return zenklav.Connection{}, err
}

// zendesk asks for the Zendesk account and how zenklav reaches it.
func (w *wizard) zendesk(ctx context.Context, c *zenklav.Connection) error {
	sub, err := w.ask("Zendesk account: its subdomain (the acme of acme.zendesk.com)", c.Zendesk.Subdomain, func(a string) (string, error) {
		a = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(strings.ToLower(a), "https://"), "http://"), "/")
		a = strings.TrimSuffix(a, ".zendesk.com")
		if !subdomainPattern.MatchString(a) {
			return "", errors.New("a subdomain is the acme of acme.zendesk.com: lowercase letters, digits and -")
		}
		return a, nil
	})
	if err != nil {
		return err
	}
	if sub != c.Zendesk.Subdomain {
		// Another account: what was of the old one does not carry over.
		c.Zendesk = zenklav.ZendeskSettings{Subdomain: sub, Brands: zenklav.Brands{All: true}}
		c.Made.ZendeskWebhook, c.Made.ZendeskAutomation, c.Made.ZendeskView = "", 0, 0
	}
	p := w.e.zendeskOAuth()
	how, err := w.way("Zendesk", ways(c.HasZendeskAPI(), p != nil, "token"), "an API token", "ZENKLAV_ZENDESK_OAUTH_CLIENT_ID")
	if err != nil {
		return err
	}
	switch how {
	case "oauth":
		t, err := w.connect(ctx, p, sub, "Zendesk")
		if err != nil {
			return err
		}
		c.Zendesk.OAuth, c.Zendesk.Email, c.Zendesk.APIToken = &t, "", ""
	case "token":
		email, err := w.ask("Email of the Zendesk agent the API token is of", c.Zendesk.Email, func(a string) (string, error) {
			if !strings.Contains(a, "@") {
				return "", errors.New("give the agent's email address")
			}
			return a, nil
		})
		if err != nil {
			return err
		}
		token, err := w.secret("Zendesk API token (Admin Center, Apps and integrations, Zendesk API)", c.Zendesk.APIToken, notEmpty)
		if err != nil {
			return err
		}
		c.Zendesk.OAuth, c.Zendesk.Email, c.Zendesk.APIToken = nil, email, token
	}
	return nil
}

// way asks how to connect vendor, unless there is but one way (its key, named so), which it
// says.
func (w *wizard) way(vendor string, ways []string, key, setting string) (string, error) {
	if len(ways) == 1 {
		fmt.Fprintf(w.out, "%s is connected with %s (with %s set, zenklav offers \"Connect with %s\").\n", vendor, key, setting, vendor)
		return ways[0], nil
	}
	return w.choose("Connect "+vendor+" with", ways, ways[0])
}

// ways are the answers to "connect with": keep (when connected), oauth (when zenklav has an
// OAuth client), and the vendor's key; the first is the default.
func ways(connected, oauth bool, key string) []string {
	var out []string
	if connected {
		out = append(out, "keep")
	}
	if oauth {
		out = append(out, "oauth")
	}
	return append(out, key)
}

func notEmpty(a string) error {
	if a == "" {
		return errors.New("give it, or stop with Ctrl-C")
	}
	return nil
}

// klaviyo asks how zenklav reaches the Klaviyo account.
func (w *wizard) klaviyo(ctx context.Context, c *zenklav.Connection) error {
	p := w.e.klaviyoOAuth()
	how, err := w.way("Klaviyo", ways(c.HasKlaviyo(), p != nil, "key"), "a private key", "ZENKLAV_KLAVIYO_OAUTH_CLIENT_ID")
	if err != nil {
		return err
	}
	switch how {
	case "oauth":
		t, err := w.connect(ctx, p, "", "Klaviyo")
		if err != nil {
			return err
		}
		c.Klaviyo.OAuth, c.Klaviyo.PrivateKey = &t, ""
	case "key":
		key, err := w.secret("Klaviyo private API key (pk_..., Settings, API keys)", c.Klaviyo.PrivateKey, func(a string) error {
			if !strings.HasPrefix(a, "pk_") {
				return errors.New("a private API key starts with pk_")
			}
			return nil
		})
		if err != nil {
			return err
		}
		c.Klaviyo.OAuth, c.Klaviyo.PrivateKey = nil, key
	}
	return nil
}

// brands lists the account's brands and asks which the connection syncs; it returns them.
func (w *wizard) brands(ctx context.Context, c *zenklav.Connection) ([]zenklav.Brand, error) {
	brands, err := w.svc.Brands(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("setup: read the brands of %s: %w", c.Zendesk.Subdomain, err)
	}
	fmt.Fprintf(w.out, "The brands of %s:\n", c.Zendesk.Subdomain)
	for _, b := range brands {
		note := ""
		if b.Default {
			note += " (default)"
		}
		if !b.Active {
			note += " (inactive)"
		}
		fmt.Fprintf(w.out, "  %-14d %s%s\n", b.ID, b.Name, note)
	}
	def := "all"
	if !c.Zendesk.Brands.All && len(c.Zendesk.Brands.IDs) > 0 {
		def = joinIDs(c.Zendesk.Brands.IDs)
	}
	a, err := w.ask("Brands whose tickets go to Klaviyo: all, or brand ids separated by commas", def, func(a string) (string, error) {
		if strings.EqualFold(a, "all") {
			return "all", nil
		}
		_, err := brandIDs(a, brands)
		return a, err
	})
	if err != nil {
		return nil, err
	}
	c.Zendesk.Brands = zenklav.Brands{All: true}
	if a != "all" {
		ids, _ := brandIDs(a, brands)
		c.Zendesk.Brands = zenklav.Brands{IDs: ids}
	}
	return brands, nil
}

// brandIDs reads "1, 2" as ids of the listed brands.
func brandIDs(a string, brands []zenklav.Brand) ([]int64, error) {
	var ids []int64
	for f := range strings.SplitSeq(a, ",") {
		id, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		if err != nil || !slices.ContainsFunc(brands, func(b zenklav.Brand) bool { return b.ID == id }) {
			return nil, fmt.Errorf("%q is not the id of a brand above", strings.TrimSpace(f))
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func joinIDs(ids []int64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatInt(id, 10)
	}
	return strings.Join(s, ",")
}

// sms asks for the SMS settings.
func (w *wizard) sms(c *zenklav.Connection, brands []zenklav.Brand) error {
	on, err := w.yes("Sync SMS conversations (customers' texts become Zendesk tickets, agents' replies go back by SMS)", c.SMS.Enabled)
	if err != nil || !on {
		c.SMS.Enabled, c.SMS.CloseSolved, c.SMS.View = false, false, false
		return err
	}
	fresh := !c.SMS.Enabled // first time on: the guide's options are the defaults
	brand, err := w.ask("Brand of the SMS tickets (a brand id above; 0: the account's default)", strconv.FormatInt(c.SMS.Brand, 10), func(a string) (string, error) {
		if a == "0" {
			return a, nil
		}
		_, err := brandIDs(a, brands)
		return a, err
	})
	if err != nil {
		return err
	}
	c.SMS.Enabled = true
	c.SMS.Brand, _ = strconv.ParseInt(brand, 10, 64)
	if c.SMS.Keywords.Ignore, err = w.keywords("Texts that open no ticket (subscribe words, automation triggers), comma-separated",
		c.SMS.Keywords.Ignore, zenklav.DefaultIgnoreKeywords); err != nil {
		return err
	}
	if c.SMS.Keywords.Create, err = w.keywords("Keywords that do open a ticket, comma-separated", c.SMS.Keywords.Create, zenklav.DefaultCreateKeywords); err != nil {
		return err
	}
	if c.SMS.CloseSolved, err = w.yes("Close solved SMS tickets after 24 hours (a later text then opens a follow-up)", fresh || c.SMS.CloseSolved); err != nil {
		return err
	}
	c.SMS.View, err = w.yes("Make a Zendesk view of the open SMS tickets", fresh || c.SMS.View)
	return err
}

// keywords asks for a keyword list; the defaults, given back, stay nil, so that they follow
// zenklav's defaults.
func (w *wizard) keywords(prompt string, current, defaults []string) ([]string, error) {
	if current == nil {
		current = defaults
	}
	a, err := w.ask(prompt, strings.Join(current, ","), func(a string) (string, error) { return a, nil })
	if err != nil {
		return nil, err
	}
	var words []string
	for f := range strings.SplitSeq(a, ",") {
		if f = strings.TrimSpace(f); f != "" {
			words = append(words, f)
		}
	}
	if slices.EqualFunc(words, defaults, strings.EqualFold) {
		return nil, nil
	}
	return words, nil
}

// oauthWait bounds the wait for the browser to come back from a consent page.
const oauthWait = 10 * time.Minute

// connect runs "Connect with vendor": the authorization code flow with PKCE, the browser
// sent back to a listener of this command on 127.0.0.1, the state checked, the code
// exchanged.
func (w *wizard) connect(ctx context.Context, p zenklav.OAuthProvider, account, vendor string) (zenklav.OAuthToken, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(w.port)))
	if err != nil {
		return zenklav.OAuthToken{}, fmt.Errorf("setup: listen for the browser's return from %s: %w", vendor, err)
	}
	defer ln.Close()
	redirect := "http://" + ln.Addr().String() + "/callback"
	verifier, state := oauth2.GenerateVerifier(), oauth2.GenerateVerifier()
	authorize := p.AuthorizeURL(account, redirect, state, oauth2.S256ChallengeFromVerifier(verifier))
	if authorize == "" {
		return zenklav.OAuthToken{}, fmt.Errorf("setup: %s cannot be connected with OAuth for %q", vendor, account)
	}
	fmt.Fprintf(w.out, "Open this address in a browser, and allow zenklav (waiting %s):\n\n  %s\n\n", oauthWait, authorize)
	ctx, cancel := context.WithTimeout(ctx, oauthWait)
	defer cancel()
	code, err := awaitCode(ctx, ln, state, vendor)
	if err != nil {
		return zenklav.OAuthToken{}, err
	}
	t, err := p.Exchange(ctx, account, code, verifier, redirect)
	if err != nil {
		return zenklav.OAuthToken{}, fmt.Errorf("setup: connect %s: %w", vendor, err)
	}
	fmt.Fprintf(w.out, "%s is connected.\n", vendor)
	return t, nil
}

// awaitCode serves /callback on ln until the browser comes back with state and a code (or
// the vendor's refusal), or ctx ends. A request with another state is refused and the wait
// goes on: the port is open to anything on this machine.
func awaitCode(ctx context.Context, ln net.Listener, state, vendor string) (string, error) {
	type result struct {
		code string
		err  error
	}
	results := make(chan result, 1)
	var once sync.Once
	mux := http.NewServeMux()
	mux.HandleFunc("GET /callback", func(rw http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1 {
			http.Error(rw, "zenklav: this is not the answer to the request zenklav setup made", http.StatusBadRequest)
			return
		}
		res := result{code: q.Get("code")}
		page := "zenklav: " + vendor + " is connected. Go back to the terminal; this page may be closed."
		if res.code == "" {
			res.err = fmt.Errorf("setup: %s did not connect: %s", vendor, cmp.Or(q.Get("error"), "no code"))
			page = "zenklav: " + vendor + " was not connected (" + cmp.Or(q.Get("error"), "no code") + "). Go back to the terminal."
		}
		once.Do(func() { results <- res })
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(rw, page)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown below
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	select {
	case res := <-results:
		return res.code, res.err
	case <-ctx.Done():
		return "", fmt.Errorf("setup: %s did not send the browser back: %w", vendor, ctx.Err())
	}
}
