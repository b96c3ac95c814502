package zendesktest

import (
	"cmp"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"embed"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/zenklav/zenklav/zendesk"
)

// The agent pages play Zendesk's agent workspace for a ticket-sidebar app:
//
//	GET /agent/              the stored tickets, with links to their pages
//	GET /agent/tickets/{id}  a ticket view with the installed app in its sidebar
//	GET /agent/assets/…      the pages' stylesheet and zaf-host.js
//
// They are what an agent's browser loads, not the API: no Basic auth, no rate limit, no
// OpenAPI validation. The ticket page loads the app the way Zendesk does for an app with
// signedUrls: a form POSTs a ZAF JWT, signed RS256 with the installation's private key, to
// the app's URL in an iframe; zaf-host.js then answers the app's ZAF SDK over postMessage.

// AppInstallation is the ticket-sidebar app installed on the simulated account.
type AppInstallation struct {
	Subdomain      string // the account's subdomain: iss is "{Subdomain}.zendesk.com"
	InstallationID int64  // the installation id in aud
	// URL is the app's ticket_sidebar URL, e.g. "http://127.0.0.1:8080/app/sidebar"; it may
	// be empty at first and set later with SetAppURL.
	URL string
	// Key signs the app tokens; nil generates a 2048-bit key.
	Key *rsa.PrivateKey
	// IdentityClaims adds the agent ("user": {id, email}) and the ticket ("ticket": {id}) to
	// the app tokens. Zendesk documents only iss, aud, exp, iat and context, so by default
	// the simulator sends those alone, and zenklav must not depend on more.
	IdentityClaims bool
}

// installedApp is an AppInstallation with the parts derived from it.
type installedApp struct {
	AppInstallation
	publicKeyPEM string
}

// simulatedAppID is the appId the simulator reports in the app's metadata; the installation
// id is the one that matters to zenklav.
const simulatedAppID int64 = 1048576

// appTokenTTL is how long the simulator's app tokens live. Zendesk's are short-lived; five
// minutes is what its examples show.
const appTokenTTL = 5 * time.Minute

// minAppKeyBits is the smallest signing key InstallApp takes: Zendesk's app keys are 2048-bit
// RSA keys.
const minAppKeyBits = 2048

var subdomainPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// InstallApp installs the sidebar app on the simulated account, replacing any app installed
// before. The agent pages then load it with tokens signed by cfg.Key.
func (s *Server) InstallApp(cfg AppInstallation) error {
	if !subdomainPattern.MatchString(cfg.Subdomain) {
		return fmt.Errorf("install app: subdomain %q is not a Zendesk subdomain (lowercase letters, digits and hyphens)", cfg.Subdomain)
	}
	if cfg.InstallationID <= 0 {
		return fmt.Errorf("install app: installation id must be positive, got %d", cfg.InstallationID)
	}
	if cfg.URL != "" {
		if err := checkAppURL(cfg.URL); err != nil {
			return fmt.Errorf("install app: %w", err)
		}
	}
	if cfg.Key == nil {
		key, err := rsa.GenerateKey(rand.Reader, minAppKeyBits)
		if err != nil {
			return fmt.Errorf("install app: generate key: %w", err)
		}
		cfg.Key = key
	}
	if bits := cfg.Key.N.BitLen(); bits < minAppKeyBits {
		return fmt.Errorf("install app: key is %d bits, want at least %d", bits, minAppKeyBits)
	}
	if err := cfg.Key.Validate(); err != nil {
		return fmt.Errorf("install app: key: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(&cfg.Key.PublicKey)
	if err != nil {
		return fmt.Errorf("install app: encode public key: %w", err)
	}
	app := &installedApp{
		AppInstallation: cfg,
		publicKeyPEM:    string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.app = app
	return nil
}

// SetAppURL sets the installed app's ticket_sidebar URL. Sandbox mode knows zenklav's
// address only once it listens, after it installed the app.
func (s *Server) SetAppURL(appURL string) error {
	if err := checkAppURL(appURL); err != nil {
		return fmt.Errorf("set app url: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.app == nil {
		return errors.New("set app url: no app is installed (InstallApp)")
	}
	app := *s.app
	app.URL = appURL
	s.app = &app
	return nil
}

// AppPublicKeyPEM returns the installed app's public key as a PEM "PUBLIC KEY" block: what
// an operator pastes into zenklav's connections file as zendesk.app.public_key. It is ""
// when no app is installed.
func (s *Server) AppPublicKeyPEM() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.app == nil {
		return ""
	}
	return s.app.publicKeyPEM
}

func checkAppURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("app url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("app url %q must be an absolute http(s) URL without user or fragment", raw)
	}
	return nil
}

// aud is the audience of the installation's tokens: its API URL.
func (a *installedApp) aud() string {
	return fmt.Sprintf("https://%s.zendesk.com/api/v2/apps/installations/%d.json", a.Subdomain, a.InstallationID)
}

// origin is the scheme, host and port of the app's URL, the only origin its iframe may
// post from or be posted to.
func (a *installedApp) origin() string {
	u, _ := url.Parse(a.URL) // checked by InstallApp and SetAppURL
	return u.Scheme + "://" + u.Host
}

// zenklavURL is the app's zenklav_url setting: the manifest's URL is
// "{{setting.zenklav_url}}/app/sidebar", so it is the URL without that suffix.
func (a *installedApp) zenklavURL() string {
	if base, ok := strings.CutSuffix(a.URL, "/app/sidebar"); ok {
		return base
	}
	return a.origin()
}

//go:embed agent
var agentFiles embed.FS

var agentTemplates = template.Must(template.ParseFS(agentFiles, "agent/*.html"))

// agentAssets serves agent/assets.
var agentAssets = func() http.Handler {
	sub, err := fs.Sub(agentFiles, "agent/assets")
	if err != nil {
		panic("zendesktest: " + err.Error()) // a constant path into the embedded files
	}
	return http.StripPrefix("/agent/assets/", http.FileServerFS(sub))
}()

// agentCSP keeps the simulator's own pages to their own script and stylesheet, while the
// sidebar may load any http(s) app.
const agentCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"frame-src http: https:; form-action http: https:; base-uri 'none'; frame-ancestors 'none'"

// serveAgent answers the paths under /agent/.
func (s *Server) serveAgent(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if rest, ok := strings.CutPrefix(path, "/agent/tickets/"); ok && strings.Contains(rest, "/") || path == "/agent/tickets.json" {
		s.serveConversation(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the agent pages answer GET", http.StatusMethodNotAllowed)
		return
	}
	switch {
	case path == "/agent":
		http.Redirect(w, r, "/agent/", http.StatusFound)
	case path == "/agent/":
		s.agentIndex(w, r)
	case strings.HasPrefix(path, "/agent/assets/"):
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		agentAssets.ServeHTTP(w, r)
	case strings.HasPrefix(path, "/agent/tickets/"):
		id, err := strconv.ParseInt(strings.TrimPrefix(path, "/agent/tickets/"), 10, 64)
		if err != nil || id <= 0 {
			renderAgent(w, http.StatusNotFound, "error.html", errorPage{Title: "Not found", Message: fmt.Sprintf("%s is not a ticket page: use /agent/tickets/{id}.", path)})
			return
		}
		s.agentTicket(w, r, id)
	default:
		renderAgent(w, http.StatusNotFound, "error.html", errorPage{Title: "Not found", Message: fmt.Sprintf("The simulator has no page %s.", path)})
	}
}

type errorPage struct {
	Title   string
	Message string
}

// indexPage is the data of index.html.
type indexPage struct {
	Subdomain string
	AppURL    string
	PublicKey string
	Installed bool
	Tickets   []indexTicket
}

type indexTicket struct {
	ID        int64  `json:"id"`
	Subject   string `json:"subject"`
	Status    string `json:"status"`
	Requester string `json:"requester"`
	SMS       bool   `json:"sms"` // opened from a text: tagged sms, or via sms
}

func (s *Server) agentIndex(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	page := indexPage{}
	if s.app != nil {
		page.Installed, page.Subdomain, page.AppURL, page.PublicKey = true, s.app.Subdomain, s.app.URL, s.app.publicKeyPEM
	}
	s.mu.Unlock()
	page.Tickets = s.indexTickets()
	renderAgent(w, http.StatusOK, "index.html", page)
}

// ticketPage is the data of ticket.html.
type ticketPage struct {
	Ticket    zendesk.Ticket
	Requester *zendesk.User // nil when the ticket's requester is not stored
	// Conversation is the ticket's comments and the agent who replies on the page.
	Conversation conversation
	IsNew        bool
	Locale       string
	Theme        string
	Links        []pageLink // the same ticket in the other theme, locale and state
	Subdomain    string
	NoApp        string // why the sidebar is empty; "" when the app loads
	Action       string // the form's action: the app URL with origin, app_guid and colorScheme
	Token        string
	Host         hostConfig // what zaf-host.js reads
}

type pageLink struct {
	Label string
	URL   string
}

// hostConfig is what zaf-host.js needs: the app's origin and guid, what it answers to
// app.registered, and the data it answers get requests from.
type hostConfig struct {
	AppOrigin   string         `json:"appOrigin,omitempty"`
	AppGUID     string         `json:"appGuid,omitempty"`
	ColorScheme string         `json:"colorScheme"`
	Metadata    map[string]any `json:"metadata,omitempty"`
	Context     map[string]any `json:"context,omitempty"`
	Data        map[string]any `json:"data"`
}

var localePattern = regexp.MustCompile(`^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$`)

// agentTicket answers GET /agent/tickets/{id}. Query parameters:
//
//	locale  the agent's locale (currentUser.locale), default en-US
//	theme   light (default) or dark: the page's colours and ZAF's colorScheme
//	new     1: the ticket is new and unsaved (ticket.id null, no ticket in the token)
//	user    the id of the agent viewing; default the stored agent or admin with the lowest id
func (s *Server) agentTicket(w http.ResponseWriter, r *http.Request, id int64) {
	q := r.URL.Query()
	view, problems := parseTicketView(q)
	if len(problems) > 0 {
		renderAgent(w, http.StatusBadRequest, "error.html", errorPage{Title: "Bad request", Message: strings.Join(problems, "; ") + "."})
		return
	}

	s.mu.Lock()
	rec, ok := s.ticketRecords(id)
	agent, hasAgent := s.viewer(view.viewer)
	var app *installedApp
	if s.app != nil {
		a := *s.app
		app = &a
	}
	s.mu.Unlock()

	if !ok {
		renderAgent(w, http.StatusNotFound, "error.html", errorPage{Title: "Ticket not found", Message: fmt.Sprintf("The simulated account has no ticket %d.", id)})
		return
	}
	if view.viewer != 0 && !hasAgent {
		renderAgent(w, http.StatusBadRequest, "error.html", errorPage{Title: "Bad request", Message: fmt.Sprintf("User %d is not a stored agent or admin.", view.viewer)})
		return
	}
	if !hasAgent {
		agent = fallbackAgent
	}

	page := ticketPage{
		Ticket:    rec.ticket,
		Requester: rec.requester,
		IsNew:     view.isNew,
		Locale:    view.locale,
		Theme:     view.theme,
		Links:     ticketLinks(id, q, view.isNew),
		Host:      hostConfig{ColorScheme: view.theme},
	}
	page.Host.Data = map[string]any{
		"ticket":      zafTicket(rec, view.isNew),
		"currentUser": zafUser(agent, view.locale),
		"colorScheme": view.theme,
	}
	page.Conversation = s.conversation(id, agent)
	if err := s.fillSidebar(&page, app, agent, baseURL(r)); err != nil {
		renderAgent(w, http.StatusInternalServerError, "error.html", errorPage{Title: "Simulator error", Message: err.Error()})
		return
	}
	renderAgent(w, http.StatusOK, "ticket.html", page)
}

// ticketView is how the query of a ticket page asks to show the ticket.
type ticketView struct {
	locale string
	theme  string
	isNew  bool
	viewer int64 // the user parameter; 0 when absent
}

// parseTicketView reads the query parameters of a ticket page. It gives every problem
// with them, not just the first, so that one bad request names all that is wrong.
func parseTicketView(q url.Values) (ticketView, []string) {
	view := ticketView{
		locale: cmp.Or(q.Get("locale"), "en-US"),
		theme:  cmp.Or(q.Get("theme"), "light"),
		isNew:  q.Get("new") == "1" || q.Get("new") == "true",
	}
	var problems []string
	if !localePattern.MatchString(view.locale) {
		problems = append(problems, fmt.Sprintf("locale %q is not a locale such as en-US or es", view.locale))
	}
	if view.theme != "light" && view.theme != "dark" {
		problems = append(problems, fmt.Sprintf("theme %q is neither light nor dark", view.theme))
	}
	if v := q.Get("new"); v != "" && v != "0" && v != "1" && v != "false" && v != "true" {
		problems = append(problems, fmt.Sprintf("new %q is neither 1 nor 0", v))
	}
	if v := q.Get("user"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			problems = append(problems, fmt.Sprintf("user %q is not a user id", v))
		}
		view.viewer = n
	}
	return view, problems
}

// fillSidebar fills in the sidebar of page, whose ticket, theme and host data are set:
// why it is empty when there is no app or it has no URL, or else the signed token and
// form action that load the app in its iframe and what zaf-host.js answers it with. app
// is a copy of the installed app, or nil; origin is the simulator's own, which the app's
// ZAF SDK posts to.
func (s *Server) fillSidebar(page *ticketPage, app *installedApp, agent zendesk.User, origin string) error {
	switch {
	case app == nil:
		page.NoApp = "No app is installed on this simulated account, so the sidebar is empty. (zendesktest: InstallApp.)"
	case app.URL == "":
		page.Subdomain = app.Subdomain
		page.NoApp = "The app is installed but has no URL yet, so the sidebar is empty. (zendesktest: SetAppURL.)"
	default:
		page.Subdomain = app.Subdomain
		page.Host.Data["currentAccount"] = map[string]any{"subdomain": app.Subdomain}
		guid, err := newGUID()
		if err != nil {
			return err
		}
		token, err := s.appToken(app, agent, page.Ticket.ID, page.IsNew)
		if err != nil {
			return err
		}
		page.Token = token
		page.Action = appAction(app.URL, origin, guid, page.Theme)
		var ticketID any
		if !page.IsNew {
			ticketID = page.Ticket.ID
		}
		page.Host.AppOrigin = app.origin()
		page.Host.AppGUID = guid
		page.Host.Metadata = map[string]any{
			"appId":          simulatedAppID,
			"installationId": app.InstallationID,
			"name":           "zenklav",
			"version":        "1.0.0",
			"settings":       map[string]any{"title": "zenklav", "zenklav_url": app.zenklavURL()},
		}
		page.Host.Context = map[string]any{
			"product":      "support",
			"location":     "ticket_sidebar",
			"ticketId":     ticketID,
			"instanceGuid": guid,
			"account":      map[string]any{"subdomain": app.Subdomain},
		}
	}
	return nil
}

// ticketLinks are links to the ticket page with one of its parameters switched: to the
// dark theme and back, to Spanish and back, to a new ticket and back.
func ticketLinks(id int64, q url.Values, isNew bool) []pageLink {
	toggle := func(key, on string, isOn bool, labelOn, labelOff string) pageLink {
		v := url.Values{}
		for k, vs := range q {
			v[k] = slices.Clone(vs)
		}
		label := labelOn
		if isOn {
			v.Del(key)
			label = labelOff
		} else {
			v.Set(key, on)
		}
		u := fmt.Sprintf("/agent/tickets/%d", id)
		if len(v) > 0 {
			u += "?" + v.Encode()
		}
		return pageLink{Label: label, URL: u}
	}
	return []pageLink{
		toggle("theme", "dark", q.Get("theme") == "dark", "Dark theme", "Light theme"),
		toggle("locale", "es", q.Get("locale") == "es", "Español", "English"),
		toggle("new", "1", isNew, "As a new ticket", "As the saved ticket"),
	}
}

// fallbackAgent views tickets when the account has no agent: the API user.
var fallbackAgent = zendesk.User{ID: APIUserID, Name: "Simulated Agent", Email: DefaultEmail, Role: "admin"}

// viewer returns the agent viewing the page: the stored agent or admin id, or, for id 0,
// the one with the lowest id. The caller holds s.mu.
func (s *Server) viewer(id int64) (zendesk.User, bool) {
	if id != 0 {
		u, ok := s.users[id]
		return u, ok && (u.Role == "agent" || u.Role == "admin")
	}
	var best zendesk.User
	for _, u := range s.users {
		if (u.Role == "agent" || u.Role == "admin") && (best.ID == 0 || u.ID < best.ID) {
			best = u
		}
	}
	return best, best.ID != 0
}

// ticketRecords are a stored ticket and the records it refers to; nil where it refers to
// none or to one that is not stored.
type ticketRecords struct {
	ticket       zendesk.Ticket
	requester    *zendesk.User
	assignee     *zendesk.User
	group        *zendesk.Group
	brand        *zendesk.Brand
	brandDefault bool
}

// ticketRecords returns ticket id with its records. A ticket that names no stored brand
// gets the account's default brand, as every Zendesk ticket has a brand; the default is
// the brand with the lowest id, as in listBrands. The caller holds s.mu.
func (s *Server) ticketRecords(id int64) (ticketRecords, bool) {
	t, ok := s.tickets[id]
	if !ok {
		return ticketRecords{}, false
	}
	rec := ticketRecords{ticket: cloneTicket(t)}
	if u, ok := s.users[t.RequesterID]; ok {
		rec.requester = &u
	}
	if u, ok := s.users[t.AssigneeID]; ok {
		rec.assignee = &u
	}
	if g, ok := s.groups[t.GroupID]; ok {
		rec.group = &g
	}
	var def zendesk.Brand
	for _, b := range s.brands {
		if def.ID == 0 || b.ID < def.ID {
			def = b
		}
	}
	if b, ok := s.brands[t.BrandID]; ok {
		rec.brand, rec.brandDefault = &b, b.ID == def.ID
	} else if def.ID != 0 {
		rec.brand, rec.brandDefault = &def, true
	}
	return rec, true
}

// appToken signs the ZAF JWT Zendesk posts to a signed URL.
func (s *Server) appToken(app *installedApp, agent zendesk.User, ticketID int64, isNew bool) (string, error) {
	now := s.clock()
	jti, err := newGUID()
	if err != nil {
		return "", err
	}
	claims := jwt.MapClaims{
		"iss":     app.Subdomain + ".zendesk.com",
		"aud":     app.aud(),
		"iat":     now.Unix(),
		"exp":     now.Add(appTokenTTL).Unix(),
		"jti":     jti,
		"context": map[string]any{"product": "support", "location": "ticket_sidebar"},
	}
	if app.IdentityClaims {
		claims["user"] = map[string]any{"id": agent.ID, "email": agent.Email}
		if !isNew {
			claims["ticket"] = map[string]any{"id": ticketID}
		}
	}
	token, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(app.Key)
	if err != nil {
		return "", fmt.Errorf("sign app token: %w", err)
	}
	return token, nil
}

// appAction is the URL the form posts the token to: the app's URL with the query Zendesk
// adds for the ZAF SDK (origin and app_guid, which ZAFClient.init reads) and for dark mode
// (colorScheme).
func appAction(appURL, origin, guid, colorScheme string) string {
	sep := "?"
	if strings.Contains(appURL, "?") {
		sep = "&"
	}
	return appURL + sep + "origin=" + url.QueryEscape(origin) + "&app_guid=" + url.QueryEscape(guid) + "&colorScheme=" + url.QueryEscape(colorScheme)
}

// newGUID returns a random (version 4) UUID.
func newGUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random guid: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

// The zaf* functions write records as the ZAF SDK's get answers them: camelCase, ids as
// numbers, absent values as null.

func zafTicket(rec ticketRecords, isNew bool) map[string]any {
	t := rec.ticket
	var id, requester, brand, assignee, group any
	if !isNew {
		id = t.ID
	}
	if rec.requester != nil {
		requester = zafUser(*rec.requester, "en-US")
	}
	if b := rec.brand; b != nil {
		brand = map[string]any{
			"id":            b.ID,
			"name":          b.Name,
			"subdomain":     b.Subdomain,
			"url":           b.BrandURL,
			"isActive":      b.Active,
			"isDefault":     rec.brandDefault,
			"hasHelpCenter": false,
			"logo":          nil,
		}
	}
	if rec.assignee != nil {
		assignee = zafUser(*rec.assignee, "en-US")
	}
	if g := rec.group; g != nil {
		group = map[string]any{"id": g.ID, "name": g.Name}
	}
	tags := slices.Clone(t.Tags)
	if tags == nil {
		tags = []string{}
	}
	m := map[string]any{
		"id":          id,
		"isNew":       isNew,
		"subject":     t.Subject,
		"description": t.Description,
		"status":      t.Status,
		"priority":    emptyNull(t.Priority),
		"type":        emptyNull(t.Type),
		"tags":        tags,
		"requester":   requester,
		"brand":       brand,
		"assignee":    map[string]any{"user": assignee, "group": group},
		"via":         map[string]any{"channel": t.Via.Channel},
		"createdAt":   stamp(t.CreatedAt),
		"updatedAt":   stamp(t.UpdatedAt),
	}
	for _, f := range t.CustomFields {
		m[fmt.Sprintf("customField:custom_field_%d", f.ID)] = f.Value
	}
	return m
}

// zafUser is ZAF's user object. It has no phone field: a user's phone numbers are among its
// identities, of type "phone_number".
func zafUser(u zendesk.User, locale string) map[string]any {
	identities := []any{}
	identity := func(n int64, typ, value string) {
		identities = append(identities, map[string]any{
			"id":                 u.ID*10 + n,
			"userId":             u.ID,
			"type":               typ,
			"value":              value,
			"verified":           true,
			"primary":            true,
			"undeliverableCount": 0,
			"deliverableState":   "deliverable",
		})
	}
	if u.Email != "" {
		identity(1, "email", u.Email)
	}
	if u.Phone != "" {
		identity(2, "phone_number", u.Phone)
	}
	return map[string]any{
		"id":            u.ID,
		"name":          u.Name,
		"email":         emptyNull(u.Email),
		"role":          cmp.Or(u.Role, "end-user"),
		"locale":        locale,
		"avatarUrl":     nil,
		"externalId":    nil,
		"alias":         "",
		"details":       "",
		"notes":         "",
		"signature":     "",
		"tags":          []string{},
		"groups":        []any{},
		"organizations": []any{},
		"identities":    identities,
		"timeZone": map[string]any{
			"name":            "Eastern Time (US & Canada)",
			"translatedName":  "Eastern Time (US & Canada)",
			"ianaName":        "America/New_York",
			"offset":          -300,
			"formattedOffset": "GMT-05:00",
		},
	}
}

func emptyNull(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// renderAgent writes one of the agent templates, with the headers all agent pages share.
func renderAgent(w http.ResponseWriter, status int, name string, data any) {
	var b strings.Builder
	if err := agentTemplates.ExecuteTemplate(&b, name, data); err != nil {
		http.Error(w, "zendesktest: render "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", agentCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprint(w, b.String())
}
