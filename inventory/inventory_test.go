package inventory

import (
	"encoding/json"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetdeploy/fleet/internal/golden"
)

// testOptions reads the tests' own ssh_config, with a home directory of
// the test's own, so results do not depend on the machine.
func testOptions(t *testing.T) Options {
	t.Setenv("HOME", t.TempDir())
	return Options{SSHConfig: "testdata/ssh_config"}
}

// render prints an inventory as its JSON listing, with the current user's
// name (the default user) replaced by $USER.
func render(t *testing.T, inv *Inventory) string {
	b, err := json.MarshalIndent(inv.Listing(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	out := strings.ReplaceAll(string(b)+"\n", os.Getenv("HOME"), "~")
	if u, err := user.Current(); err == nil {
		out = strings.ReplaceAll(out, `"user": "`+u.Username+`"`, `"user": "$USER"`)
	}
	if len(inv.Warnings) > 0 {
		out += "\nwarnings:\n"
		for _, w := range inv.Warnings {
			out += w.Error() + "\n"
		}
	}
	return out
}

func TestValidInventories(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*")
	files = append(files, "testdata/ansible/inventory.ini", "testdata/ansible-dir")
	for _, f := range files {
		if strings.HasSuffix(f, ".golden") {
			continue
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			inv, err := Load(f, testOptions(t))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			golden.Check(t, f+".golden", render(t, inv))
		})
	}
}

func TestInvalidInventories(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*")
	for _, f := range files {
		if strings.HasSuffix(f, ".golden") {
			continue
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := Load(f, testOptions(t))
			if err == nil {
				t.Fatal("Load succeeded")
			}
			golden.Check(t, f+".golden", err.Error()+"\n")
		})
	}
}

func TestFormatDetection(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{"hosts:\n  web1: {}\n", "fleet"},
		{"defaults: {user: x}\n", "fleet"},
		{"all:\n  hosts:\n    web1:\n", "ansible-yaml"},
		{"web:\n  hosts:\n    web1:\n", "ansible-yaml"},
		{"[web]\nweb1\n", "ansible-ini"},
		{"web1 ansible_host=1.2.3.4\n", "ansible-ini"},
		{"# comment\nweb1\nweb2\n", "ansible-ini"},
		{"plugin: constructed\ngroups:\n  big: true\n", "ansible-yaml"},
	} {
		if got := detect([]byte(c.text)); got != c.want {
			t.Errorf("detect(%q) = %s, want %s", c.text, got, c.want)
		}
	}
}

func TestHostRanges(t *testing.T) {
	for _, c := range []struct {
		pattern string
		want    string
		port    string
		err     string
	}{
		{pattern: "web[01:03].example.com", want: "web01.example.com web02.example.com web03.example.com"},
		{pattern: "web[1:10:4]", want: "web1 web5 web9"},
		{pattern: "db-[a:c]", want: "db-a db-b db-c"},
		{pattern: "r[1:2]-[a:b]", want: "r1-a r1-b r2-a r2-b"},
		{pattern: "web[8:10]", want: "web8 web9 web10"},
		{pattern: "host:2222", want: "host", port: "2222"},
		{pattern: "web[1:2]:2200", want: "web1 web2", port: "2200"},
		{pattern: "web[3:1]", err: "the end must be a number not below the start"},
		{pattern: "web[1:x]", err: "the end must be a number"},
		{pattern: "web[1:3", err: "range without ']'"},
		{pattern: "web[1:5:0]", err: "stride"},
		{pattern: "host:99999", err: "port"},
		{pattern: "web[1:100000]", err: "more than 10000"},
	} {
		names, port, err := expandHostPattern(c.pattern)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want %q", c.pattern, err, c.err)
			}
			continue
		}
		if err != nil || strings.Join(names, " ") != c.want || port != c.port {
			t.Errorf("%s: %v %q %v, want %s %q", c.pattern, names, port, err, c.want, c.port)
		}
	}
}

