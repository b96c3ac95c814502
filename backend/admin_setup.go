package backend

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/oauth2"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/connstatus"
	"github.com/zenklav/zenklav/connstore"
)

// wizard is the connection in progress, as its sealed cookie holds it between steps.
type wizard struct {
	Connection zenklav.Connection `json:"-"`
	Editing    bool               `json:"editing,omitempty"`
	Pending    *pendingGrant      `json:"pending,omitempty"`
}

// pendingGrant is a trip to a vendor's consent page: the state it must come back with (bound
// to this session by the sealed cookie), the PKCE verifier, and until when.
type pendingGrant struct {
	Vendor   string    `json:"vendor"`
	State    string    `json:"state"`
	Verifier string    `json:"verifier"`
	Until    time.Time `json:"until"`
}

// wizardCookie is a wizard as sealed: the connection (whose own encoding writes no secret)
// and its secrets by field.
type wizardCookie struct {
	wizard
	Connection json.RawMessage   `json:"connection"`
	Secrets    map[string]string `json:"secrets,omitempty"`
}

// loadWizard reads the session's wizard; nil when it has none (or it cannot be opened: a
// cookie of another session or key is as good as none).
func (a *admin) loadWizard(c *gin.Context, session string) *wizard {
	raw, err := c.Cookie(draftCookie)
	if err != nil || raw == "" {
		return nil
	}
	opened, err := a.Keys.Open(raw, "admin-setup/"+session)
	if err != nil {
		return nil
	}
	var wc wizardCookie
	if json.Unmarshal([]byte(opened.Reveal()), &wc) != nil || json.Unmarshal(wc.Connection, &wc.wizard.Connection) != nil {
		return nil
	}
	w := wc.wizard
	w.Connection.EachSecret(func(field string, s *zenklav.Secret) { *s = zenklav.Secret(wc.Secrets[field]) })
	return &w
}

// saveWizard seals the wizard into its cookie, bound to the session.
func (a *admin) saveWizard(c *gin.Context, session string, w *wizard) error {
	wc := wizardCookie{wizard: *w, Secrets: map[string]string{}}
	var err error
	if wc.Connection, err = json.Marshal(w.Connection); err != nil {
		return err
	}
	w.Connection.EachSecret(func(field string, s *zenklav.Secret) {
		if *s != "" {
			wc.Secrets[field] = s.Reveal()
		}
	})
	b, err := json.Marshal(wc)
	if err != nil {
		return err
	}
	sealed, err := a.Keys.Seal(zenklav.Secret(b), "admin-setup/"+session)
	if err != nil {
		return err
	}
	a.setCookie(c, draftCookie, sealed, int((2 * time.Hour).Seconds()))
	return nil
}

// step runs a wizard step on the session's wizard (a fresh one when it has none), saves it,
// and shows the wizard again unless the step answered itself.
func (a *admin) step(f func(*gin.Context, *wizard)) gin.HandlerFunc {
	return func(c *gin.Context) {
		session := c.GetString("session")
		w := a.loadWizard(c, session)
		if w == nil {
			w = &wizard{}
		}
		f(c, w)
		if c.Writer.Written() || c.IsAborted() {
			return // the step answered itself (a page, or a redirect it chose)
		}
		if err := a.saveWizard(c, session, w); err != nil {
			_ = c.Error(err)
			return
		}
		c.Redirect(http.StatusSeeOther, "/admin/setup")
	}
}

// fail shows the wizard again with what went wrong, changing nothing.
func (a *admin) fail(c *gin.Context, w *wizard, status int, msg string) {
	a.showWizard(c, c.GetString("session"), w, status, msg)
}

