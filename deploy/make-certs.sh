#!/usr/bin/env bash
# A private certificate authority and the certificates TLS/mTLS needs (README, "Deploy", "TLS").
#
#   deploy/make-certs.sh DIR [NAME...]
#
# In DIR (created when missing; keys mode 0600, certificates 0644):
#   ca.crt  ca.key       the CA: made once, reused on later runs (keep ca.key away from the services)
#   tls.crt tls.key      the services' certificate, for serving and for calling each other (mTLS);
#                        names: localhost, 127.0.0.1, ::1, the compose service names (gateway, data,
#                        ...), the Kubernetes ones (trader-gateway, ...) and every NAME given
#   client.crt client.key  a certificate for people's tools (grpcurl -cert/-key, trader call --cert/--key)
# ECDSA P-256 keys, SHA-256 signatures; certificates valid CERT_DAYS days (default 397), the CA ten
# years. Run it again to renew (or to add names): the CA stays, the other certificates are new.
# Needs the openssl command line tool.
set -euo pipefail
if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
    echo "usage: $0 DIR [NAME...]   (see the top of this file)" >&2
    exit 2
fi
dir=$1
shift
days=${CERT_DAYS:-397}
command -v openssl >/dev/null || { echo "make-certs: the openssl command is needed" >&2; exit 1; }
mkdir -p "$dir"   # readable (the services' user must reach tls.key in it); the keys are not
umask 077
cd "$dir"
trap 'rm -f ./*.new ./*.csr ./*.ext .openssl.log' EXIT  # what a failed step leaves
quiet() {  # openssl's progress goes to stderr: shown only when it fails
    "$@" 2>.openssl.log || { cat .openssl.log >&2; exit 1; }
}

names=(localhost gateway data portfolio planner trading display
       trader-gateway trader-data trader-portfolio trader-planner trader-trading trader-display "$@")
san="IP:127.0.0.1,IP:::1"
for name in "${names[@]}"; do
    if [[ "$name" =~ ^[0-9.]+$ || "$name" == *:* ]]; then san+=",IP:$name"; else san+=",DNS:$name"; fi
done

if [ ! -f ca.key ] || [ ! -f ca.crt ]; then
    quiet openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 3650 \
        -subj "/CN=trader private CA" -keyout ca.key -out ca.crt \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign"
    echo "make-certs: new CA in $dir/ca.crt"
fi

issue() {  # issue NAME SUBJECT EXTENSIONS: NAME.key and NAME.crt replaced together, or neither
    quiet openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
        -subj "$2" -keyout "$1.key.new" -out "$1.csr"
    printf '%s\n' "$3" >"$1.ext"
    quiet openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days "$days" \
        -extfile "$1.ext" -out "$1.crt.new"
    rm -f "$1.csr" "$1.ext"
    mv "$1.key.new" "$1.key"
    mv "$1.crt.new" "$1.crt"
    echo "make-certs: $dir/$1.crt ($2, $days days)"
}
issue tls "/CN=trader services" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san"
issue client "/CN=trader-client" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
chmod 0644 ca.crt tls.crt client.crt
