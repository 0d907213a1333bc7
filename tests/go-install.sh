#!/usr/bin/env bash
# Go without a checkout: installs batchdb into temporary prefixes, publishes bindings/go as
# module github.com/batchdb/batchdb/bindings/go at v<Cargo version> in a file-system GOPROXY
# (the module zip layout: @v/list, .info, .mod, .zip), then builds and runs the README's Go
# example in an empty module outside the checkout, with no replace directive and no build
# flags. It proves that the binary uses the installed library (found by pkg-config), not
# anything under the checkout's target/: PREFIX/lib/libbatchdb.so after a plain install, the
# archive linked in after `install.sh --static`. The module's own tests then pass in the
# shared mode.
#
#   bash tests/go-install.sh        (run by tests/all.sh; nothing is installed outside a temp dir)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
module=github.com/batchdb/batchdb/bindings/go
version="v$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)"

tmp="$(mktemp -d)"
# The module cache is read-only by design; make it writable so that it can be removed.
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
fail() { echo "go-install: $*" >&2; exit 1; }

# pkg-config is what the installed mode rests on; a fresh machine may lack it.
if ! command -v pkg-config >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get install -y pkg-config >/dev/null || { apt-get update >/dev/null && apt-get install -y pkg-config >/dev/null; }
    fi
    command -v pkg-config >/dev/null 2>&1 || fail "pkg-config is missing (install it, or run as root)"
fi

bash "$root/scripts/install.sh" "$tmp/shared" >/dev/null
bash "$root/scripts/install.sh" --static "$tmp/static" >/dev/null

# The module zip holds the committed files of bindings/go (what a tag would publish), each
# under "<module>@<version>/".
proxy="$tmp/proxy/$module/@v"
mkdir -p "$proxy" "$tmp/stage/$module@$version"
(cd "$root/bindings/go" && git ls-files -z . | xargs -0 cp --parents -t "$tmp/stage/$module@$version")
[ -f "$tmp/stage/$module@$version/go.mod" ] || fail "bindings/go has no committed go.mod"
# Zipped with Go's archive/zip, so that no zip tool is needed.
cat >"$tmp/mkzip.go" <<'EOF'
package main

import (
	"archive/zip"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// mkzip DIR OUT: a zip of DIR's files, named by their paths relative to DIR.
func main() {
	out, err := os.Create(os.Args[2])
	check(err)
	w := zip.NewWriter(out)
	check(filepath.WalkDir(os.Args[1], func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(os.Args[1], path)
		if err != nil {
			return err
		}
		f, err := w.Create(filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		_, err = io.Copy(f, in)
		return err
	}))
	check(w.Close())
	check(out.Close())
}

func check(err error) {
	if err != nil {
		panic(err)
	}
}
EOF
(cd "$tmp" && go run mkzip.go "$tmp/stage" "$proxy/$version.zip")
cp "$root/bindings/go/go.mod" "$proxy/$version.mod"
printf '{"Version":"%s","Time":"2026-01-01T00:00:00Z"}\n' "$version" >"$proxy/$version.info"
printf '%s\n' "$version" >"$proxy/list"

# A clean Go environment: only the file proxy, no checksum database (the module is not
# public), a fresh module cache, and nothing inherited that could point at the checkout.
export GOPROXY="file://$tmp/proxy" GOSUMDB=off GOFLAGS=-mod=mod
export GOPATH="$tmp/gopath"
unset GOWORK CGO_CFLAGS CGO_LDFLAGS LD_LIBRARY_PATH LIBRARY_PATH C_INCLUDE_PATH

# The README's Go example, verbatim, as the body of main; its database path moves into $tmp.
app="$tmp/app"
mkdir -p "$app"
example="$(awk '/^## Go$/ {s = 1} s && /^```go$/ {b = 1; next} b && /^```$/ {exit} b' "$root/README.md")"
[ -n "$example" ] || fail "README.md has no Go example under '## Go'"
{
    cat <<'EOF'
package main

import (
	"context"
	"io"
	"log"
	"os"
	"os/exec"
	"strings"

	batchdb "github.com/batchdb/batchdb/bindings/go"
)

func main() {
EOF
    printf '%s\n' "$example" | sed "s|/tmp/compute.db|$tmp/compute.db|"
    echo "}"
} >"$app/main.go"

# build PREFIX: fetches the module and builds $app/app against PREFIX. Go's build cache does
# not notice a change in pkg-config's answer, so each prefix gets its own module cache (so
# its own source path, which the cache does key on).
build() {
    export PKG_CONFIG_PATH="$1/lib/pkgconfig" GOMODCACHE="$1.modcache"
    (
        cd "$app"
        rm -f go.mod go.sum app
        go mod init example.com/app >/dev/null 2>&1
        go get "$module@$version"
        go build -o app .
        dir="$(go list -m -f '{{.Dir}}' "$module")"
        case "$dir" in "$GOMODCACHE"/*) ;; *) fail "module resolved to $dir, not the module cache" ;; esac
        [ "$(go list -m -f '{{.Version}}' "$module")" = "$version" ] || fail "module is not at $version"
    )
}

# run: two instances of "sleep 5; date" give two results, each the output of date(1).
run() {
    rm -f "$tmp/compute.db"*
    out="$("$app/app")"
    [ "$(printf '%s\n' "$out" | grep -c .)" = 2 ] || fail "expected two dates, got: $out"
    printf '%s\n' "$out" | while IFS= read -r line; do
        date -d "$line" >/dev/null 2>&1 || fail "not a date: $line"
    done
    printf '%s\n' "$out" | sed 's/^/  /'
}

build "$tmp/static"
ldd "$app/app" | grep -q libbatchdb && fail "the --static build loads a shared libbatchdb"
echo "go-install: the README example, linked with $tmp/static/lib/libbatchdb.a:"
run

build "$tmp/shared"
lib="$(ldd "$app/app" | awk '$1 == "libbatchdb.so" {print $3}')"
[ "$lib" = "$tmp/shared/lib/libbatchdb.so" ] ||
    fail "app loads libbatchdb.so from '${lib:-nowhere}', not $tmp/shared/lib"
echo "go-install: the README example, loading $lib:"
run

# The module's own suite, built from the module cache against the installed library.
(cd "$app" && go test -count=1 "$module")