func TestJumpFromSSHArgs(t *testing.T) {
	for _, c := range []struct {
		args, jump, ignored string
	}{
		{args: "-o ProxyJump=bastion", jump: "bastion"},
		{args: "-oProxyJump=a,b", jump: "a,b"},
		{args: "-J ops@gw:2222", jump: "ops@gw:2222"},
		{args: `-o ProxyCommand="ssh -W %h:%p -q ops@gw"`, jump: "ops@gw"},
		{args: `-o ProxyCommand="ssh -W %h:%p -p 2200 -l ops gw"`, jump: "ops@gw:2200"},
		{args: `-o StrictHostKeyChecking=no -J gw`, jump: "gw", ignored: "-o StrictHostKeyChecking=no"},
		{args: `-o ProxyCommand="nc -X connect -x proxy:3128 %h %p"`, ignored: "-o ProxyCommand=nc -X connect -x proxy:3128 %h %p"},
	} {
		jump, ignored := jumpFromSSHArgs(c.args)
		if strings.Join(jump, ",") != c.jump || strings.Join(ignored, " ") != c.ignored {
			t.Errorf("%s: jump %v ignored %v, want %q %q", c.args, jump, ignored, c.jump, c.ignored)
		}
	}
}

// TestSSHConfigAsOpenSSHReadsIt checks what only OpenSSH's own reading
// gives: Include, first-match-wins, wildcards, and the inventory's explicit
// values above all of it.
func TestSSHConfigAsOpenSSHReadsIt(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	extra := filepath.Join(dir, "extra.conf")
	os.WriteFile(extra, []byte("Host db-*\n  User postgres\n  Port 5022\n  IdentityFile ~/.ssh/db_key\n"), 0o644)
	main := filepath.Join(dir, "config")
	os.WriteFile(main, []byte("Include "+extra+"\n\nHost db-2\n  User first-match-loses-to-include\n\nHost * !gate.example.com\n  User everyone\n  ProxyJump gate.example.com\n"), 0o644)
	inv, err := Parse("inventory.yaml", []byte("hosts:\n  db-1: {}\n  db-2: {port: 6022}\n  web: {user: www, jump: []}\n"), Options{SSHConfig: main})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		host, user, key string
		port            int
		jump            string
	}{
		{"db-1", "postgres", filepath.Join(dir, ".ssh/db_key"), 5022, "gate.example.com"},
		{"db-2", "postgres", filepath.Join(dir, ".ssh/db_key"), 6022, "gate.example.com"},
		{"web", "www", "", 22, ""},
	} {
		h := inv.Host(c.host)
		var jump []string
		for _, hop := range h.Jump {
			jump = append(jump, hop.Name)
		}
		key := ""
		if len(h.IdentityFiles) > 0 && c.key != "" {
			key = h.IdentityFiles[0]
		}
		if h.User != c.user || h.Port != c.port || key != c.key || strings.Join(jump, ",") != c.jump {
			t.Errorf("%s: user %s port %d key %q jump %v; want %s %d %q %s", c.host, h.User, h.Port, key, jump, c.user, c.port, c.key, c.jump)
		}
	}
}

// TestInventoryDirectory checks what the golden files cannot show: the
// files a directory was read from, in order, and symbolic links, followed
// as Ansible follows them but never round in a loop.
func TestInventoryDirectory(t *testing.T) {
	inv, err := Load("testdata/ansible-dir", testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"testdata/ansible-dir/hosts",
		"testdata/ansible-dir/sub/monitoring",
		"testdata/ansible-dir/web.yml",
		"testdata/ansible-dir/zz-comments",
		"testdata/ansible-dir/group_vars/all.yml",
		"testdata/ansible-dir/group_vars/backend.yml",
		"testdata/ansible-dir/group_vars/web.yml",
		"testdata/ansible-dir/host_vars/db1.yml",
	}
	if inv.Format != "ansible-dir" || strings.Join(inv.Files, "\n") != strings.Join(want, "\n") {
		t.Errorf("format %s, files:\n%s\nwant:\n%s", inv.Format, strings.Join(inv.Files, "\n"), strings.Join(want, "\n"))
	}

	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "hosts"), []byte("[web]\nweb1\n"), 0o644)
	os.Mkdir(filepath.Join(dir, "more"), 0o755)
	os.WriteFile(filepath.Join(dir, "more", "db"), []byte("[db]\ndb1\n"), 0o644)
	if err := os.Symlink(filepath.Join(dir, "more", "db"), filepath.Join(dir, "linked")); err != nil {
		t.Skip(err)
	}
	inv, err = Load(dir, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(inv.Names(), " "); got != "db1 web1" {
		t.Errorf("hosts %s, want db1 web1", got)
	}
	os.Symlink("..", filepath.Join(dir, "more", "up"))
	_, err = Load(dir, testOptions(t))
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "more", "up")+": a symbolic link back to a directory above it") {
		t.Errorf("a symbolic link loop: %v", err)
	}
}
