#!/usr/bin/env bash
# tls_certs.sh DIR [NAME...] — a local certificate authority and, signed by
# it, a server certificate (for localhost, 127.0.0.1, ::1 and each NAME) and
# a client certificate, as PEM files in DIR:
#   ca.pem ca.key  server.pem server.key  client.pem client.key
# Files already there are kept. Needs openssl.
set -euo pipefail

dir=${1:?usage: tls_certs.sh DIR [NAME...]}
shift
umask 077
mkdir -p "$dir"
cd "$dir"

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [[ ! -f ca.pem || ! -f ca.key ]]; then
  new_key ca.key
  openssl req -x509 -new -key ca.key -out ca.pem -days 3650 -subj "/CN=buildd local CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
fi

# issue NAME CN EXTENSIONS
issue() {
  local name=$1 cn=$2 extensions=$3
  [[ -f $name.pem && -f $name.key ]] && return 0
  new_key "$name.key"
  openssl req -new -key "$name.key" -subj "/CN=$cn" -out "$name.csr"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
    -out "$name.pem" -extfile <(printf '%s\n' "$extensions") 2>/dev/null
  rm -f "$name.csr"
}

names="DNS:localhost,IP:127.0.0.1,IP:::1"
for name in "$@"; do names+=",DNS:$name"; done
issue server "buildd server" "subjectAltName=$names
extendedKeyUsage=serverAuth
keyUsage=critical,digitalSignature"
issue client "buildd client" "extendedKeyUsage=clientAuth
keyUsage=critical,digitalSignature"
chmod 644 ca.pem server.pem client.pem
