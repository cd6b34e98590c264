#!/bin/sh
# Run by nginx's image before it starts: make a self-signed certificate for a LAN when the
# lab has not put its own tls.crt and tls.key in the tls volume.
set -eu
cert="${TLS_CERT:-/etc/nginx/tls/tls.crt}"
key="${TLS_KEY:-/etc/nginx/tls/tls.key}"
if [ -s "$cert" ] && [ -s "$key" ]; then
    exit 0
fi
mkdir -p "$(dirname "$cert")" "$(dirname "$key")"
umask 077
openssl req -x509 -newkey rsa:3072 -nodes -days 825 \
    -subj "/CN=${TLS_HOSTNAME:-localhost}" \
    -addext "subjectAltName=DNS:${TLS_HOSTNAME:-localhost}" \
    -keyout "$key" -out "$cert" 2>/dev/null
echo "self-signed.sh: made a self-signed certificate for ${TLS_HOSTNAME:-localhost}"
