// Package apispec validates requests against Firecracker's own API
// description (the Swagger 2.0 file Firecracker publishes). The fake
// firecracker and the driver's tests use it so that every request banger's
// Firecracker driver sends is checked against the real contract, not a
// copy of our own assumptions.
package apispec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// SpecFile is the name of the API description, kept beside the project in
// shared/specs (never copied into the repository).
const SpecFile = "firecracker-api-1.17.0-dev.yaml"

// Spec is a loaded API description ready to validate requests. It is safe
// for concurrent use.
type Spec struct {
	path   string
	doc    *openapi3.T
	router routers.Router
	// base is the URL prefix (scheme, host, basePath) requests are matched
	// under: the server the swagger file's host/basePath describe.
	base string
}

// Operation is what the API description says about one method on one
// path.
type Operation struct {
	// Method and Template identify it: Template is the path as the spec
	// writes it ("/drives/{drive_id}").
	Method   string
	Template string
	// ID is the spec's operationId ("putGuestDriveByID").
	ID string
	// Summary and Description are the spec's prose, which is where it says
	// "Pre-boot only" or "Post-boot only".
	Summary     string
	Description string
	// PathParams are the values the request's path gave the template's
	// parameters.
	PathParams map[string]string
	// HasBody says the operation takes a request body, and BodyRequired
	// that the spec marks it required. (PUT /machine-config, PUT
	// /cpu-config and PUT /mmds take a body the spec does not require.)
	HasBody      bool
	BodyRequired bool
}

// Load reads Firecracker's swagger file and prepares request validation:
// the Swagger 2.0 document is converted to OpenAPI 3 and a router is built
// over its paths.
func Load(path string) (*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the Firecracker API description: %w", err)
	}
	var doc2 openapi2.T
	if err := openapi2.UnmarshalFromData(data, &doc2); err != nil {
		return nil, fmt.Errorf("parsing %s as Swagger 2.0: %w", path, err)
	}
	doc3, err := openapi2conv.ToV3(&doc2)
	if err != nil {
		return nil, fmt.Errorf("converting %s to OpenAPI 3: %w", path, err)
	}
	ctx := context.Background()
	if err := doc3.Validate(ctx); err != nil {
		return nil, fmt.Errorf("%s is not a valid API description: %w", path, err)
	}
	// The swagger file says host "localhost", basePath "/", scheme http:
	// that became one server, http://localhost/. Requests arrive over a
	// Unix socket with whatever Host header the client chose, so Validate
	// matches them under that server rather than under the client's Host.
	base := "http://localhost"
	if len(doc3.Servers) > 0 {
		base = strings.TrimSuffix(doc3.Servers[0].URL, "/")
	}
	router, err := gorillamux.NewRouter(doc3)
	if err != nil {
		return nil, fmt.Errorf("building a router over %s: %w", path, err)
	}
	return &Spec{path: path, doc: doc3, router: router, base: base}, nil
}

// Path is the file the spec was loaded from.
func (s *Spec) Path() string { return s.path }

// Version is the API version the file describes ("1.17.0-dev").
func (s *Spec) Version() string {
	if s.doc.Info == nil {
		return ""
	}
	return s.doc.Info.Version
}

// ModuleRoot walks up from the working directory to the directory that
// holds go.mod.
func ModuleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the module root: %w", err)
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("finding the module root: no go.mod in %s or any directory above it", wd)
		}
		dir = parent
	}
}

// SpecPath finds shared/specs/firecracker-api-1.17.0-dev.yaml beside the
// module: it walks up from the working directory to the directory holding
// go.mod and looks in ../shared/specs from there.
func SpecPath() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("finding the Firecracker API description (../shared/specs/%s beside the module root): %w", SpecFile, err)
	}
	p := filepath.Join(filepath.Dir(root), "shared", "specs", SpecFile)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("the Firecracker API description is not at %s (looked beside the module root %s): %w", p, root, err)
	}
	return p, nil
}

