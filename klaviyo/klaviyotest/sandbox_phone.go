package klaviyotest

import (
	"cmp"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/zenklav/zenklav/internal/apispec"
)

// The phone page plays a customer's phone in sandbox mode, so a person can text the brand and
// read the replies without a real number:
//
//	GET  /sandbox/phone                   the page; ?phone=+1… picks the number
//	GET  /sandbox/phone/thread.json?phone= the number's conversation and the known numbers
//	POST /sandbox/phone/texts             phone and body (a form): Text, as the customer
//	GET  /sandbox/phone/assets/…          the page's script and stylesheet
//
// The page polls thread.json, so replies that Klaviyo's Conversations API took show up as
// they arrive.

//go:embed phone
var phoneFiles embed.FS

var phonePage = template.Must(template.ParseFS(phoneFiles, "phone/phone.html"))

// phoneAssets serves phone/assets.
var phoneAssets = func() http.Handler {
	sub, err := fs.Sub(phoneFiles, "phone/assets")
	if err != nil {
		panic("klaviyotest: " + err.Error()) // a constant path into the embedded files
	}
	return http.StripPrefix("/sandbox/phone/assets/", http.FileServerFS(sub))
}()

// phoneCSP keeps the phone page to its own script, stylesheet and requests: the thread shows
// what anyone texted, and the policy stops it even if it slipped past the page's escaping.
const phoneCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// maxTextBytes bounds a text typed on the page: an SMS is at most about 1,600 characters.
const maxTextBytes = 1600

// phoneNumber is a number the page offers: a profile of the phone's account with a phone.
type phoneNumber struct {
	Phone   string `json:"phone"`
	Name    string `json:"name,omitempty"`
	Email   string `json:"email,omitempty"`
	Consent string `json:"consent"`
}

// threadMessage is one text of the thread, as thread.json gives it.
type threadMessage struct {
	Inbound bool      `json:"inbound"` // the customer texted it; else a reply the brand sent
	Body    string    `json:"body"`
	Time    time.Time `json:"time"`
}

// phoneThread is what thread.json answers, and what the page first shows.
type phoneThread struct {
	Phone    string          `json:"phone"`
	Brand    string          `json:"brand"` // the account's number the customer texts
	Customer *phoneNumber    `json:"customer,omitempty"`
	Messages []threadMessage `json:"messages"`
	Numbers  []phoneNumber   `json:"numbers"`
	Error    string          `json:"error,omitempty"`
}

// thread reads the conversation of phone ("" is the default number: the first subscribed
// profile with a name and an email) in the phone's account.
func (s *Server) thread(phone string) phoneThread {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := phoneThread{Phone: phone, Messages: []threadMessage{}, Numbers: []phoneNumber{}}
	a, err := s.phoneAccount()
	if err != nil {
		v.Error = err.Error()
		return v
	}
	v.Brand = cmp.Or(a.sms.Number, DefaultSMSNumber)
	var ps []*profile
	for _, p := range a.profiles {
		if p.ident.PhoneNumber != "" {
			ps = append(ps, p)
		}
	}
	// The oldest first: the sandbox's own customers before the numbers typed in.
	slices.SortFunc(ps, func(x, y *profile) int {
		return cmp.Or(x.created.Compare(y.created), cmp.Compare(x.ident.PhoneNumber, y.ident.PhoneNumber))
	})
	for _, p := range ps {
		n := numberOf(p)
		v.Numbers = append(v.Numbers, n)
		if v.Phone == "" && n.Consent == Subscribed && n.Name != "" && n.Email != "" {
			v.Phone = n.Phone
		}
	}
	if p := a.byPhone(v.Phone); p != nil {
		n := numberOf(p)
		v.Customer = &n
		if p.conversation != nil {
			for _, m := range p.conversation.messages {
				v.Messages = append(v.Messages, threadMessage{Inbound: m.Inbound, Body: m.Body, Time: m.Time.UTC()})
			}
		}
	}
	return v
}

// numberOf is the page's view of p. The caller holds s.mu.
func numberOf(p *profile) phoneNumber {
	n := phoneNumber{Phone: p.ident.PhoneNumber, Email: p.ident.Email, Consent: NeverSubscribed,
		Name: strings.TrimSpace(p.details.FirstName + " " + p.details.LastName)}
	if c := p.details.SMSConsent; c != nil {
		n.Consent = c.Consent
	}
	return n
}

// servePhone answers the paths under /sandbox/phone.
func (s *Server) servePhone(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case strings.HasPrefix(path, "/sandbox/phone/assets/"):
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		phoneAssets.ServeHTTP(w, r)
	case path == "/sandbox/phone":
		if allow(w, r, http.MethodGet, http.MethodHead) {
			s.phonePage(w, r)
		}
	case path == "/sandbox/phone/thread.json":
		if allow(w, r, http.MethodGet, http.MethodHead) {
			w.Header().Set("Cache-Control", "no-store")
			writeJSON(w, http.StatusOK, s.thread(r.URL.Query().Get("phone")))
		}
	case path == "/sandbox/phone/texts":
		if allow(w, r, http.MethodPost) {
			s.phoneText(w, r)
		}
	default:
		writeErrors(w, http.StatusNotFound, apiError{Code: "not_found", Title: "Not found.", Detail: "the phone serves GET /sandbox/phone, GET /sandbox/phone/thread.json and POST /sandbox/phone/texts"})
	}
}

// allow says whether r's method is one of methods, and answers 405 when it is not.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	if slices.Contains(methods, r.Method) {
		return true
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeErrors(w, http.StatusMethodNotAllowed, apiError{Code: "method_not_allowed", Title: "Method not allowed.", Detail: "use " + strings.Join(methods, " or ")})
	return false
}

func (s *Server) phonePage(w http.ResponseWriter, r *http.Request) {
	view := s.thread(r.URL.Query().Get("phone"))
	var b strings.Builder
	if err := phonePage.Execute(&b, view); err != nil {
		http.Error(w, "render phone page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", phoneCSP)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.Write([]byte(b.String()))
}

// phoneText answers POST /sandbox/phone/texts: the customer's text, sent as Text sends it.
// The page's script asks for JSON; a plain form (no script) is sent back to the page.
func (s *Server) phoneText(w http.ResponseWriter, r *http.Request) {
	// A page of another site must not text on the sandbox's behalf: the simulator listens
	// on loopback, which a browser's other tabs reach too.
	if !apispec.SameOrigin(r) {
		writeErrors(w, http.StatusForbidden, apiError{Code: "permission_denied", Title: "Forbidden.", Detail: "texts come from the phone page only"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	phone, body := strings.TrimSpace(r.FormValue("phone")), strings.TrimSpace(r.FormValue("body"))
	var err error
	switch {
	case body == "":
		err = errors.New("type a text first")
	case len(body) > maxTextBytes:
		err = errors.New("a text is at most 1,600 characters")
	default:
		_, err = s.Text(phone, body)
	}
	wantsJSON := strings.Contains(r.Header.Get("Accept"), "application/json")
	switch {
	case wantsJSON && err != nil:
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error()})
	case wantsJSON:
		writeJSON(w, http.StatusOK, map[string]string{"status": "sent"})
	case err != nil:
		http.Error(w, err.Error(), http.StatusUnprocessableEntity)
	default:
		http.Redirect(w, r, "/sandbox/phone?phone="+url.QueryEscape(phone), http.StatusSeeOther)
	}
}
