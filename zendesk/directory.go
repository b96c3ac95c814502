package zendesk

import (
	"context"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/schemas"
)

// The Client is a zenklav.Directory: the domain's view of its tickets and users.
var _ zenklav.Directory = (*Client)(nil)

// FindTicket returns what zenklav reads of a ticket; ENOTFOUND when there is none.
func (c *Client) FindTicket(ctx context.Context, id int64) (zenklav.TicketDetails, error) {
	t, err := c.ShowTicket(ctx, id)
	if err != nil {
		return zenklav.TicketDetails{}, err
	}
	return t.details(), nil
}

// FindTickets returns what zenklav reads of the tickets that exist among ids.
func (c *Client) FindTickets(ctx context.Context, ids []int64) (map[int64]zenklav.TicketDetails, error) {
	tickets, err := c.TicketsMany(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[int64]zenklav.TicketDetails, len(tickets))
	for _, t := range tickets {
		out[t.ID] = t.details()
	}
	return out, nil
}

// FindUser returns a user; ENOTFOUND when there is none.
func (c *Client) FindUser(ctx context.Context, id int64) (zenklav.Person, error) {
	u, err := c.User(ctx, id)
	return u.person(), err
}

// FindUsers returns the users that exist among ids.
func (c *Client) FindUsers(ctx context.Context, ids []int64) (map[int64]zenklav.Person, error) {
	users, err := c.UsersMany(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[int64]zenklav.Person, len(users))
	for _, u := range users {
		out[u.ID] = u.person()
	}
	return out, nil
}

// GroupName returns the name of a group; ENOTFOUND when there is none.
func (c *Client) GroupName(ctx context.Context, id int64) (string, error) {
	g, err := c.Group(ctx, id)
	return g.Name, err
}

func (t Ticket) details() zenklav.TicketDetails {
	fields := make([]schemas.CustomField, len(t.CustomFields))
	for i, f := range t.CustomFields {
		fields[i] = schemas.CustomField{ID: f.ID, Value: f.Value}
	}
	return zenklav.TicketDetails{ID: t.ID, Description: t.Description, BrandID: t.BrandID, RequesterID: t.RequesterID, CustomFields: fields}
}

func (u User) person() zenklav.Person {
	return zenklav.Person{ID: u.ID, Name: u.Name, Email: u.Email, Phone: u.Phone, Role: u.Role}
}
