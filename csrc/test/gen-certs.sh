#!/bin/sh
# Makes the certificates the TLS tests use, into DIR (created if missing).
# Nothing here is committed: csrc/test/test_tls.c runs this into a fresh
# temporary directory and removes it afterwards.
#
#   ca.pem ca.key            test CA
#   ca2.pem ca2.key          a second, unrelated CA
#   server.pem server.key    signed by ca: DNS localhost, IP 127.0.0.1, ::1,
#                            2001:db8::ab
#   chain.pem                server.pem followed by ca.pem
#   expired.pem expired.key  signed by ca, same names, valid 2020 only
#   other.pem other.key      signed by ca: DNS other.example
#   client.pem client.key    signed by ca, clientAuth
#   client2.pem client2.key  signed by ca2, clientAuth
#   garbage.pem              PEM armour around bytes that are not base64
#   cadir/                   a directory holding ca.pem
#
# Keys are EC P-256: quick to make and quick to use under valgrind.
set -eu

dir=${1:?usage: gen-certs.sh DIR}
mkdir -p "$dir"
cd "$dir"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ca() { # name subject
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -sha256 -days 3650 -subj "$2" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$1.pem"
}

leaf() { # name subject ca ext-lines
  key "$1.key"
  openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
  printf '%s\n' "basicConstraints=CA:FALSE" "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" \
    -CAcreateserial -sha256 -days 825 -extfile "$1.ext" -out "$1.pem" \
    2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

ca ca "/CN=luvws test CA"
ca ca2 "/CN=luvws other CA"

leaf server "/CN=localhost" ca \
  "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1,IP:2001:db8::ab
extendedKeyUsage=serverAuth"
leaf other "/CN=other.example" ca \
  "subjectAltName=DNS:other.example
extendedKeyUsage=serverAuth"
leaf client "/CN=luvws test client" ca "extendedKeyUsage=clientAuth"
leaf client2 "/CN=luvws other client" ca2 "extendedKeyUsage=clientAuth"
cat server.pem ca.pem > chain.pem

# An expired certificate: `openssl x509` cannot back-date, `openssl ca` can.
key expired.key
openssl req -new -key expired.key -subj "/CN=localhost" -out expired.csr
mkdir -p ca.db
: > ca.db/index.txt
echo 1000 > ca.db/serial
cat > ca.db/ca.cnf <<EOF
[ ca ]
default_ca = test
[ test ]
database = ca.db/index.txt
serial = ca.db/serial
new_certs_dir = ca.db
default_md = sha256
policy = anything
copy_extensions = none
x509_extensions = ext
unique_subject = no
[ anything ]
commonName = supplied
[ ext ]
basicConstraints = CA:FALSE
subjectAltName = DNS:localhost,IP:127.0.0.1
extendedKeyUsage = serverAuth
EOF
openssl ca -batch -config ca.db/ca.cnf -cert ca.pem -keyfile ca.key \
  -startdate 20200101000000Z -enddate 20201231000000Z \
  -in expired.csr -out expired.pem -notext 2>/dev/null
rm -rf ca.db expired.csr ca.srl ca2.srl

printf '%s\n' "-----BEGIN CERTIFICATE-----" "this is not base64 at all !!" \
  "-----END CERTIFICATE-----" > garbage.pem

mkdir -p cadir
cp ca.pem cadir/ca.pem