// wizard shows the wizard; ?edit=ID starts it on a stored connection.
func (a *admin) wizard(c *gin.Context) {
	session := c.GetString("session")
	if id := c.Query("edit"); id != "" {
		e, err := a.Setup.Connection(id)
		if err != nil {
			a.list(c, session, pageStatus(err), page{Error: zenklav.ErrorMessage(err)})
			return
		}
		w := &wizard{Connection: e.Connection, Editing: true}
		if err := a.saveWizard(c, session, w); err != nil {
			_ = c.Error(err)
			return
		}
		c.Redirect(http.StatusSeeOther, "/admin/setup")
		return
	}
	w := a.loadWizard(c, session)
	if w == nil {
		w = &wizard{}
	}
	a.showWizard(c, session, w, http.StatusOK, "")
}

// showWizard renders the wizard of w. Forms may go to the vendors' consent pages.
func (a *admin) showWizard(c *gin.Context, session string, w *wizard, status int, msg string) {
	v := a.viewOf(c, w)
	var formTo []string
	for _, p := range []zenklav.OAuthProvider{a.ZendeskOAuth, a.KlaviyoOAuth} {
		if p != nil && w.Connection.Zendesk.Subdomain != "" {
			if u, err := url.Parse(p.AuthorizeURL(w.Connection.Zendesk.Subdomain, "", "", "")); err == nil {
				formTo = append(formTo, u.Scheme+"://"+u.Host)
			}
		}
	}
	a.render(c, status, "setup.html", page{Title: "Set up a connection", CSRF: csrf(session), Error: msg, Draft: v,
		Notice: c.Query("notice")}, formTo...)
}

// start begins a new connection: its name and Zendesk account.
func (a *admin) start(c *gin.Context, w *wizard) {
	sub, err := subdomainOf(c.PostForm("zendesk_url"))
	if err != nil {
		a.fail(c, w, http.StatusBadRequest, err.Error())
		return
	}
	id := strings.TrimSpace(c.PostForm("id"))
	if _, err := a.Setup.Connection(id); err == nil {
		a.fail(c, w, http.StatusConflict, fmt.Sprintf("There is a connection %q already: change it from the list, or choose another name.", id))
		return
	}
	probe := zenklav.Connection{ID: id, Zendesk: zenklav.ZendeskSettings{Subdomain: sub, Brands: zenklav.Brands{All: true}}}
	probe.Zendesk.WebhookSecrets = []zenklav.Secret{"placeholder-until-finish"}
	if err := probe.Validate(); err != nil {
		a.fail(c, w, http.StatusBadRequest, err.Error())
		return
	}
	probe.Zendesk.WebhookSecrets = nil
	*w = wizard{Connection: probe}
}

// subdomainOf reads the account from "https://acme.zendesk.com", "acme.zendesk.com" or "acme".
func subdomainOf(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if u, err := url.Parse(s); err == nil && u.Host != "" {
		s = u.Host
	}
	sub, _, _ := strings.Cut(s, ".")
	if sub == "" || strings.ContainsAny(sub, "/:@ ") {
		return "", fmt.Errorf("%q is not a Zendesk URL: give https://yourcompany.zendesk.com", s)
	}
	return sub, nil
}

func (a *admin) cancel(c *gin.Context, w *wizard) {
	a.setCookie(c, draftCookie, "", -1)
	c.Redirect(http.StatusSeeOther, "/admin/setup")
	c.Abort() // a redirect after a POST writes no body: say the step answered
}

// connectZendesk sends the browser to Zendesk's consent page.
func (a *admin) connectZendesk(c *gin.Context, w *wizard) { a.connect(c, w, "zendesk", a.ZendeskOAuth) }

// connectKlaviyo sends the browser to Klaviyo's consent page.
func (a *admin) connectKlaviyo(c *gin.Context, w *wizard) { a.connect(c, w, "klaviyo", a.KlaviyoOAuth) }

