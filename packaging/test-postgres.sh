#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the fleet's tests, no system service needed.
#   test-postgres.sh start DIR PORT   makes a cluster in DIR (as the postgres user: the server refuses
#                                     to run as root), listening on 127.0.0.1:PORT with password
#                                     (SCRAM) authentication and TLS offered, as an administrator sets one
#                                     up; the superuser's password is in DIR/password, the certificate of
#                                     the CA that signed the server's (for 127.0.0.1) in DIR/ca.pem.
#   test-postgres.sh restart DIR PORT starts a stopped cluster again, as it was.
#   test-postgres.sh stop DIR         stops it (the directory stays until the caller removes it).
set -euo pipefail
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
serve() {
    local dir=$1 port=$2
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off \
            -c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key" start >/dev/null
}

case "${1:-}" in
start)
    dir=$2 port=$3
    mkdir -p "$dir"
    chmod 700 "$dir"
    head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$dir/password"
    chmod 600 "$dir/password"
    # A CA of the run's own, and the server's certificate for 127.0.0.1 signed by it.
    openssl req -x509 -newkey rsa:2048 -nodes -days 3 -subj "/CN=crmfs test CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 3 \
        -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
    chmod 600 "$dir/server.key" "$dir/ca.key"
    chown -R postgres: "$dir"
    runuser -u postgres -- "$bin/initdb" -D "$dir/data" -U postgres --auth=scram-sha-256 --pwfile="$dir/password" -E UTF8 >/dev/null
    serve "$dir" "$port"
    ;;
restart)
    serve "$2" "$3"
    ;;
stop)
    dir=$2
    [[ -d "$dir/data" ]] && runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    ;;
*)
    echo "usage: $0 start DIR PORT | restart DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac
