package chstandin

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
)

// APIPrefix is the URL path every Cloud Hypervisor API route starts with.
const APIPrefix = "/api/v1/"

// Spec is the official Cloud Hypervisor OpenAPI document, used to check what clients send.
type Spec struct {
	doc *openapi3.T
}

// specDocument is the official OpenAPI document, copied verbatim from upstream (openapi/SOURCE.txt
// says from where). It is compiled in, so the stand-in and its binary work wherever they run.
//
//go:embed openapi/cloud-hypervisor.yaml
var specDocument []byte

var loaded struct {
	once sync.Once
	spec *Spec
	err  error
}

// LoadSpec parses and checks the embedded OpenAPI document once per process.
func LoadSpec() (*Spec, error) {
	loaded.once.Do(func() { loaded.spec, loaded.err = ParseSpec(specDocument) })
	return loaded.spec, loaded.err
}

// ParseSpec parses and validates an OpenAPI document.
func ParseSpec(data []byte) (*Spec, error) {
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("parse the Cloud Hypervisor API spec: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("the Cloud Hypervisor API spec is not a valid OpenAPI document: %w", err)
	}
	return &Spec{doc: doc}, nil
}

// ErrNotInSpec means the spec has no operation for the request's method and path.
var ErrNotInSpec = errors.New("no such operation in the Cloud Hypervisor API spec")

func (s *Spec) route(method, action string) (*routers.Route, error) {
	path := "/" + action
	item := s.doc.Paths.Value(path)
	if item == nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, ErrNotInSpec)
	}
	op := item.GetOperation(method)
	if op == nil {
		return nil, fmt.Errorf("%s %s: %w (the path exists for other methods)", method, path, ErrNotInSpec)
	}
	return &routers.Route{Spec: s.doc, Path: path, PathItem: item, Method: method, Operation: op}, nil
}

func options() *openapi3filter.Options {
	return &openapi3filter.Options{
		MultiError:                        true,
		SkipSettingDefaults:               true,
		RejectWhenRequestBodyNotSpecified: true,
		SchemaValidationOptions:           []openapi3.SchemaValidationOption{openapi3.DisableSchemaErrorDetails()},
	}
}

// CheckRequest reports how a request departs from the spec, or nil when it conforms. r's body is
// not read: body is the request body.
func (s *Spec) CheckRequest(r *http.Request, body []byte) error {
	action, ok := strings.CutPrefix(r.URL.Path, APIPrefix)
	if !ok {
		return fmt.Errorf("%s %s: %w (routes start with %s)", r.Method, r.URL.Path, ErrNotInSpec, APIPrefix)
	}
	route, err := s.route(r.Method, action)
	if err != nil {
		return err
	}
	req := r.Clone(context.Background())
	req.Body = http.NoBody
	if len(body) > 0 {
		req.Body = nopCloser{bytes.NewReader(body)}
	}
	req.ContentLength = int64(len(body))
	req.GetBody = nil
	in := &openapi3filter.RequestValidationInput{Request: req, Route: route, Options: options()}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		return fmt.Errorf("%s %s: %w", r.Method, r.URL.Path, err)
	}
	if rb := route.Operation.RequestBody; rb != nil && len(body) > 0 {
		if mt := rb.Value.Content.Get("application/json"); mt != nil && mt.Schema != nil {
			var v any
			if err := json.Unmarshal(body, &v); err == nil {
				if extra := undeclared(mt.Schema.Value, v, ""); len(extra) > 0 {
					return fmt.Errorf("%s %s: %w: %s", r.Method, r.URL.Path, ErrUndeclaredField, strings.Join(extra, ", "))
				}
			}
		}
	}
	return nil
}

// ErrUndeclaredField means a request body has a field its schema does not declare. The spec
// allows that, but the server drops such fields without a word, so a client sending one is
// almost certainly mistaken (a typo, or a field of a newer release).
var ErrUndeclaredField = errors.New("field not declared in the spec")

// undeclared lists the JSON paths of v's object fields that schema does not declare.
func undeclared(schema *openapi3.Schema, v any, path string) []string {
	if schema == nil {
		return nil
	}
	var out []string
	switch v := v.(type) {
	case map[string]any:
		if schema.AdditionalProperties.Schema != nil || (schema.AdditionalProperties.Has != nil && *schema.AdditionalProperties.Has) {
			return nil
		}
		for key, val := range v {
			prop, ok := schema.Properties[key]
			if !ok {
				out = append(out, path+"/"+key)
				continue
			}
			out = append(out, undeclared(prop.Value, val, path+"/"+key)...)
		}
	case []any:
		if schema.Items != nil {
			for i, item := range v {
				out = append(out, undeclared(schema.Items.Value, item, fmt.Sprintf("%s/%d", path, i))...)
			}
		}
	}
	slices.Sort(out)
	return out
}

// CheckBody checks a JSON request body for a PUT action such as "vm.create".
func (s *Spec) CheckBody(action string, body []byte) error {
	r, err := http.NewRequest(http.MethodPut, "http://localhost"+APIPrefix+action, nil)
	if err != nil {
		return err
	}
	if len(body) > 0 {
		r.Header.Set("Content-Type", "application/json")
	}
	return s.CheckRequest(r, body)
}

// CheckResponse reports how a response departs from what the spec documents for r's operation.
// Statuses the spec does not list are not errors: the real server uses several the spec does not
// mention (200 for vmm.shutdown, 500 for most errors), and the spec describes no error bodies.
func (s *Spec) CheckResponse(r *http.Request, status int, header http.Header, body []byte) error {
	action, _ := strings.CutPrefix(r.URL.Path, APIPrefix)
	route, err := s.route(r.Method, action)
	if err != nil {
		return err
	}
	req := r.Clone(context.Background())
	req.Body = http.NoBody
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, Route: route, Options: options()},
		Status:                 status,
		Header:                 header,
		Options:                options(),
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		return fmt.Errorf("response %d to %s %s: %w", status, r.Method, r.URL.Path, err)
	}
	return nil
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }
