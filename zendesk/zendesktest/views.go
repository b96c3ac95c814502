package zendesktest

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// columnTitles are the titles Zendesk gives the system columns of a view.
var columnTitles = map[string]string{
	"status": "Status", "subject": "Subject", "requester": "Requester", "updated": "Updated",
	"created": "Requested", "assignee": "Assignee", "group": "Group", "priority": "Priority",
	"type": "Type", "score": "Score", "organization": "Organization", "brand": "Brand",
	"description": "Description", "nice_id": "ID", "updated_requester": "Requester updated",
	"updated_assignee": "Assignee updated", "updated_by_type": "Latest update", "satisfaction_score": "Satisfaction",
}

// applyView changes v by in: a view's update sets only what it gives.
func applyView(v *View, in ruleInput) error {
	if in.Title != nil {
		v.Title = *in.Title
	}
	if in.Active != nil {
		v.Active = *in.Active
	}
	var err error
	if in.All != nil {
		if v.All, err = conditions(*in.All); err != nil {
			return err
		}
	}
	if in.Any != nil {
		if v.Any, err = conditions(*in.Any); err != nil {
			return err
		}
	}
	if in.Output != nil {
		v.Columns = v.Columns[:0:0]
		for _, raw := range in.Output.Columns {
			col, err := ruleValue(raw) // a system column's name, or a custom field's id
			if err != nil || col == "" {
				return fmt.Errorf("output.columns: %s is not a column", raw)
			}
			v.Columns = append(v.Columns, col)
		}
	}
	return nil
}

// checkView refuses a view Zendesk refuses (422): it needs a title, and a condition in all
// on status, type, group_id, assignee_id or requester_id.
func checkView(v View) (int, any) {
	switch {
	case strings.TrimSpace(v.Title) == "":
		return recordInvalid("title", "BlankValue", "Title: cannot be blank")
	case !hasField(v.All, ticketFields):
		return recordInvalid("base", "InvalidValue", "View must have a condition in all that checks status, type, group_id, assignee_id or requester_id")
	}
	return 0, nil
}

// createView answers Create View, with the 200 the spec documents for it.
func (s *Server) createView(c *call) (int, any) {
	in, err := readRule(c, "view")
	if err != nil {
		return http.StatusBadRequest, errorBody("InvalidJSON", err.Error())
	}
	if in.Conditions != nil {
		// Views take all and any at the top level; Zendesk ignores a conditions object.
		return http.StatusNotImplemented, errorBody("NotSimulated", "zendesktest takes a view's conditions as top-level all and any")
	}
	v := View{Active: true}
	if err := applyView(&v, in); err != nil {
		return http.StatusBadRequest, errorBody("InvalidValue", err.Error())
	}
	if status, refusal := checkView(v); refusal != nil {
		return status, refusal
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v.ID = s.id(0)
	v.CreatedAt = s.now().UTC().Truncate(time.Second)
	v.UpdatedAt = v.CreatedAt
	s.admin.views[v.ID] = v
	return http.StatusOK, map[string]any{"view": viewJSON(v, c.base)}
}

// updateView answers Update View.
func (s *Server) updateView(c *call) (int, any) {
	id, _ := strconv.ParseInt(c.params["view_id"], 10, 64)
	in, err := readRule(c, "view")
	if err != nil {
		return http.StatusBadRequest, errorBody("InvalidJSON", err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.admin.views[id]
	if !ok {
		return notFound()
	}
	v = cloneView(v)
	if err := applyView(&v, in); err != nil {
		return http.StatusBadRequest, errorBody("InvalidValue", err.Error())
	}
	if status, refusal := checkView(v); refusal != nil {
		return status, refusal
	}
	v.UpdatedAt = s.now().UTC().Truncate(time.Second)
	s.admin.views[id] = v
	return http.StatusOK, map[string]any{"view": viewJSON(v, c.base)}
}

func (s *Server) showView(c *call) (int, any) {
	id, _ := strconv.ParseInt(c.params["view_id"], 10, 64)
	s.mu.Lock()
	v, ok := s.admin.views[id]
	s.mu.Unlock()
	if !ok {
		return notFound()
	}
	return http.StatusOK, map[string]any{"view": viewJSON(v, c.base)}
}

func (s *Server) deleteView(c *call) (int, any) {
	id, _ := strconv.ParseInt(c.params["view_id"], 10, 64)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.admin.views[id]; !ok {
		return notFound()
	}
	delete(s.admin.views, id)
	return http.StatusNoContent, nil
}

// listViews answers List Views: the shared views (the simulator has no personal ones).
func (s *Server) listViews(c *call) (int, any) {
	all := s.Views()
	items := make([]any, 0, len(all))
	active := c.r.URL.Query().Get("active")
	for _, v := range all {
		if active == "" || active == strconv.FormatBool(v.Active) {
			items = append(items, viewJSON(v, c.base))
		}
	}
	return listPage(c, "views", "/api/v2/views", items)
}

// viewJSON writes a view as Zendesk reads it back: the conditions under conditions, the
// columns under execution with their titles. Everyone may use it, so it has no restriction.
func viewJSON(v View, base string) map[string]any {
	columns := make([]map[string]any, len(v.Columns))
	for i, id := range v.Columns {
		col := map[string]any{"id": id, "title": columnTitles[id]}
		if n, err := strconv.ParseInt(id, 10, 64); err == nil {
			col = map[string]any{"id": n, "title": fmt.Sprintf("Field %d", n), "type": "text",
				"url": fmt.Sprintf("%s/api/v2/ticket_fields/%d.json", base, n)}
		} else if col["title"] == "" {
			col["title"] = id
		}
		columns[i] = col
	}
	return map[string]any{
		"id": v.ID, "url": fmt.Sprintf("%s/api/v2/views/%d.json", base, v.ID),
		"title": v.Title, "active": v.Active, "default": false, "position": 1, "description": "",
		"conditions": map[string]any{"all": conditionsJSON(v.All), "any": conditionsJSON(v.Any)},
		"execution": map[string]any{
			"columns": columns, "fields": columns,
			"sort_by": "updated", "sort_order": "desc", "group_by": nil, "group_order": "asc",
		},
		"created_at": stamp(v.CreatedAt), "updated_at": stamp(v.UpdatedAt),
	}
}