// connect starts an authorization code grant with PKCE: the state and verifier wait in the
// sealed cookie, and the browser goes to the vendor.
func (a *admin) connect(c *gin.Context, w *wizard, vendor string, p zenklav.OAuthProvider) {
	if p == nil || w.Connection.ID == "" {
		a.fail(c, w, http.StatusBadRequest, "Connecting with "+vendor+" is not set up here: use a key or token.")
		return
	}
	w.Pending = &pendingGrant{Vendor: vendor, State: randomToken(), Verifier: oauth2.GenerateVerifier(), Until: a.Now().Add(grantWait)}
	if err := a.saveWizard(c, c.GetString("session"), w); err != nil {
		_ = c.Error(err)
		return
	}
	to := p.AuthorizeURL(w.Connection.Zendesk.Subdomain, a.redirectURI(vendor), w.Pending.State, oauth2.S256ChallengeFromVerifier(w.Pending.Verifier))
	c.Redirect(http.StatusSeeOther, to)
	c.Abort() // a redirect after a POST writes no body: say the step answered
}

func (a *admin) redirectURI(vendor string) string {
	return strings.TrimRight(a.PublicURL, "/") + "/admin/oauth/" + vendor + "/callback"
}

// callback takes the browser back from a consent page: the state must be the one this
// session's wizard sent, within grantWait; then the code is exchanged for the grant.
func (a *admin) callback(c *gin.Context) {
	session := c.GetString("session")
	w := a.loadWizard(c, session)
	vendor := c.Param("vendor")
	if w == nil || w.Pending == nil || w.Pending.Vendor != vendor ||
		subtle.ConstantTimeCompare([]byte(c.Query("state")), []byte(w.Pending.State)) != 1 {
		a.render(c, http.StatusBadRequest, "login.html", page{Title: "Refused", CSRF: csrf(session),
			Error: "This answer from " + vendor + " does not belong to this session's setup: connect again from the wizard."})
		return
	}
	pending := *w.Pending
	w.Pending = nil
	switch {
	case a.Now().After(pending.Until):
		a.fail(c, w, http.StatusBadRequest, "Connecting took longer than 10 minutes: connect again.")
	case c.Query("error") != "":
		a.fail(c, w, http.StatusBadRequest, vendor+" did not grant access ("+c.Query("error")+").")
	default:
		a.exchange(c, w, pending)
		return
	}
	_ = a.saveWizard(c, session, w)
}

// exchange trades the consent's code for the grant and keeps it in the wizard.
func (a *admin) exchange(c *gin.Context, w *wizard, pending pendingGrant) {
	p := a.ZendeskOAuth
	if pending.Vendor == "klaviyo" {
		p = a.KlaviyoOAuth
	}
	tok, err := p.Exchange(c.Request.Context(), w.Connection.Zendesk.Subdomain, c.Query("code"), pending.Verifier, a.redirectURI(pending.Vendor))
	if err != nil {
		_ = a.saveWizard(c, c.GetString("session"), w) // the state is spent
		a.fail(c, w, pageStatus(err), "Connecting with "+pending.Vendor+" failed: "+zenklav.ErrorMessage(err))
		return
	}
	if pending.Vendor == "klaviyo" {
		w.Connection.Klaviyo.OAuth, w.Connection.Klaviyo.PrivateKey = &tok, ""
	} else {
		w.Connection.Zendesk.OAuth, w.Connection.Zendesk.APIToken, w.Connection.Zendesk.Email = &tok, "", ""
	}
	if err := a.saveWizard(c, c.GetString("session"), w); err != nil {
		_ = c.Error(err)
		return
	}
	c.Redirect(http.StatusSeeOther, "/admin/setup?notice="+url.QueryEscape("Connected with "+pending.Vendor+"."))
}

// zendeskToken takes an agent's email and API token, tried with a real call first.
func (a *admin) zendeskToken(c *gin.Context, w *wizard) {
	next := w.Connection
	next.Zendesk.Email, next.Zendesk.APIToken, next.Zendesk.OAuth = strings.TrimSpace(c.PostForm("email")), zenklav.Secret(strings.TrimSpace(c.PostForm("api_token"))), nil
	if next.Zendesk.Email == "" || next.Zendesk.APIToken == "" {
		a.fail(c, w, http.StatusBadRequest, "Give the agent's email and an API token.")
		return
	}
	if _, err := a.Setup.Brands(c.Request.Context(), &next); err != nil {
		a.fail(c, w, pageStatus(err), "Zendesk refused that email and API token: "+zenklav.ErrorMessage(err))
		return
	}
	w.Connection = next
}

