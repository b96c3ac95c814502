package zendesk

import "time"

// Ticket is the part of a Zendesk ticket that zenklav reads. The REST API sends unset ids
// (assignee, group) as null; they decode to 0, so 0 always means "none".
type Ticket struct {
	ID           int64         `json:"id"`
	URL          string        `json:"url"` // the API URL of the ticket, not the agent URL
	Subject      string        `json:"subject"`
	Description  string        `json:"description"` // body of the first comment
	Status       string        `json:"status"`      // new, open, pending, hold, solved, closed
	Priority     string        `json:"priority"`    // urgent, high, normal, low, or "" when unset
	Type         string        `json:"type"`        // problem, incident, question, task, or ""
	Tags         []string      `json:"tags"`
	Via          Via           `json:"via"`
	RequesterID  int64         `json:"requester_id"`
	AssigneeID   int64         `json:"assignee_id"`
	GroupID      int64         `json:"group_id"`
	BrandID      int64         `json:"brand_id"`
	CustomFields []CustomField `json:"custom_fields"`
	CreatedAt    time.Time     `json:"created_at"`
	UpdatedAt    time.Time     `json:"updated_at"`
}

// Via tells how a ticket was created: "web", "email", "api", "sms", …
type Via struct {
	Channel string `json:"channel"`
}

// CustomField is one custom field value of a ticket. Value is whatever JSON Zendesk sent:
// a string for text and drop-down fields, but a bool for checkboxes, a number for numeric
// fields, an array for multi-select and null when empty, so it stays untyped here.
type CustomField struct {
	ID    int64 `json:"id"`
	Value any   `json:"value"`
}

// User is the part of a Zendesk user that zenklav reads. Phone is "" when Zendesk sends null.
type User struct {
	ID    int64  `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
	Phone string `json:"phone"`
	Role  string `json:"role"` // end-user, agent or admin
}

// Group is a Zendesk agent group.
type Group struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// Brand is a Zendesk brand; zenklav maps each synced brand to one Klaviyo account.
type Brand struct {
	ID        int64  `json:"id"`
	Name      string `json:"name"`
	Subdomain string `json:"subdomain"`
	BrandURL  string `json:"brand_url"`
	Active    bool   `json:"active"`
}
