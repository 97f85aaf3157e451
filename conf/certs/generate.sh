#!/bin/sh
# Regenerate the TEST-ONLY example certificates used by conf/edge.yaml.
#
#   sh conf/certs/generate.sh [DIRECTORY]     (default: conf/certs)
#
# Makes a throw-away "linkerpy Example Test CA" (its key is deleted at the
# end), two server certificates (www.example.test, api.example.test) and a
# client certificate (client.example.test) signed by it, EC P-256, valid for
# ten years.  Every private key file starts with a warning line: these keys
# are published with the source code and must never protect anything real.
# Use your own certificates (and keep their keys secret) in production.
set -eu
DIR="${1:-$(dirname "$0")}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
WARN="TEST ONLY: published example key from linkerpy conf/certs; it protects nothing, never use it."

key() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/$1.key" 2>/dev/null
}

key ca
openssl req -x509 -new -key "$WORK/ca.key" -sha256 -days 3650 -subj "/O=linkerpy example/CN=linkerpy Example Test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$WORK/ca.crt"

leaf() {  # name, extendedKeyUsage
  key "$1"
  openssl req -new -key "$WORK/$1.key" -subj "/O=linkerpy example/CN=$1" -out "$WORK/$1.csr"
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=DNS:%s\n' "$2" "$1" > "$WORK/$1.ext"
  openssl x509 -req -in "$WORK/$1.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" -CAcreateserial -sha256 -days 3650 \
    -extfile "$WORK/$1.ext" -out "$WORK/$1.crt" 2>/dev/null
  { echo "$WARN"; cat "$WORK/$1.key"; } > "$DIR/$1.key"
  { echo "TEST ONLY example certificate for $1 (signed by example-ca.crt)"; cat "$WORK/$1.crt"; } > "$DIR/$1.crt"
}

leaf www.example.test serverAuth
leaf api.example.test serverAuth
leaf client.example.test clientAuth
{ echo "TEST ONLY linkerpy Example Test CA (its key was thrown away)"; cat "$WORK/ca.crt"; } > "$DIR/example-ca.crt"
echo "wrote test-only example certificates to $DIR"