// klaviyoKey takes a private API key.
func (a *admin) klaviyoKey(c *gin.Context, w *wizard) {
	key := zenklav.Secret(strings.TrimSpace(c.PostForm("private_key")))
	if !strings.HasPrefix(string(key), "pk_") {
		a.fail(c, w, http.StatusBadRequest, "A Klaviyo private API key starts with pk_.")
		return
	}
	w.Connection.Klaviyo.PrivateKey, w.Connection.Klaviyo.OAuth = key, nil
}

// options takes the brands and the SMS choices.
func (a *admin) options(c *gin.Context, w *wizard) {
	next := w.Connection
	next.Zendesk.Brands = zenklav.Brands{All: c.PostForm("brands") != "some"}
	if !next.Zendesk.Brands.All {
		for _, s := range c.PostFormArray("brand") {
			id, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				a.fail(c, w, http.StatusBadRequest, "Brand "+s+" is not a brand id.")
				return
			}
			next.Zendesk.Brands.IDs = append(next.Zendesk.Brands.IDs, id)
		}
		if len(next.Zendesk.Brands.IDs) == 0 {
			a.fail(c, w, http.StatusBadRequest, "Choose at least one brand, or all.")
			return
		}
	}
	brand, _ := strconv.ParseInt(c.PostForm("sms_brand"), 10, 64)
	next.SMS = zenklav.SMSSettings{Enabled: c.PostForm("sms") == "on", Brand: brand, InboundTopics: next.SMS.InboundTopics,
		Keywords:    zenklav.SMSKeywords{Ignore: words(c.PostForm("ignore")), Create: words(c.PostForm("create"))},
		CloseSolved: c.PostForm("close_solved") == "on", View: c.PostForm("view") == "on"}
	if next.SMS.Enabled && !next.HasKlaviyo() {
		a.fail(c, w, http.StatusBadRequest, "SMS conversations go through Klaviyo: connect Klaviyo first.")
		return
	}
	w.Connection = next
}

// words splits a comma-separated list; nil when empty, so the defaults apply.
func words(s string) []string {
	var out []string
	for _, w := range strings.Split(s, ",") {
		if w = strings.TrimSpace(w); w != "" {
			out = append(out, w)
		}
	}
	return out
}

// finish makes what the connection needs and stores it.
func (a *admin) finish(c *gin.Context, w *wizard) {
	if w.Connection.ID == "" {
		a.fail(c, w, http.StatusBadRequest, "Start with the connection's name and Zendesk account.")
		return
	}
	done, changes, err := a.Setup.Finish(c.Request.Context(), w.Connection)
	if err != nil {
		w.Connection.Made = done.Made // what was made is kept, so finishing again reuses it
		_ = a.saveWizard(c, c.GetString("session"), w)
		a.fail(c, w, pageStatus(err), "Finishing stopped: "+zenklav.ErrorMessage(err)+". Fix it and finish again; what was made is reused.")
		return
	}
	a.setCookie(c, draftCookie, "", -1)
	a.showConnection(c, done.ID, http.StatusOK, page{Changes: changes, Notice: "Connection " + done.ID + " is set up and served."})
}

// connection shows a connection and its health.
func (a *admin) connection(c *gin.Context) {
	a.showConnection(c, c.Param("id"), http.StatusOK, page{})
}

func (a *admin) showConnection(c *gin.Context, id string, status int, p page) {
	session := c.GetString("session")
	e, err := a.Setup.Connection(id)
	if err != nil {
		a.list(c, session, pageStatus(err), page{Error: zenklav.ErrorMessage(err)})
		return
	}
	p.Title, p.CSRF, p.Conn = "Connection "+id, csrf(session), viewOfConnection(e)
	if h := a.health; h != nil && h.Reports != nil && !e.Disabled {
		ctx, cancel := context.WithTimeout(c.Request.Context(), healthTimeout)
		defer cancel()
		if rep, err := h.Reports.Report(ctx, id); err == nil {
			p.Health = viewOfHealth(rep)
		} else {
			p.Error = "Health unavailable: " + zenklav.ErrorMessage(err)
		}
	}
	a.render(c, status, "connection.html", p)
}

