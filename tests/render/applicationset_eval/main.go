// Command applicationset_eval generates Applications from an ApplicationSet's goTemplate and a
// set of git files the way Argo CD's git files generator and template renderer do, so the tests
// can check the rendered ApplicationSet without an Argo CD (which cannot be built here).
//
// What it reproduces, from argoproj/argo-cd:
//   - applicationset/generators/git.go, generateParamsFromGitFile (goTemplate branch): the file
//     is one object or an array of objects; each object's keys are copied into the parameters,
//     then "path" is set (path, basename, filename, segments), replacing any "path" key of the
//     file. basenameNormalized/filenameNormalized (utils.SanitizeName) are left out: unused.
//   - applicationset/utils/utils.go, Render: every string of the template is parsed with Go's
//     text/template with the ApplicationSet's goTemplateOptions and executed on the parameters
//     (the template uses no sprig function, so none is registered here).
//   - applicationset/controllers/applicationset_controller.go, validateGeneratedApplications:
//     a second Application with a name already generated is refused ("duplicate name").
//
// The file selection approximates the repo-server's glob with Go's path.Match (* never
// crosses "/"). Stdlib only: no module download.
//
// Input (stdin, JSON): {"template": {...}, "options": [...], "pattern": "...", "files": {path: text}}
// Output (stdout, JSON): {"applications": [...], "errors": ["..."]}
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"
	"text/template"
)

type input struct {
	Template map[string]any    `json:"template"`
	Options  []string          `json:"options"`
	Pattern  string            `json:"pattern"`
	Files    map[string]string `json:"files"`
}

func params(filePath string, content []byte) ([]map[string]any, error) {
	var objects []map[string]any
	single := map[string]any{}
	if err := json.Unmarshal(content, &single); err == nil {
		objects = append(objects, single)
	} else if err := json.Unmarshal(content, &objects); err != nil {
		return nil, fmt.Errorf("unable to parse file: %w", err)
	}
	var out []map[string]any
	for _, object := range objects {
		p := map[string]any{}
		for k, v := range object {
			p[k] = v
		}
		dir := path.Dir(filePath)
		p["path"] = map[string]any{
			"path":     dir,
			"basename": path.Base(dir),
			"filename": path.Base(filePath),
			"segments": strings.Split(dir, "/"),
		}
		out = append(out, p)
	}
	return out, nil
}

func render(value any, p map[string]any, options []string) (any, error) {
	switch v := value.(type) {
	case string:
		t, err := template.New("").Option(options...).Parse(v)
		if err != nil {
			return nil, err
		}
		var b bytes.Buffer
		if err := t.Execute(&b, p); err != nil {
			return nil, err
		}
		return b.String(), nil
	case map[string]any:
		out := map[string]any{}
		for k, x := range v {
			r, err := render(x, p, options)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			r, err := render(x, p, options)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	default:
		return v, nil
	}
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var paths []string
	for p := range in.Files {
		if ok, _ := path.Match(in.Pattern, p); ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	apps := []any{}
	errs := []string{}
	seen := map[string]bool{}
	for _, p := range paths {
		all, err := params(p, []byte(in.Files[p]))
		if err != nil {
			errs = append(errs, fmt.Sprintf("unable to process file '%s': %v", p, err))
			continue
		}
		for _, ps := range all {
			app, err := render(in.Template, ps, in.Options)
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			name, _ := app.(map[string]any)["metadata"].(map[string]any)["name"].(string)
			if seen[name] {
				errs = append(errs, "contains applications with duplicate name: "+name)
				continue
			}
			seen[name] = true
			apps = append(apps, app)
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(map[string]any{"applications": apps, "errors": errs}); err != nil {
		os.Exit(2)
	}
}
