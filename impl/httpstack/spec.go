package httpstack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"gopkg.in/yaml.v3"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/auth"
)

// Spec loads openapi.yaml exactly as written (gen.SpecYAML). The
// generator's own embedded copy (gen.GetSwagger) is not used: it renames
// operation ids and drops the operations excluded from generation.
func Spec() (*openapi3.T, error) {
	doc, err := openapi3.NewLoader().LoadFromData(gen.SpecYAML)
	if err != nil {
		return nil, fmt.Errorf("load embedded openapi.yaml: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("embedded openapi.yaml: %w", err)
	}
	return doc, nil
}

// servedSpec is the spec a server serves at /openapi.yaml and /openapi.json:
// openapi.yaml (raw, the embedded gen.SpecYAML) with every operation's
// security replaced by the requirements that apply under the posture
// (auth.Config.ServedSecurity, the same rule the gate applies), and a
// sentence on the posture appended to the description. With auth off there
// are no users: every operation is just [{}] (anonymous) and the copy has
// no global security and no security schemes. doc is raw loaded
// (Spec); validation keeps using it, not this copy. The copy is made
// once, at start-up.
//
// The YAML is edited as a node tree so that it keeps the file's order,
// comments and block texts; the JSON is that YAML, loaded and validated by
// kin-openapi.
func servedSpec(raw []byte, doc *openapi3.T, posture auth.Config) (yamlOut, jsonOut []byte, err error) {
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return nil, nil, fmt.Errorf("served spec: %w", err)
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return nil, nil, fmt.Errorf("served spec: openapi.yaml is not a mapping")
	}
	top := root.Content[0]
	hasUsers := true
	paths := mapValue(top, "paths")
	if paths == nil || paths.Kind != yaml.MappingNode {
		return nil, nil, fmt.Errorf("served spec: no paths")
	}
	for i := 0; i+1 < len(paths.Content); i += 2 {
		path, item := paths.Content[i].Value, paths.Content[i+1]
		pi := doc.Paths.Value(path)
		if pi == nil || item.Kind != yaml.MappingNode {
			return nil, nil, fmt.Errorf("served spec: path %s not in the loaded spec", path)
		}
		for j := 0; j+1 < len(item.Content); j += 2 {
			method := strings.ToUpper(item.Content[j].Value)
			if !slices.Contains(httpMethods, method) {
				continue
			}
			op := pi.GetOperation(method)
			if op == nil {
				return nil, nil, fmt.Errorf("served spec: %s %s not in the loaded spec", method, path)
			}
			reqs, users := posture.ServedSecurity(method, op, doc.Security)
			hasUsers = users
			setMapValue(item.Content[j+1], "security", securityNode(reqs), "responses")
		}
	}
	if !hasUsers {
		deleteMapKey(top, "security")
		if comp := mapValue(top, "components"); comp != nil {
			deleteMapKey(comp, "securitySchemes")
		}
	}
	if info := mapValue(top, "info"); info != nil {
		if d := mapValue(info, "description"); d != nil && d.Kind == yaml.ScalarNode {
			d.Value = strings.TrimRight(d.Value, "\n") + "\n\n" + posture.Describe() + "\n"
			d.Style = yaml.LiteralStyle
		}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&root); err != nil {
		return nil, nil, fmt.Errorf("served spec: encode: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, nil, fmt.Errorf("served spec: encode: %w", err)
	}
	served, err := openapi3.NewLoader().LoadFromData(buf.Bytes())
	if err != nil {
		return nil, nil, fmt.Errorf("served spec: load: %w", err)
	}
	if err := served.Validate(context.Background()); err != nil {
		return nil, nil, fmt.Errorf("served spec: %w", err)
	}
	jsonOut, err = json.Marshal(served)
	if err != nil {
		return nil, nil, fmt.Errorf("served spec: encode JSON: %w", err)
	}
	return buf.Bytes(), jsonOut, nil
}

var httpMethods = []string{
	http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete,
	http.MethodOptions, http.MethodHead, http.MethodPatch, http.MethodTrace,
}

// securityNode renders requirements as YAML: a sequence of flow mappings,
// `{}` or `bearerAuth: []`, schemes in name order.
func securityNode(reqs openapi3.SecurityRequirements) *yaml.Node {
	seq := &yaml.Node{Kind: yaml.SequenceNode}
	for _, req := range reqs {
		m := &yaml.Node{Kind: yaml.MappingNode}
		if len(req) == 0 {
			m.Style = yaml.FlowStyle
		}
		names := make([]string, 0, len(req))
		for name := range req {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			scopes := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for _, s := range req[name] {
				scopes.Content = append(scopes.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: s})
			}
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: name}, scopes)
		}
		seq.Content = append(seq.Content, m)
	}
	return seq
}

// mapValue returns the value of key in the mapping m, or nil.
func mapValue(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// setMapValue replaces the value of key in m, or inserts key before the key
// before (at the end when m has no such key).
func setMapValue(m *yaml.Node, key string, v *yaml.Node, before string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	at := len(m.Content)
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == before {
			at = i
			break
		}
	}
	k := &yaml.Node{Kind: yaml.ScalarNode, Value: key}
	m.Content = slices.Insert(m.Content, at, k, v)
}

// deleteMapKey removes key and its value from m.
func deleteMapKey(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = slices.Delete(m.Content, i, i+2)
			return
		}
	}
}