// test sends a test ticket event through the real path.
func (a *admin) test(c *gin.Context) {
	id := c.Param("id")
	if a.health == nil || a.health.Tester == nil {
		a.showConnection(c, id, http.StatusNotImplemented, page{Error: "Test events are not available in this process."})
		return
	}
	ev, err := a.health.Tester.TestEvent(c.Request.Context(), id)
	if err != nil {
		a.showConnection(c, id, pageStatus(err), page{Error: "The test event was not accepted: " + zenklav.ErrorMessage(err)})
		return
	}
	a.showConnection(c, id, http.StatusOK, page{Notice: fmt.Sprintf("Test ticket event %s sent (ticket %d): reload this page to see it delivered to Klaviyo.", ev.EventID, ev.Ticket.ID)})
}

// disconnect removes what zenklav made for the connection, revokes its grants and forgets it.
func (a *admin) disconnect(c *gin.Context) {
	id, session := c.Param("id"), c.GetString("session")
	if c.PostForm("confirm") != "yes" {
		a.showConnection(c, id, http.StatusBadRequest, page{Error: "Tick the box to confirm."})
		return
	}
	changes, err := a.Setup.Disconnect(c.Request.Context(), id)
	if err != nil {
		a.showConnection(c, id, pageStatus(err), page{Changes: changes, Error: "Disconnecting stopped: " + zenklav.ErrorMessage(err) + ". Run it again to finish."})
		return
	}
	a.list(c, session, http.StatusOK, page{Changes: changes, Notice: "Connection " + id + " is disconnected."})
}

// pageStatus is the status of a page showing err: its kind's (statusOf), or 502 for what
// a vendor answered without one.
func pageStatus(err error) int {
	if s, ok := statusOf[zenklav.ErrorCode(err)]; ok {
		return s
	}
	return http.StatusBadGateway
}

// connectionRow is a connection in the list.
type connectionRow struct {
	ID, Zendesk, Klaviyo, Err string
	SMS, Disabled             bool
}

func rowOf(e connstore.Entry) connectionRow {
	c := e.Connection
	r := connectionRow{ID: c.ID, Zendesk: c.Zendesk.Subdomain, Klaviyo: klaviyoVia(&c), SMS: c.SMS.Enabled, Disabled: e.Disabled}
	if e.Err != nil {
		r.Err = zenklav.ErrorMessage(e.Err)
	}
	return r
}

// connectionView is a stored connection on its page: no secret, only how it connects.
type connectionView struct {
	ID, Zendesk, Klaviyo, Brands string
	SMS                          bool
	Made                         []string
}

func viewOfConnection(e connstore.Entry) *connectionView {
	c := e.Connection
	v := &connectionView{ID: c.ID, Zendesk: c.Zendesk.Subdomain + " (" + zendeskVia(&c) + ")", Klaviyo: klaviyoVia(&c), SMS: c.SMS.Enabled, Brands: "all"}
	if !c.Zendesk.Brands.All {
		v.Brands = fmt.Sprint(c.Zendesk.Brands.IDs)
	}
	m := c.Made
	for _, s := range []struct {
		what string
		id   string
	}{{"Zendesk webhook", m.ZendeskWebhook}, {"Zendesk automation", idText(m.ZendeskAutomation)}, {"Zendesk view", idText(m.ZendeskView)}, {"Klaviyo webhook", m.KlaviyoWebhook}} {
		if s.id != "" {
			v.Made = append(v.Made, s.what+" "+s.id)
		}
	}
	return v
}

func idText(id int64) string {
	if id == 0 {
		return ""
	}
	return strconv.FormatInt(id, 10)
}

func zendeskVia(c *zenklav.Connection) string {
	switch {
	case c.Zendesk.OAuth != nil:
		return "connected with Zendesk"
	case c.Zendesk.APIToken != "":
		return "API token of " + c.Zendesk.Email
	}
	return ""
}