// Lookup finds the operation method and path name, or fails the way
// Validate does for an unknown path or method.
func (s *Spec) Lookup(method, path string) (*Operation, error) {
	req, err := s.request(context.Background(), method, path, nil)
	if err != nil {
		return nil, err
	}
	route, params, err := s.find(req)
	if err != nil {
		return nil, err
	}
	op := route.Operation
	out := &Operation{
		Method:      route.Method,
		Template:    route.Path,
		ID:          op.OperationID,
		Summary:     op.Summary,
		Description: op.Description,
		PathParams:  params,
	}
	if rb := op.RequestBody; rb != nil && rb.Value != nil {
		out.HasBody = true
		out.BodyRequired = rb.Value.Required
	}
	return out, nil
}

// Operations lists every operation the spec describes, sorted by path
// template and method.
func (s *Spec) Operations() []Operation {
	var out []Operation
	for _, tmpl := range s.doc.Paths.InMatchingOrder() {
		for method, op := range s.doc.Paths.Value(tmpl).Operations() {
			o := Operation{Method: method, Template: tmpl, ID: op.OperationID, Summary: op.Summary, Description: op.Description}
			if rb := op.RequestBody; rb != nil && rb.Value != nil {
				o.HasBody = true
				o.BodyRequired = rb.Value.Required
			}
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Template != out[j].Template {
			return out[i].Template < out[j].Template
		}
		return out[i].Method < out[j].Method
	})
	return out
}

// Validate checks the method, path and body of one request against the
// spec. It returns nil for a valid request and otherwise an error naming
// what is wrong: an unknown path, a method the path does not have, a
// missing body, or each schema violation with the field it concerns.
// body is the raw request body (empty for none).
func (s *Spec) Validate(ctx context.Context, method, path string, body []byte) error {
	req, err := s.request(ctx, method, path, body)
	if err != nil {
		return err
	}
	route, params, err := s.find(req)
	if err != nil {
		return err
	}
	in := &openapi3filter.RequestValidationInput{
		Request:    req,
		PathParams: params,
		Route:      route,
		Options: &openapi3filter.Options{
			MultiError:          true,
			SkipSettingDefaults: true,
			AuthenticationFunc:  openapi3filter.NoopAuthenticationFunc,
			// Bodies the spec does not describe (GET /, PATCH
			// /balloon/hinting/stop) must be absent.
			RejectWhenRequestBodyNotSpecified: true,
			SchemaValidationOptions:           []openapi3.SchemaValidationOption{openapi3.DisableSchemaErrorDetails()},
		},
	}
	if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
		return fmt.Errorf("%s %s (%s): %s", method, path, route.Operation.OperationID, describe(err))
	}
	return nil
}

func (s *Spec) request(ctx context.Context, method, path string, body []byte) (*http.Request, error) {
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("%s %q: the path must start with /", method, path)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if len(body) > 0 {
		// Firecracker reads every body as JSON.
		req.Header.Set("Content-Type", "application/json")
	} else {
		req.Body = http.NoBody
	}
	return req, nil
}

func (s *Spec) find(req *http.Request) (*routers.Route, map[string]string, error) {
	route, params, err := s.router.FindRoute(req)
	switch {
	case err == nil:
		return route, params, nil
	case errors.Is(err, routers.ErrMethodNotAllowed):
		return nil, nil, fmt.Errorf("%s %s: the API has no %s operation on this path (it has %s)",
			req.Method, req.URL.Path, req.Method, strings.Join(s.methods(req), ", "))
	case errors.Is(err, routers.ErrPathNotFound):
		return nil, nil, fmt.Errorf("%s %s: the API has no such path", req.Method, req.URL.Path)
	default:
		return nil, nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
}

// methods lists the methods of the path req matched, for error messages.
func (s *Spec) methods(req *http.Request) []string {
	var out []string
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodPatch, http.MethodPost, http.MethodDelete} {
		r := req.Clone(req.Context())
		r.Method = m
		if _, _, err := s.router.FindRoute(r); err == nil {
			out = append(out, m)
		}
	}
	return out
}

// describe turns a validation error into one line per problem, each naming
// the field it concerns.
func describe(err error) string {
	var msgs []string
	var walk func(error, string)
	walk = func(err error, where string) {
		var multi openapi3.MultiError
		if errors.As(err, &multi) {
			for _, e := range multi {
				walk(e, where)
			}
			return
		}
		var reqErr *openapi3filter.RequestError
		if errors.As(err, &reqErr) && reqErr.Err != nil {
			w := where
			switch {
			case reqErr.Parameter != nil:
				w = fmt.Sprintf("path parameter %q", reqErr.Parameter.Name)
			case reqErr.RequestBody != nil:
				w = "body"
			}
			var inner openapi3.MultiError
			var schemaErr *openapi3.SchemaError
			if errors.As(reqErr.Err, &inner) || errors.As(reqErr.Err, &schemaErr) {
				walk(reqErr.Err, w)
				return
			}
			msgs = append(msgs, join(w, strings.TrimPrefix(reqErr.Error(), "request body has an error: ")))
			return
		}
		var schemaErr *openapi3.SchemaError
		if errors.As(err, &schemaErr) {
			if schemaErr.Origin != nil {
				var nested openapi3.MultiError
				var nestedSchema *openapi3.SchemaError
				if errors.As(schemaErr.Origin, &nested) || errors.As(schemaErr.Origin, &nestedSchema) {
					walk(schemaErr.Origin, where)
					return
				}
			}
			reason := schemaErr.Reason
			if reason == "" {
				reason = fmt.Sprintf("does not match the schema's %q", schemaErr.SchemaField)
			}
			if ptr := schemaErr.JSONPointer(); len(ptr) > 0 {
				msgs = append(msgs, join(where, fmt.Sprintf("field %q: %s", strings.Join(ptr, "."), reason)))
			} else {
				msgs = append(msgs, join(where, reason))
			}
			return
		}
		msgs = append(msgs, join(where, err.Error()))
	}
	walk(err, "")
	sort.Strings(msgs)
	msgs = compact(msgs)
	return strings.Join(msgs, "; ")
}

func join(where, msg string) string {
	if where == "" {
		return msg
	}
	return where + ": " + msg
}

func compact(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// UndeclaredFields lists the body fields (as dotted paths) that the
// operation's schema does not declare anywhere. The spec never forbids
// extra fields (it has no "additionalProperties: false"), so Validate
// accepts them; Firecracker itself refuses most of them (its request types
// deny unknown fields), which is why the fake asks this separately. A
// schema that allows additional properties (MMDS contents, the metrics
// "properties" map) declares everything under it. The body must be valid
// JSON; a method and path the spec lacks are an error.
func (s *Spec) UndeclaredFields(method, path string, body []byte) ([]string, error) {
	req, err := s.request(context.Background(), method, path, nil)
	if err != nil {
		return nil, err
	}
	route, _, err := s.find(req)
	if err != nil {
		return nil, err
	}
	rb := route.Operation.RequestBody
	if rb == nil || rb.Value == nil || len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	mt := rb.Value.Content.Get("application/json")
	if mt == nil || mt.Schema == nil {
		return nil, nil
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("%s %s: the body is not JSON: %w", method, path, err)
	}
	var out []string
	undeclared(mt.Schema.Value, v, "", &out)
	sort.Strings(out)
	return out, nil
}

func undeclared(schema *openapi3.Schema, v any, prefix string, out *[]string) {
	if schema == nil {
		return
	}
	switch v := v.(type) {
	case map[string]any:
		for k, val := range v {
			name := k
			if prefix != "" {
				name = prefix + "." + k
			}
			if p, ok := schema.Properties[k]; ok && p != nil {
				undeclared(p.Value, val, name, out)
				continue
			}
			ap := schema.AdditionalProperties
			switch {
			case ap.Schema != nil:
				undeclared(ap.Schema.Value, val, name, out)
			case ap.Has != nil && *ap.Has:
			default:
				*out = append(*out, name)
			}
		}
	case []any:
		if schema.Items == nil {
			return
		}
		for i, val := range v {
			undeclared(schema.Items.Value, val, fmt.Sprintf("%s[%d]", prefix, i), out)
		}
	}
}
