package server

import (
	"flag"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// leaf is one settable configuration value, addressed by its dotted YAML
// path ("listen.http"), its environment variable (MESHLENS_LISTEN_HTTP) and
// its flag (--listen.http).
type leaf struct {
	path string
	v    reflect.Value
}

// leaves walks cfg (a pointer to a struct) and returns every scalar field
// reachable through yaml-tagged struct fields, so that flags and environment
// variables cover the whole configuration without a hand-kept list.
func leaves(cfg any) []leaf {
	var out []leaf
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if name == "-" {
				continue
			}
			fv := v.Field(i)
			if name == "" {
				if f.Anonymous && fv.Kind() == reflect.Struct {
					walk(prefix, fv)
				}
				continue
			}
			path := name
			if prefix != "" {
				path = prefix + "." + name
			}
			switch {
			case fv.Type() == reflect.TypeOf(time.Duration(0)):
				out = append(out, leaf{path, fv})
			case fv.Kind() == reflect.Struct:
				walk(path, fv)
			case fv.Kind() == reflect.String, fv.Kind() == reflect.Bool,
				fv.Kind() == reflect.Int, fv.Kind() == reflect.Int64,
				fv.Kind() == reflect.Float64, fv.Kind() == reflect.Uint64:
				out = append(out, leaf{path, fv})
			}
		}
	}
	walk("", reflect.ValueOf(cfg).Elem())
	return out
}

// envName is the environment variable that overrides path.
func envName(path string) string {
	r := strings.NewReplacer(".", "_", "-", "_")
	return "MESHLENS_" + strings.ToUpper(r.Replace(path))
}

func setLeaf(l leaf, s string) error {
	v := l.v
	if v.Type() == reflect.TypeOf(time.Duration(0)) {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%s: %q is not a duration such as 10s or 72h", l.path, s)
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%s: %q is not true or false", l.path, s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %q is not an integer", l.path, s)
		}
		v.SetInt(n)
	case reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %q is not a non-negative integer", l.path, s)
		}
		v.SetUint(n)
	case reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("%s: %q is not a number", l.path, s)
		}
		v.SetFloat(f)
	}
	return nil
}

// applyEnv overrides cfg from MESHLENS_* variables in environ.
func applyEnv(cfg any, environ []string) error {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "MESHLENS_") {
			env[k] = v
		}
	}
	for _, l := range leaves(cfg) {
		if s, ok := env[envName(l.path)]; ok {
			if err := setLeaf(l, s); err != nil {
				return fmt.Errorf("environment %s: %w", envName(l.path), err)
			}
		}
	}
	return nil
}

// leafFlag is a flag.Value that records the string until the config file
// has been read, so flags win over file and environment.
type leafFlag struct {
	path string
	set  *map[string]string
}

func (f leafFlag) String() string { return "" }
func (f leafFlag) Set(s string) error {
	(*f.set)[f.path] = s
	return nil
}

// registerLeafFlags adds one --path flag per configuration leaf of a
// default config and returns the map that collects the values given.
func registerLeafFlags(fs *flag.FlagSet, defaults any) *map[string]string {
	set := map[string]string{}
	for _, l := range leaves(defaults) {
		fs.Var(leafFlag{path: l.path, set: &set}, l.path,
			fmt.Sprintf("overrides %s in the config file (env %s; default %v)", l.path, envName(l.path), l.v.Interface()))
	}
	return &set
}

// applyFlags applies collected flag values to cfg.
func applyFlags(cfg any, given map[string]string) error {
	for _, l := range leaves(cfg) {
		if s, ok := given[l.path]; ok {
			if err := setLeaf(l, s); err != nil {
				return fmt.Errorf("flag --%s: %w", l.path, err)
			}
		}
	}
	return nil
}

func osEnviron() []string { return os.Environ() }