func klaviyoVia(c *zenklav.Connection) string {
	switch {
	case c.Klaviyo.OAuth != nil:
		return "connected with Klaviyo"
	case c.Klaviyo.PrivateKey != "":
		return "private key"
	}
	return ""
}

// draftView is the wizard's connection as its page shows it.
type draftView struct {
	ID, Subdomain, ZendeskVia, KlaviyoVia, BrandsErr, Ignore, Create string
	Editing, ZendeskOAuth, KlaviyoOAuth, BrandsAll                   bool
	Brands                                                           []brandOption
	SMS                                                              zenklav.SMSSettings
}

type brandOption struct {
	zenklav.Brand
	Checked, SMSBrand bool
}

// viewOf shows w; the brands are read from Zendesk once it is connected.
func (a *admin) viewOf(c *gin.Context, w *wizard) *draftView {
	conn := &w.Connection
	v := &draftView{ID: conn.ID, Subdomain: conn.Zendesk.Subdomain, Editing: w.Editing, ZendeskVia: zendeskVia(conn), KlaviyoVia: klaviyoVia(conn),
		ZendeskOAuth: a.ZendeskOAuth != nil, KlaviyoOAuth: a.KlaviyoOAuth != nil, BrandsAll: conn.Zendesk.Brands.All, SMS: conn.SMS,
		Ignore: strings.Join(conn.SMS.Keywords.Ignore, ", "), Create: strings.Join(conn.SMS.Keywords.Create, ", ")}
	if v.Ignore == "" {
		v.Ignore = strings.Join(zenklav.DefaultIgnoreKeywords, ", ")
	}
	if v.Create == "" {
		v.Create = strings.Join(zenklav.DefaultCreateKeywords, ", ")
	}
	if v.ZendeskVia == "" {
		return v
	}
	brands, err := a.Setup.Brands(c.Request.Context(), conn)
	if err != nil {
		v.BrandsErr = "The brands could not be read from Zendesk: " + zenklav.ErrorMessage(err)
	}
	for _, b := range brands {
		v.Brands = append(v.Brands, brandOption{Brand: b, Checked: slices.Contains(conn.Zendesk.Brands.IDs, b.ID), SMSBrand: conn.SMS.Brand == b.ID})
	}
	return v
}

// healthView is a connection's health as its page shows it.
type healthView struct {
	Healthy  bool
	Problems []string // what the admin should do, in plain words
	Rows     []healthRow
}

type healthRow struct{ Name, Value string }

// viewOfHealth lays a health report out for the page.
func viewOfHealth(r connstatus.Report) *healthView {
	when := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC") + " (" + r.At.Sub(t).Round(time.Second).String() + " ago)"
	}
	v := &healthView{Healthy: r.Healthy, Problems: r.Problems, Rows: []healthRow{
		{"Last Zendesk webhook", when(r.LastWebhook)},
		{"Last metric delivered to Klaviyo", when(r.LastDelivery)},
		{"Dead letters waiting", strconv.Itoa(r.DeadLetters)},
	}}
	for _, g := range slices.Sorted(maps.Keys(r.Lag)) {
		v.Rows = append(v.Rows, healthRow{"Lag of " + g, strconv.FormatInt(r.Lag[g], 10) + " events"})
	}
	sms := "off"
	if r.SMS.Enabled {
		sms = "on, last message " + when(r.SMS.LastMessage)
		if r.SMS.LastDirection != "" {
			sms += " (" + r.SMS.LastDirection + ")"
		}
	}
	v.Rows = append(v.Rows, healthRow{"SMS", sms})
	for _, e := range r.Errors {
		text := fmt.Sprintf("%d in the last hour, last %s: %s", e.Count, when(e.Last), e.Message)
		if e.Advice != "" {
			text += " — " + e.Advice
		}
		v.Rows = append(v.Rows, healthRow{"Errors: " + e.Kind, text})
	}
	return v
}
