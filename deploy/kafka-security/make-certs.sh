#!/usr/bin/env bash
# Certificates for the secured broker of docker-compose.kafka-sasl.yml, in PEM (openssl):
#
#   ca.pem               a private CA: the broker and the clients trust it
#   ca.key               its key, used here only to sign: never mount it anywhere
#   broker-keystore.pem  the broker's key (unencrypted PKCS#8) and certificate chain, for
#                        Kafka's ssl.keystore.type=PEM; the certificate names the compose
#                        hosts kafka, kafka-2, kafka-3, and localhost (BROKER_HOSTS)
#   client.pem           a client certificate for mutual TLS (CN=ecommerce: CLIENT_CN)
#   client.key           its key; encrypted (PKCS#8, AES-256) with KAFKA_SSL_KEY_PASSWORD
#                        when that is set, and the app then needs the same variable
#
# Usage: deploy/kafka-security/make-certs.sh [OUT_DIR]   (default: deploy/kafka-security/certs,
# which git ignores). Nothing is overwritten: delete OUT_DIR to make new certificates.
set -euo pipefail

out="${1:-$(dirname "$0")/certs}"
days="${CERT_DAYS:-825}"
broker_hosts="${BROKER_HOSTS:-kafka kafka-2 kafka-3 localhost}"
client_cn="${CLIENT_CN:-ecommerce}"

mkdir -p "$out"
cd "$out"
for name in ca.key ca.pem broker-keystore.pem client.key client.pem; do
  if [ -e "$name" ]; then
    echo "$out/$name exists: delete $out to make new certificates" >&2
    exit 1
  fi
done

umask 077
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# A random positive serial per certificate.
serial() { echo "0x$(openssl rand -hex 15)"; }

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ca.key
openssl req -x509 -new -key ca.key -sha256 -days "$days" -subj "/CN=ecommerce Kafka CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.pem

# The broker: server and client authentication (brokers also connect to each other).
sans=""
for host in $broker_hosts; do sans="${sans:+$sans,}DNS:$host"; done
cat > "$work/broker.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$sans,IP:127.0.0.1
EXT
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/broker.key"
openssl req -new -key "$work/broker.key" -subj "/CN=${broker_hosts%% *}" -out "$work/broker.csr"
openssl x509 -req -in "$work/broker.csr" -CA ca.pem -CAkey ca.key -set_serial "$(serial)" \
  -days "$days" -sha256 -extfile "$work/broker.ext" -out "$work/broker.pem" 2>/dev/null
cat "$work/broker.key" "$work/broker.pem" ca.pem > broker-keystore.pem

# The client, for mutual TLS: its subject is the principal the broker sees (User:CN=...).
cat > "$work/client.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
EXT
if [ -n "${KAFKA_SSL_KEY_PASSWORD:-}" ]; then
  # Read from the environment, never from the command line (other users see arguments).
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -aes-256-cbc \
    -pass env:KAFKA_SSL_KEY_PASSWORD -out client.key
  passin=(-passin env:KAFKA_SSL_KEY_PASSWORD)
else
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out client.key
  passin=()
fi
openssl req -new -key client.key "${passin[@]}" -subj "/CN=$client_cn" -out "$work/client.csr"
openssl x509 -req -in "$work/client.csr" -CA ca.pem -CAkey ca.key -set_serial "$(serial)" \
  -days "$days" -sha256 -extfile "$work/client.ext" -out client.pem 2>/dev/null

# The containers read these as users of their own (Kafka uid 1000, the app uid 10001), not
# as you: everything but the CA key is readable by all. For a single host; a production
# cluster takes its keys from a secret store.
chmod 0755 .
chmod 0644 ca.pem broker-keystore.pem client.pem client.key
echo "certificates in $out: ca.pem, broker-keystore.pem, client.pem, client.key (CA key: ca.key)"
